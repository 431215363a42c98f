//lint:file-ignore SA1019 assertions.Annotations returns cxapi.SynthesisMessage; aws-cdk-go offers no other type for it yet.

package stacks

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/cxapi"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/sphere-jitr/sphere-jitr/internal/config"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// One test binary shares one jsii runtime: each variant of the stack is synthesized once, in TestMain, and every
// test reads the result.
type synthesized struct {
	stack      *SphereJitrStack
	template   assertions.Template
	json       map[string]any
	nag        []string // unsuppressed cdk-nag findings (errors and warnings)
	warnings   []string // the stack's own warnings (not cdk-nag's)
	bootstraps []string // bundled Lambda executables
	outdir     string
}

var (
	oneCA    *synthesized // DEFAULT mode, one DER CA, Lambda bundled
	twoCAs   *synthesized // the current and the next tenant CA
	retained *synthesized // SNI_ONLY, retainRegistry=true, alarmEmail set
)

func TestMain(m *testing.M) {
	// jsii runs on the first node on PATH: the Makefile puts the pinned Node.js 24 there. An older one is out of
	// the AWS CDK's support, so the tests refuse to run on it rather than pass on a runtime users cannot deploy with.
	if out, err := exec.Command("node", "--version").Output(); err != nil || !strings.HasPrefix(string(out), "v24.") {
		fmt.Fprintf(os.Stderr, "stacks tests need Node.js 24 first on PATH (found %q, %v): run them with 'make test-cdk'\n", strings.TrimSpace(string(out)), err)
		os.Exit(2)
	}
	code := func() int {
		defer jsii.Close()
		dir, err := os.MkdirTemp("", "stacks-test")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		ca1, ca2 := writeCA(dir, "ca1"), writeCA(dir, "ca2")
		const tenant = "01234567-89ab-cdef-0123-456789abcdef"
		oneCA = synth(dir, true, map[string]any{"tenantCaCerts": ca1 + ".der", "verificationCerts": ca1 + "-verification.pem", "tenantId": tenant})
		twoCAs = synth(dir, false, map[string]any{"tenantCaCerts": ca1 + ".pem," + ca2 + ".der", "verificationCerts": ca1 + "-verification.pem," + ca2 + "-verification.pem", "tenantId": tenant})
		retained = synth(dir, false, map[string]any{"tenantCaCerts": ca1 + ".pem", "certificateMode": "SNI_ONLY", "tenantId": tenant, "retainRegistry": "true", "alarmEmail": "ops@example.com", "iotLogging": "ERROR"})
		return m.Run()
	}()
	os.Exit(code)
}

func writeCA(dir, name string) string {
	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: "Tenant CA " + name})
	if err != nil {
		panic(err)
	}
	verification, err := ca.IssueVerification("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if err != nil {
		panic(err)
	}
	if err := ca.WriteFiles(dir, name); err != nil {
		panic(err)
	}
	if err := verification.WriteFiles(dir, name+"-verification"); err != nil {
		panic(err)
	}
	return filepath.Join(dir, name)
}

// projectContext is the context of cdk.json (feature flags), so tests synthesize what `cdk synth` does.
func projectContext() map[string]any {
	data, err := os.ReadFile("../cdk.json")
	if err != nil {
		panic(err)
	}
	var cdkJSON struct {
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(data, &cdkJSON); err != nil {
		panic(err)
	}
	return cdkJSON.Context
}

func synth(dir string, bundle bool, userContext map[string]any) *synthesized {
	ctx := projectContext()
	if !bundle {
		ctx["aws:cdk:bundling-stacks"] = []string{}
	}
	outdir, err := os.MkdirTemp(dir, "cdk.out")
	if err != nil {
		panic(err)
	}
	app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(outdir)})
	cfg, err := config.Load(func(k string) any { return userContext[k] }, time.Now())
	if err != nil {
		panic(err)
	}
	s := NewSphereJitrStack(app, "SphereJitr", &SphereJitrStackProps{Config: cfg, ModuleRoot: ".."})
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	defer func() {
		// cdk-nag findings fail the synthesis itself: show the report instead of a jsii stack trace.
		if r := recover(); r != nil {
			report, _ := os.ReadFile(filepath.Join(outdir, "validation-report.json"))
			fmt.Fprintf(os.Stderr, "synthesis failed: %v\n%s\n", r, report)
			os.Exit(1)
		}
	}()
	tmpl := assertions.Template_FromStack(s.Stack, nil)
	out := &synthesized{stack: s, template: tmpl, json: *tmpl.ToJSON(), outdir: outdir}
	annotations := assertions.Annotations_FromStack(s.Stack)
	nagPattern := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
	for _, msgs := range []*[]*cxapi.SynthesisMessage{
		annotations.FindError(jsii.String("*"), nagPattern),
		annotations.FindWarning(jsii.String("*"), nagPattern),
	} {
		for _, m := range *msgs {
			out.nag = append(out.nag, fmt.Sprintf("%s: %v", *m.Id, m.Entry.Data))
		}
	}
	for _, m := range *annotations.FindWarning(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("^(?!AwsSolutions-).*"))) {
		out.warnings = append(out.warnings, fmt.Sprint(m.Entry.Data))
	}
	app.Synth(nil) // writes the template for cfn-lint, and the bundled asset
	if bundle {
		out.bootstraps, _ = filepath.Glob(filepath.Join(outdir, "asset.*", "bootstrap"))
	}
	return out
}

// must runs an assertions call, turning its panic into a test error.
func must(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	f()
}

func resources(s *synthesized, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range s.json["Resources"].(map[string]any) {
		res := r.(map[string]any)
		if res["Type"] == typ {
			out[id] = res
		}
	}
	return out
}

func props(res map[string]any) map[string]any {
	p, _ := res["Properties"].(map[string]any)
	return p
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// ---- point 3: resources -------------------------------------------------------------------------------------------

func TestCACertificatePerTenantCA(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *synthesized
		n    int
		mode string
	}{{"one CA", oneCA, 1, "DEFAULT"}, {"two CAs", twoCAs, 2, "DEFAULT"}, {"SNI_ONLY", retained, 1, "SNI_ONLY"}} {
		t.Run(tc.name, func(t *testing.T) {
			must(t, "CA count", func() { tc.s.template.ResourceCountIs(jsii.String("AWS::IoT::CACertificate"), jsii.Number(tc.n)) })
			for id, res := range resources(tc.s, "AWS::IoT::CACertificate") {
				p := props(res)
				if p["Status"] != "ACTIVE" || p["AutoRegistrationStatus"] != "ENABLE" || p["CertificateMode"] != tc.mode {
					t.Errorf("%s: status %v, auto-registration %v, mode %v", id, p["Status"], p["AutoRegistrationStatus"], p["CertificateMode"])
				}
				if !strings.HasPrefix(fmt.Sprint(p["CACertificatePem"]), "-----BEGIN CERTIFICATE-----") {
					t.Errorf("%s: CACertificatePem is not PEM: %.40v", id, p["CACertificatePem"])
				}
				_, hasProof := p["VerificationCertificatePem"]
				if hasProof != (tc.mode == "DEFAULT") {
					t.Errorf("%s: VerificationCertificatePem present=%v in %s mode", id, hasProof, tc.mode)
				}
			}
		})
	}
}

func TestCAAndPolicyRetainedOnlyWhenDevicesAre(t *testing.T) {
	for _, tc := range []struct {
		s    *synthesized
		want string
	}{{oneCA, "Delete"}, {retained, "Retain"}} {
		for _, typ := range []string{"AWS::IoT::CACertificate", "AWS::IoT::Policy"} {
			for id, res := range resources(tc.s, typ) {
				if got := fmt.Sprint(res["DeletionPolicy"]); got != tc.want && !(tc.want == "Delete" && res["DeletionPolicy"] == nil) {
					t.Errorf("%s: DeletionPolicy %s, want %s", id, got, tc.want)
				}
			}
		}
	}
}

// TestDestroyLeavesNothingBehind: `cdk destroy` deletes every resource of the stack, log groups of functions CDK
// adds itself included (with @aws-cdk/aws-lambda:useCdkManagedLogGroup their log groups default to Retain); with
// retainRegistry only the CA registrations, the device policy and the deny-list table stay.
func TestDestroyLeavesNothingBehind(t *testing.T) {
	for _, tc := range []struct {
		name  string
		s     *synthesized
		keeps map[string]bool
	}{
		{"default", oneCA, map[string]bool{}},
		{"retainRegistry", retained, map[string]bool{"AWS::IoT::CACertificate": true, "AWS::IoT::Policy": true, "AWS::DynamoDB::Table": true}},
	} {
		for id, r := range tc.s.json["Resources"].(map[string]any) {
			res := r.(map[string]any)
			typ, _ := res["Type"].(string)
			for _, key := range []string{"DeletionPolicy", "UpdateReplacePolicy"} {
				if p, set := res[key]; set && p != "Delete" && !(tc.keeps[typ] && p == "Retain") {
					t.Errorf("%s: %s (%s) has %s %v: cdk destroy would leave it behind", tc.name, id, typ, key, p)
				}
			}
		}
	}
}

// TestRegistryTeardownRunsBeforeCAAndPolicyGo checks the dependency order: the teardown resource references every
// CA and the device policy, so CloudFormation deletes it (running the cleanup) before them.
func TestRegistryTeardownRunsBeforeCAAndPolicyGo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		s      *synthesized
		retain string
	}{{"one CA", oneCA, "false"}, {"two CAs", twoCAs, "false"}, {"retained", retained, "true"}} {
		t.Run(tc.name, func(t *testing.T) {
			teardowns := resources(tc.s, "Custom::RegistryTeardown")
			if len(teardowns) != 1 {
				t.Fatalf("%d Custom::RegistryTeardown resources, want 1", len(teardowns))
			}
			for id, res := range teardowns {
				p := props(res)
				refs := map[string]bool{}
				for _, r := range asSlice(p["CaCertificateIds"]) {
					refs[fmt.Sprint(r.(map[string]any)["Ref"])] = true
				}
				for ca := range resources(tc.s, "AWS::IoT::CACertificate") {
					if !refs[ca] {
						t.Errorf("%s does not reference CA %s: CloudFormation could delete the CA first", id, ca)
					}
				}
				for pol := range resources(tc.s, "AWS::IoT::Policy") {
					if asJSON(p[contract.PropPolicyName]) != `{"Ref":"`+pol+`"}` {
						t.Errorf("%s PolicyName %s does not reference the device policy %s", id, asJSON(p[contract.PropPolicyName]), pol)
					}
				}
				if p[contract.PropRetainRegistry] != tc.retain || p["ProvisionedBy"] != "SphereJitr" {
					t.Errorf("%s: RetainRegistry %v, ProvisionedBy %v", id, p[contract.PropRetainRegistry], p["ProvisionedBy"])
				}
				if !strings.Contains(asJSON(p["ServiceToken"]), "RegistryTeardownFunction") {
					t.Errorf("%s is not served by the teardown function: %s", id, asJSON(p["ServiceToken"]))
				}
			}
			must(t, "teardown function", func() {
				tc.s.template.HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
					"Runtime": "provided.al2023", "Architectures": []string{"arm64"}, "Handler": "bootstrap", "Timeout": 900,
					"Role": map[string]any{"Fn::GetAtt": []any{assertions.Match_StringLikeRegexp(jsii.String("^RegistryTeardownRole")), "Arn"}},
				})
			})
		})
	}
}

func TestDevicePolicyIsLeastPrivilege(t *testing.T) {
	policies := resources(oneCA, "AWS::IoT::Policy")
	if len(policies) != 1 {
		t.Fatalf("%d IoT policies, want 1", len(policies))
	}
	var doc struct {
		Statement []struct {
			Effect    string
			Action    []string
			Resource  []any
			Condition map[string]map[string]string
		}
	}
	for _, p := range policies {
		if _, named := props(p)["PolicyName"]; named {
			t.Error("the device policy has a hard-coded physical name")
		}
		if err := json.Unmarshal([]byte(asJSON(props(p)["PolicyDocument"])), &doc); err != nil {
			t.Fatal(err)
		}
	}
	const thing = "${iot:Connection.Thing.ThingName}"
	byAction := map[string][]string{}
	for _, st := range doc.Statement {
		if st.Effect != "Allow" || len(st.Action) != 1 {
			t.Errorf("statement %+v: want one allowed action", st)
			continue
		}
		action := st.Action[0]
		for _, r := range st.Resource {
			arn := flattenJoin(r)
			if !strings.Contains(arn, thing) {
				t.Errorf("%s on %s: not confined to the connection's own thing", action, arn)
			}
			byAction[action] = append(byAction[action], arn[strings.Index(arn, ":iot:")+len(":iot:<AWS::Region>:<AWS::AccountId>:"):])
		}
		if action == "iot:Connect" && st.Condition["Bool"]["iot:Connection.Thing.IsAttached"] != "true" {
			t.Errorf("iot:Connect lacks the IsAttached condition: %v", st.Condition)
		}
	}
	want := map[string][]string{
		"iot:Connect": {"client/" + thing},
		"iot:Publish": {"topic/devices/" + thing + "/*", "topic/$aws/things/" + thing + "/shadow/update",
			"topic/$aws/things/" + thing + "/shadow/get", "topic/$aws/things/" + thing + "/shadow/delete"},
		"iot:Subscribe": {"topicfilter/devices/" + thing + "/*", "topicfilter/$aws/things/" + thing + "/shadow/*"},
		"iot:Receive":   {"topic/devices/" + thing + "/*", "topic/$aws/things/" + thing + "/shadow/*"},
	}
	if asJSON(byAction) != asJSON(want) {
		t.Errorf("device policy grants\n%v\nwant\n%v", byAction, want)
	}
}

// flattenJoin renders a {"Fn::Join": ["", [...]]} ARN with pseudo parameters as <AWS::Name>.
func flattenJoin(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case map[string]any:
		if join, ok := t["Fn::Join"].([]any); ok {
			var b strings.Builder
			for _, part := range join[1].([]any) {
				b.WriteString(flattenJoin(part))
			}
			return b.String()
		}
		if ref, ok := t["Ref"].(string); ok {
			return "<" + ref + ">"
		}
	}
	return asJSON(v)
}

func TestJitrFunction(t *testing.T) {
	must(t, "function", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
			"Runtime":       "provided.al2023",
			"Architectures": []string{"arm64"},
			"Handler":       "bootstrap",
			"Environment": map[string]any{"Variables": map[string]any{
				"CA_CERTIFICATE_IDS":   assertions.Match_AnyValue(),
				"CA_CERTIFICATES_PEM":  assertions.Match_StringLikeRegexp(jsii.String("^-----BEGIN CERTIFICATE-----")),
				"DEVICE_POLICY_NAME":   map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^DevicePolicy"))},
				"PROVISIONED_BY":       "SphereJitr",
				"CLOCK_SKEW_TOLERANCE": "5m",
			}},
			"LoggingConfig": map[string]any{"LogGroup": map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^JitrLogGroup"))}},
		})
	})
	must(t, "log retention", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::Logs::LogGroup"), map[string]any{"RetentionInDays": 30})
	})
	must(t, "async failure destination", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::Lambda::EventInvokeConfig"), map[string]any{
			"MaximumRetryAttempts": 2,
			"DestinationConfig": map[string]any{"OnFailure": map[string]any{
				"Destination": map[string]any{"Fn::GetAtt": []any{assertions.Match_StringLikeRegexp(jsii.String("^JitrDeadLetterQueue")), "Arn"}},
			}},
		})
	})
	must(t, "DLQ encrypted", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::SQS::Queue"), map[string]any{"SqsManagedSseEnabled": true})
	})
	must(t, "DLQ depth alarm", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible", "Threshold": 1,
		})
	})
	must(t, "errors alarm", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"Namespace": "AWS/Lambda", "MetricName": "Errors", "Threshold": 1,
		})
	})
	must(t, "CA mismatch alarm", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"Namespace": "SphereJitr", "MetricName": "CAMismatch", "Threshold": 1,
			"Dimensions": []any{map[string]any{"Name": "ProvisionedBy", "Value": "SphereJitr"}},
		})
	})
	// Two CAs: both ids, and both PEMs in the same order.
	for _, fn := range resources(twoCAs, "AWS::Lambda::Function") {
		env := asJSON(props(fn)["Environment"])
		if strings.Contains(env, contract.EnvCACertificatesPEM) && strings.Count(env, "BEGIN CERTIFICATE") != 2 {
			t.Errorf("two CAs: environment has %d CA PEMs", strings.Count(env, "BEGIN CERTIFICATE"))
		}
	}
}

// TestTemplateSpeaksTheContract checks that every name the template hands to another process is the one package
// contract declares: the JITR function's environment, the teardown resource's type and properties, the topic of
// each rule, the stack name the things are marked with.
func TestTemplateSpeaksTheContract(t *testing.T) {
	for _, s := range []*synthesized{oneCA, twoCAs} {
		var jitrEnv, checkEnv []string
		for id, fn := range resources(s, "AWS::Lambda::Function") {
			envProp, _ := props(fn)["Environment"].(map[string]any)
			vars, _ := envProp["Variables"].(map[string]any)
			if _, ok := vars[contract.EnvCACertificateIDs]; !ok {
				continue
			}
			for k := range vars {
				if strings.HasPrefix(id, "OperationsCaCheck") {
					checkEnv = append(checkEnv, k)
				} else {
					jitrEnv = append(jitrEnv, k)
				}
			}
			if vars[contract.EnvProvisionedBy] != contract.StackName {
				t.Errorf("%s = %v, want the stack name %s", contract.EnvProvisionedBy, vars[contract.EnvProvisionedBy], contract.StackName)
			}
		}
		sort.Strings(jitrEnv)
		want := append([]string(nil), contract.JitrEnv...)
		sort.Strings(want)
		if !slices.Equal(jitrEnv, want) {
			t.Errorf("JITR environment %v, contract.JitrEnv %v", jitrEnv, want)
		}
		sort.Strings(checkEnv)
		wantCheck := append([]string(nil), contract.CACheckEnv...)
		sort.Strings(wantCheck)
		if !slices.Equal(checkEnv, wantCheck) {
			t.Errorf("CA check environment %v, contract.CACheckEnv %v", checkEnv, wantCheck)
		}

		teardowns := resources(s, contract.TeardownResourceType)
		if len(teardowns) != 1 {
			t.Fatalf("%d resources of type %s, want 1", len(teardowns), contract.TeardownResourceType)
		}
		for _, r := range teardowns {
			var got []string
			for k := range props(r) {
				if k != "ServiceToken" && k != "ServiceTimeout" { // CloudFormation's own, not the handler's
					got = append(got, k)
				}
			}
			sort.Strings(got)
			want := append([]string(nil), contract.TeardownProps...)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("teardown properties %v, contract.TeardownProps %v", got, want)
			}
		}

		rules := resources(s, "AWS::IoT::TopicRule")
		if len(rules) == 0 {
			t.Fatal("no topic rule")
		}
		for id, r := range rules {
			sql := flattenJoin(props(r)["TopicRulePayload"].(map[string]any)["Sql"])
			if strings.HasPrefix(id, "S3Urls") {
				// Every field of the request a device sends, by name (never SELECT *: the thing comes from the topic).
				want := "SELECT topic(2) AS " + contract.S3URLRuleThingVar + ", " + strings.Join(jsonFields(contract.S3URLRequest{}), ", ") +
					" FROM '" + contract.S3URLRequestTopic(s.stack.Policy.TopicRoot, "+") + "'"
				if sql != want {
					t.Errorf("S3 URL rule %s: %s, want %s", id, sql, want)
				}
				continue
			}
			if !strings.HasPrefix(sql, "SELECT * FROM '"+contract.RegisteredEventTopicPrefix) {
				t.Errorf("rule %s listens to %s, not to %s<caId>", id, sql, contract.RegisteredEventTopicPrefix)
			}
		}
	}
}

// jsonFields lists the JSON names of a struct's fields, in order.
func jsonFields(v any) []string {
	var out []string
	t := reflect.TypeOf(v)
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

// TestBundledHandlersAreArm64Bootstraps checks the Go Lambdas (JITR, presign, CA check, teardown, account settings)
// were built by the local bundler.
func TestBundledHandlersAreArm64Bootstraps(t *testing.T) {
	if len(oneCA.bootstraps) != 5 {
		t.Fatalf("found %d bundled bootstrap executables in the cloud assembly, want 5 (JITR, presign, CA check, teardown, account settings)", len(oneCA.bootstraps))
	}
	for _, b := range oneCA.bootstraps {
		data, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		// ELF header: magic, 64-bit class, and e_machine 0xB7 (AArch64) at offset 18, little endian.
		if len(data) < 20 || string(data[:4]) != "\x7fELF" || data[4] != 2 || data[18] != 0xB7 || data[19] != 0 {
			t.Errorf("%s is not a 64-bit ARM ELF executable", b)
		}
	}
}

func TestTopicRulePerOwnCA(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *synthesized
	}{{"one CA", oneCA}, {"two CAs", twoCAs}} {
		t.Run(tc.name, func(t *testing.T) {
			cas := resources(tc.s, "AWS::IoT::CACertificate")
			rules := resources(tc.s, "AWS::IoT::TopicRule")
			for id := range rules {
				if strings.HasPrefix(id, "S3Urls") { // the S3 URL request rule, TestPresignFunction
					delete(rules, id)
				}
			}
			if len(rules) != len(cas) {
				t.Fatalf("%d rules for %d CAs", len(rules), len(cas))
			}
			covered := map[string]bool{}
			for id, r := range rules {
				payload := props(r)["TopicRulePayload"].(map[string]any)
				sql := flattenJoin(payload["Sql"])
				m := regexp.MustCompile(`^SELECT \* FROM '\$aws/events/certificates/registered/<(TenantCA\w+)>'$`).FindStringSubmatch(sql)
				if m == nil || cas[m[1]] == nil {
					t.Errorf("%s: SQL %q does not select the registered events of one own CA", id, sql)
					continue
				}
				covered[m[1]] = true
				if payload["AwsIotSqlVersion"] != "2016-03-23" {
					t.Errorf("%s: SQL version %v", id, payload["AwsIotSqlVersion"])
				}
				actions := asJSON(payload["Actions"])
				if !regexp.MustCompile(`^\[\{"Sqs":\{"QueueUrl":\{"Ref":"JitrRegistrationQueue\w+"\},"RoleArn":\{"Fn::GetAtt":\["JitrRuleSendRole\w+","Arn"\]\}\}\}\]$`).MatchString(actions) {
					t.Errorf("%s: actions %s do not send to the JITR registration queue", id, actions)
				}
				if !strings.Contains(asJSON(payload["ErrorAction"]), `"Sqs"`) {
					t.Errorf("%s: no SQS error action: %s", id, asJSON(payload["ErrorAction"]))
				}
			}
			if len(covered) != len(cas) {
				t.Errorf("rules cover %d of %d CAs", len(covered), len(cas))
			}
		})
	}
}

func TestDemoBucket(t *testing.T) {
	must(t, "bucket", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::S3::Bucket"), map[string]any{
			"PublicAccessBlockConfiguration": map[string]any{"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true},
			"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": []any{
				map[string]any{"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "AES256"}},
			}},
		})
	})
	must(t, "TLS only", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::S3::BucketPolicy"), map[string]any{
			"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{map[string]any{
				"Effect": "Deny", "Action": "s3:*", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
				"Principal": map[string]any{"AWS": "*"}, "Resource": assertions.Match_AnyValue(),
			}})},
		})
	})
	must(t, "emptied on destroy", func() {
		oneCA.template.ResourceCountIs(jsii.String("Custom::S3AutoDeleteObjects"), jsii.Number(1))
		oneCA.template.HasResource(jsii.String("AWS::S3::Bucket"), map[string]any{"DeletionPolicy": "Delete"})
	})
}

func TestEndpointLookup(t *testing.T) {
	lookups := resources(oneCA, "Custom::AWS")
	if len(lookups) != 1 {
		t.Fatalf("%d Custom::AWS resources, want 1", len(lookups))
	}
	for _, l := range lookups {
		create := asJSON(props(l)["Create"])
		for _, want := range []string{`describeEndpoint`, `iot:Data-ATS`} {
			if !strings.Contains(create, want) {
				t.Errorf("endpoint lookup call %s lacks %s", create, want)
			}
		}
	}
}

func TestOutputs(t *testing.T) {
	outputs := oneCA.json["Outputs"].(map[string]any)
	// The tools read the outputs by the names in internal/stackoutputs: the template has exactly those.
	var names []string
	for name := range outputs {
		names = append(names, name)
	}
	want := append([]string(nil), contract.Outputs...)
	sort.Strings(names)
	sort.Strings(want)
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("template outputs %v, contract.Outputs %v", names, want)
	}
	if got := asJSON(outputs[contract.OutputIotEndpoint].(map[string]any)["Value"]); !strings.Contains(got, "endpointAddress") {
		t.Errorf("IotEndpoint output %s does not come from the endpoint lookup", got)
	}
	if got := outputs[contract.OutputTenantID].(map[string]any)["Value"]; got != "01234567-89ab-cdef-0123-456789abcdef" {
		t.Errorf("TenantId output %v", got)
	}
	if got := flattenJoin(twoCAs.json["Outputs"].(map[string]any)[contract.OutputCACertificateIDs].(map[string]any)["Value"]); strings.Count(got, "<TenantCA") != 2 {
		t.Errorf("two CAs: CaCertificateIds output %s", got)
	}
	if got := retained.json["Outputs"].(map[string]any)[contract.OutputRetainRegistry].(map[string]any)["Value"]; got != "true" {
		t.Errorf("RetainRegistry output %v", got)
	}
}

// TestRetainRegistryWarnsOfTheLockout: choosing retainRegistry shows, at synth and deploy, that the devices lock
// themselves out within a day of cdk destroy; the default says nothing.
func TestRetainRegistryWarnsOfTheLockout(t *testing.T) {
	for name, tc := range map[string]struct {
		s    *synthesized
		want int
	}{"retained": {retained, 1}, "one CA": {oneCA, 0}} {
		var found []string
		for _, w := range tc.s.warnings {
			if strings.Contains(w, "retainRegistry=true") {
				found = append(found, w)
			}
		}
		if len(found) != tc.want {
			t.Errorf("%s: %d retainRegistry warnings %v, want %d", name, len(found), found, tc.want)
		}
		for _, w := range found {
			if !strings.Contains(w, "the whole fleet within a day") || !strings.Contains(w, "nothing activates it") {
				t.Errorf("%s: the warning does not state the lock-out: %s", name, w)
			}
		}
	}
}

// ---- point 4: no iot:*, no Resource * ----------------------------------------------------------------------------

// TestNoWildcardGrants: no statement grants iot:* or *, and no IoT policy statement is on *. Which actions may
// be granted on Resource "*" (only those without a resource type) is TestRoleGrantsMatchAWSResourceTypes's check,
// from AWS's authorization data.
func TestNoWildcardGrants(t *testing.T) {
	for _, s := range []*synthesized{oneCA, twoCAs, retained} {
		var statements []map[string]any
		for _, p := range resources(s, "AWS::IAM::Policy") {
			statements = append(statements, stmts(props(p)["PolicyDocument"])...)
		}
		for _, r := range resources(s, "AWS::IAM::Role") {
			if inline, ok := props(r)["Policies"].([]any); ok {
				for _, p := range inline {
					statements = append(statements, stmts(p.(map[string]any)["PolicyDocument"])...)
				}
			}
		}
		for _, p := range resources(s, "AWS::IoT::Policy") {
			for _, st := range stmts(props(p)["PolicyDocument"]) {
				if asJSON(st["Resource"]) == `"*"` || strings.Contains(asJSON(st["Resource"]), `"*"`) {
					t.Errorf("IoT policy statement on *: %s", asJSON(st))
				}
				statements = append(statements, st)
			}
		}
		if len(statements) < 5 {
			t.Fatalf("found only %d statements: the walk is broken", len(statements))
		}
		for _, st := range statements {
			actions := list(st["Action"])
			for _, a := range actions {
				if a == "*" || strings.HasPrefix(a, "iot:*") || a == "iot:*" {
					t.Errorf("statement grants %s: %s", a, asJSON(st))
				}
			}
		}
	}
}

// TestPresignFunction checks the S3 URL service: the function's environment is contract.PresignEnv, resolved from
// the bucket, the endpoint lookup and the context; it is not retried (the device asks again) and its failures go to
// its own dead-letter queue.
func TestPresignFunction(t *testing.T) {
	var found bool
	for id, fn := range resources(oneCA, "AWS::Lambda::Function") {
		if !strings.HasPrefix(id, "S3UrlsFunction") {
			continue
		}
		found = true
		vars := props(fn)["Environment"].(map[string]any)["Variables"].(map[string]any)
		var got []string
		for k := range vars {
			got = append(got, k)
		}
		sort.Strings(got)
		want := append([]string(nil), contract.PresignEnv...)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("presign environment %v, contract.PresignEnv %v", got, want)
		}
		if vars[contract.EnvPresignMaxBytes] != "1048576" || vars[contract.EnvPresignExpirySec] != "900" {
			t.Errorf("defaults: max %v, expiry %v; want 1048576 and 900", vars[contract.EnvPresignMaxBytes], vars[contract.EnvPresignExpirySec])
		}
		if vars[contract.EnvDeviceTopicRoot] != "devices" {
			t.Errorf("topic root %v", vars[contract.EnvDeviceTopicRoot])
		}
		if !strings.Contains(asJSON(vars[contract.EnvIotDataEndpoint]), "endpointAddress") {
			t.Errorf("%s = %s, want the endpoint lookup's endpointAddress", contract.EnvIotDataEndpoint, asJSON(vars[contract.EnvIotDataEndpoint]))
		}
		if !strings.Contains(asJSON(vars[contract.EnvBucketName]), "DemoBucket") {
			t.Errorf("%s = %s, want the demo bucket", contract.EnvBucketName, asJSON(vars[contract.EnvBucketName]))
		}
	}
	if !found {
		t.Fatal("no presign function")
	}
	must(t, "no retry, failures to the presign dead-letter queue", func() {
		oneCA.template.HasResourceProperties(jsii.String("AWS::Lambda::EventInvokeConfig"), map[string]any{
			"MaximumRetryAttempts": 0,
			"DestinationConfig": map[string]any{"OnFailure": map[string]any{
				"Destination": map[string]any{"Fn::GetAtt": []any{assertions.Match_StringLikeRegexp(jsii.String("^S3UrlsDeadLetterQueue")), "Arn"}},
			}},
		})
	})
	alarms := 0
	for _, a := range resources(oneCA, "AWS::CloudWatch::Alarm") {
		if strings.Contains(asJSON(props(a)), "S3Urls") {
			alarms++
		}
	}
	if alarms != 2 {
		t.Errorf("%d alarms on the presign function and its queue, want 2 (errors, dead letters)", alarms)
	}
}

// TestPresignRoleGrantsOnlyDeviceObjectsAndReplyTopics is the acceptance check of issue 14: the synthesized
// template grants the presign role no S3 action outside devices/* of the bucket but reading fleet/* (issue 24: the
// runtime URL of the fleet file, never a write) and no publish outside the reply topics; besides those it may only
// write its own logs and send failed invocations to its dead-letter queue.
func TestPresignRoleGrantsOnlyDeviceObjectsAndReplyTopics(t *testing.T) {
	for name, s := range map[string]*synthesized{"one CA": oneCA, "retained": retained} {
		statements := 0
		fleetRead := false
		for id, p := range resources(s, "AWS::IAM::Policy") {
			if !strings.Contains(asJSON(props(p)["Roles"]), "S3UrlsRole") {
				continue
			}
			for _, st := range stmts(props(p)["PolicyDocument"]) {
				statements++
				if st["Effect"] != "Allow" || st["Condition"] != nil {
					t.Errorf("%s %s: unexpected statement %s", name, id, asJSON(st))
				}
				for _, a := range list(st["Action"]) {
					for _, r := range asSlice(st["Resource"]) {
						arn := flattenJoin(r)
						ok := false
						switch {
						case a == "s3:PutObject":
							ok = regexp.MustCompile(`^\{"Fn::GetAtt":\["DemoBucket[0-9A-F]+","Arn"\]\}/devices/\*$`).MatchString(arn)
						case a == "s3:GetObject":
							ok = regexp.MustCompile(`^\{"Fn::GetAtt":\["DemoBucket[0-9A-F]+","Arn"\]\}/(devices|fleet)/\*$`).MatchString(arn)
							fleetRead = fleetRead || strings.HasSuffix(arn, "/"+contract.FleetObjectPrefix+"*")
						case a == "iot:Publish":
							ok = regexp.MustCompile(`^arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:topic/devices/\*/s3/url/(accepted|rejected)$`).MatchString(arn)
						case strings.HasPrefix(a, "logs:"):
							ok = regexp.MustCompile(`S3UrlsLogGroup`).MatchString(arn)
						case strings.HasPrefix(a, "sqs:"): // the on-failure destination
							ok = regexp.MustCompile(`^\{"Fn::GetAtt":\["S3UrlsDeadLetterQueue[0-9A-F]+","Arn"\]\}$`).MatchString(arn)
						}
						if !ok {
							t.Errorf("%s: presign role may %s on %s", name, a, arn)
						}
					}
				}
			}
		}
		if statements < 3 {
			t.Errorf("%s: found %d statements for the presign role: the walk is broken", name, statements)
		}
		if !fleetRead {
			t.Errorf("%s: the presign role may not read %s*: a device whose baked fleet URL expired gets a URL S3 refuses", name, contract.FleetObjectPrefix)
		}
	}
}

func stmts(doc any) []map[string]any {
	d, _ := doc.(map[string]any)
	var out []map[string]any
	for _, s := range asSlice(d["Statement"]) {
		out = append(out, s.(map[string]any))
	}
	return out
}

func asSlice(v any) []any {
	if s, ok := v.([]any); ok {
		return s
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func list(v any) []string {
	var out []string
	for _, e := range asSlice(v) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		} else {
			out = append(out, asJSON(e))
		}
	}
	return out
}

// ---- cdk-nag and snapshot -------------------------------------------------------------------------------------------

func TestCdkNagAwsSolutionsClean(t *testing.T) {
	for name, s := range map[string]*synthesized{"one CA": oneCA, "two CAs": twoCAs, "SNI_ONLY retained": retained} {
		for _, f := range s.nag {
			t.Errorf("%s: unsuppressed cdk-nag finding: %s", name, f)
		}
		suppressed := 0
		for _, res := range s.json["Resources"].(map[string]any) {
			meta, _ := res.(map[string]any)["Metadata"].(map[string]any)
			nag, _ := meta["cdk_nag"].(map[string]any)
			for _, r := range asSlice(nag["rules_to_suppress"]) {
				suppressed++
				if reason, _ := r.(map[string]any)["reason"].(string); len(reason) < 20 {
					t.Errorf("%s: suppression without a written reason: %s", name, asJSON(r))
				}
			}
		}
		if suppressed == 0 {
			t.Errorf("%s: no cdk-nag metadata found; is the AwsSolutions pack applied?", name)
		}
	}
	t.Logf("cdk-nag AwsSolutions: %d unsuppressed findings", len(oneCA.nag)+len(twoCAs.nag)+len(retained.nag))
}

var maskers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`-----BEGIN CERTIFICATE-----[^"]*?-----END CERTIFICATE-----(\\n)?`), "<PEM>"},
	{regexp.MustCompile(`(TenantCA|RegisteredRule|InvokeByRule)[0-9a-f]{8}[0-9A-F]{8}`), "${1}<fingerprint>"},
	{regexp.MustCompile(`[0-9a-f]{64}(\.zip)?`), "<asset-hash>"},
}

// TestSnapshot pins the template, logical ids included, with the parts that change per run masked: generated
// certificates, ids derived from their fingerprints, and asset hashes. UPDATE_SNAPSHOTS=1 rewrites it.
func TestSnapshot(t *testing.T) {
	raw, err := json.MarshalIndent(oneCA.json, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := string(raw)
	for _, m := range maskers {
		got = m.re.ReplaceAllString(got, m.with)
	}
	got += "\n"
	path := filepath.Join("testdata", "SphereJitr.template.snapshot.json")
	if os.Getenv("UPDATE_SNAPSHOTS") != "" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read snapshot (create it with UPDATE_SNAPSHOTS=1 go test ./stacks): %v", err)
	}
	if got != string(want) {
		gotLines, wantLines := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gotLines) && i < len(wantLines); i++ {
			if gotLines[i] != wantLines[i] {
				t.Fatalf("template differs from %s at line %d:\n got: %s\nwant: %s\n(review, then UPDATE_SNAPSHOTS=1 go test ./stacks)", path, i+1, gotLines[i], wantLines[i])
			}
		}
		t.Fatalf("template differs from %s in length (%d vs %d lines)", path, len(gotLines), len(wantLines))
	}
	ids := make([]string, 0)
	for id := range oneCA.json["Resources"].(map[string]any) {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	t.Logf("snapshot matched: %d resources", len(ids))
}

// TestCfnLint runs the pinned cfn-lint from the project venv over every template the tests synthesized.
func TestCfnLint(t *testing.T) {
	lint, err := filepath.Abs(filepath.Join("..", ".venv", "bin", "cfn-lint"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lint); err != nil {
		t.Fatalf("cfn-lint is not installed in the project venv (%v): run 'make setup'", err)
	}
	for name, s := range map[string]*synthesized{"one CA": oneCA, "two CAs": twoCAs, "SNI_ONLY retained": retained} {
		templates, _ := filepath.Glob(filepath.Join(s.outdir, "*.template.json"))
		if len(templates) == 0 {
			t.Fatalf("%s: no template in %s", name, s.outdir)
		}
		for _, tmpl := range templates {
			cmd := exec.Command(lint, "--config-file", filepath.Join("..", ".cfnlintrc.yaml"), "--", tmpl)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s: cfn-lint %s: %v\n%s", name, filepath.Base(tmpl), err, out)
				continue
			}
			t.Logf("cfn-lint %s (%s): 0 errors, 0 warnings", filepath.Base(tmpl), name)
		}
	}
}
