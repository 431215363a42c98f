package localaws

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

func arnJoin(suffix string) map[string]any {
	return map[string]any{"Fn::Join": []any{"", []any{
		"arn:", map[string]any{"Ref": "AWS::Partition"}, ":iot:", map[string]any{"Ref": "AWS::Region"}, ":",
		map[string]any{"Ref": "AWS::AccountId"}, suffix,
	}}}
}

// fixtureTemplate builds a small template shaped like the stack's synthesized one: two tenant CAs, the device
// policy, one topic rule per CA to one function, a bucket, outputs.
func fixtureTemplate(t *testing.T, caPEMs, verifPEMs []string) *Template {
	t.Helper()
	res := map[string]any{}
	var caRefs []any
	for i, pemText := range caPEMs {
		id := "TenantCA" + string(rune('A'+i)) + "0123"
		res[id] = map[string]any{"Type": "AWS::IoT::CACertificate", "Properties": map[string]any{
			"CACertificatePem": pemText, "Status": "ACTIVE", "AutoRegistrationStatus": "ENABLE",
			"CertificateMode": "DEFAULT", "VerificationCertificatePem": verifPEMs[i],
		}}
		caRefs = append(caRefs, map[string]any{"Ref": id})
		res["Rule"+id] = map[string]any{"Type": "AWS::IoT::TopicRule", "Properties": map[string]any{
			"TopicRulePayload": map[string]any{
				"Sql":              map[string]any{"Fn::Join": []any{"", []any{"SELECT * FROM '$aws/events/certificates/registered/", map[string]any{"Ref": id}, "'"}}},
				"AwsIotSqlVersion": "2016-03-23",
				"Actions":          []any{map[string]any{"Lambda": map[string]any{"FunctionArn": map[string]any{"Fn::GetAtt": []any{"JitrFunction9", "Arn"}}}}},
				"ErrorAction":      map[string]any{"Sqs": map[string]any{"QueueUrl": map[string]any{"Ref": "Dlq1"}}},
			},
		}}
	}
	res["DevicePolicy1"] = map[string]any{"Type": "AWS::IoT::Policy", "Properties": map[string]any{"PolicyDocument": map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{
			map[string]any{"Effect": "Allow", "Action": []any{"iot:Connect"}, "Resource": []any{arnJoin(":client/${iot:Connection.Thing.ThingName}")},
				"Condition": map[string]any{"Bool": map[string]any{"iot:Connection.Thing.IsAttached": "true"}}},
			map[string]any{"Effect": "Allow", "Action": "iot:Publish", "Resource": []any{arnJoin(":topic/devices/${iot:Connection.Thing.ThingName}/*")}},
			map[string]any{"Effect": "Allow", "Action": "iot:Subscribe", "Resource": []any{arnJoin(":topicfilter/devices/${iot:Connection.Thing.ThingName}/*")}},
			map[string]any{"Effect": "Allow", "Action": "iot:Receive", "Resource": []any{arnJoin(":topic/devices/${iot:Connection.Thing.ThingName}/*")}},
		},
	}}}
	res["JitrFunction9"] = map[string]any{"Type": "AWS::Lambda::Function", "Properties": map[string]any{
		"Role": map[string]any{"Fn::GetAtt": []any{"Role1", "Arn"}},
		"Environment": map[string]any{"Variables": map[string]any{
			"CA_CERTIFICATE_IDS":  map[string]any{"Fn::Join": []any{",", caRefs}},
			"CA_CERTIFICATES_PEM": strings.Join(caPEMs, ""),
			"DEVICE_POLICY_NAME":  map[string]any{"Ref": "DevicePolicy1"},
			"PROVISIONED_BY":      map[string]any{"Ref": "AWS::StackName"},
			"DLQ":                 map[string]any{"Fn::Sub": "${Dlq1.Arn} in ${AWS::Region}"},
		}},
	}}
	res["Role1"] = map[string]any{"Type": "AWS::IAM::Role", "Properties": map[string]any{}}
	res["Dlq1"] = map[string]any{"Type": "AWS::SQS::Queue", "Properties": map[string]any{}}
	res["DemoBucket1"] = map[string]any{"Type": "AWS::S3::Bucket", "Properties": map[string]any{}}
	doc := map[string]any{
		"Parameters": map[string]any{"BootstrapVersion": map[string]any{"Type": "String", "Default": "/cdk-bootstrap/version"}},
		"Resources":  res,
		"Outputs": map[string]any{
			"CaCertificateIds": map[string]any{"Value": map[string]any{"Fn::Join": []any{",", caRefs}}},
			"DevicePolicyName": map[string]any{"Value": map[string]any{"Ref": "DevicePolicy1"}},
			"DemoBucketName":   map[string]any{"Value": map[string]any{"Ref": "DemoBucket1"}},
			"Region":           map[string]any{"Value": map[string]any{"Ref": "AWS::Region"}},
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseTemplate(data)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func newTestCA(t *testing.T, cn string) (*testpki.Pair, string, string) {
	t.Helper()
	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: cn})
	if err != nil {
		t.Fatal(err)
	}
	v, err := ca.IssueVerification("registration-code")
	if err != nil {
		t.Fatal(err)
	}
	return ca, string(ca.CertPEM()), string(v.CertPEM())
}

func TestResolverIntrinsics(t *testing.T) {
	tmpl := &Template{
		Parameters: map[string]Parameter{"P": {Default: "pv"}},
		Resources:  map[string]Resource{"A": {Type: "AWS::SQS::Queue"}, "B": {Type: "AWS::IAM::Role"}},
	}
	r := NewResolver(tmpl, "Stack", "eu-west-1", "111122223333")
	r.Refs["A"] = "queue-a"
	r.Attrs["A.Arn"] = "arn:aws:sqs:eu-west-1:111122223333:queue-a"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"ref pseudo", `{"Ref":"AWS::Region"}`, "eu-west-1"},
		{"ref resource", `{"Ref":"A"}`, "queue-a"},
		{"ref parameter default", `{"Ref":"P"}`, "pv"},
		{"getatt list", `{"Fn::GetAtt":["A","Arn"]}`, "arn:aws:sqs:eu-west-1:111122223333:queue-a"},
		{"getatt dotted", `{"Fn::GetAtt":"A.Arn"}`, "arn:aws:sqs:eu-west-1:111122223333:queue-a"},
		{"join nested", `{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":iot:",{"Ref":"AWS::AccountId"},":client/${iot:ClientId}"]]}`, "arn:aws:iot:111122223333:client/${iot:ClientId}"},
		{"sub", `{"Fn::Sub":"${AWS::StackName}-${A}-${A.Arn}-${!Literal}"}`, "Stack-queue-a-arn:aws:sqs:eu-west-1:111122223333:queue-a-${Literal}"},
		{"sub with vars", `{"Fn::Sub":["x-${V}",{"V":{"Ref":"A"}}]}`, "x-queue-a"},
		{"select split", `{"Fn::Select":[1,{"Fn::Split":[",","a,b,c"]}]}`, "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tc.in), &v); err != nil {
				t.Fatal(err)
			}
			got, err := r.String(v)
			if err != nil {
				t.Fatalf("resolve %s: %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("resolve %s = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	for _, bad := range []string{`{"Ref":"Nope"}`, `{"Ref":"B"}`, `{"Fn::If":["c","a","b"]}`, `{"Fn::GetAtt":["A","QueueName"]}`} {
		var v any
		_ = json.Unmarshal([]byte(bad), &v)
		if got, err := r.String(v); err == nil {
			t.Errorf("resolve %s = %q, want an error (unknown to the emulator)", bad, got)
		}
	}
}

func TestReadStackFindsPartsByTypeAndReference(t *testing.T) {
	_, ca1, v1 := newTestCA(t, "CA one")
	_, ca2, v2 := newTestCA(t, "CA two")
	spec, err := ReadStack(fixtureTemplate(t, []string{ca1, ca2}, []string{v1, v2}))
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.CAs) != 2 || len(spec.Rules) != 2 || spec.Function != "JitrFunction9" || len(spec.Policies) != 1 || len(spec.Buckets) != 1 {
		t.Errorf("ReadStack = %+v, want 2 CAs, 2 rules to JitrFunction9, 1 policy, 1 bucket", spec)
	}
	if _, err := ReadStack(&Template{Resources: map[string]Resource{"X": {Type: "AWS::S3::Bucket"}}}); err == nil {
		t.Error("ReadStack accepted a template without a CA")
	}
}

func TestRuleTopicFilter(t *testing.T) {
	got, err := RuleTopicFilter("SELECT * FROM '$aws/events/certificates/registered/abc'")
	if err != nil || got != "$aws/events/certificates/registered/abc" {
		t.Errorf("RuleTopicFilter = %q, %v", got, err)
	}
	for _, sql := range []string{"SELECT certificateId FROM 'a/b'", "SELECT * FROM 'a/b' WHERE x = 1"} {
		if _, err := RuleTopicFilter(sql); err == nil {
			t.Errorf("RuleTopicFilter(%q) accepted SQL the emulator cannot evaluate", sql)
		}
	}
}

// fakeDeployAPI records what Deploy creates.
type fakeDeployAPI struct {
	cas      []*iot.RegisterCACertificateInput
	policies map[string]string
	rules    map[string]string
	buckets  []string
}

func (f *fakeDeployAPI) RegisterCACertificate(_ context.Context, in *iot.RegisterCACertificateInput, _ ...func(*iot.Options)) (*iot.RegisterCACertificateOutput, error) {
	f.cas = append(f.cas, in)
	id := strings.Repeat(string(rune('a'+len(f.cas))), 64)
	return &iot.RegisterCACertificateOutput{CertificateId: aws.String(id), CertificateArn: aws.String("arn:aws:iot:r:a:cacert/" + id)}, nil
}

func (f *fakeDeployAPI) CreatePolicy(_ context.Context, in *iot.CreatePolicyInput, _ ...func(*iot.Options)) (*iot.CreatePolicyOutput, error) {
	f.policies[aws.ToString(in.PolicyName)] = aws.ToString(in.PolicyDocument)
	return &iot.CreatePolicyOutput{}, nil
}

func (f *fakeDeployAPI) CreateTopicRule(_ context.Context, in *iot.CreateTopicRuleInput, _ ...func(*iot.Options)) (*iot.CreateTopicRuleOutput, error) {
	f.rules[aws.ToString(in.RuleName)] = aws.ToString(in.TopicRulePayload.Sql)
	return &iot.CreateTopicRuleOutput{}, nil
}

func (f *fakeDeployAPI) CreateBucket(_ context.Context, in *s3.CreateBucketInput, _ ...func(*s3.Options)) (*s3.CreateBucketOutput, error) {
	f.buckets = append(f.buckets, aws.ToString(in.Bucket))
	return &s3.CreateBucketOutput{}, nil
}

func TestDeployResolvesTemplateValues(t *testing.T) {
	_, ca1, v1 := newTestCA(t, "CA one")
	_, ca2, v2 := newTestCA(t, "CA two")
	f := &fakeDeployAPI{policies: map[string]string{}, rules: map[string]string{}}
	d, err := Deploy(context.Background(), fixtureTemplate(t, []string{ca1, ca2}, []string{v1, v2}), f, f,
		DeployOptions{StackName: "SphereJitr", Region: "us-east-1", AccountID: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.cas) != 2 || !f.cas[0].SetAsActive || !f.cas[0].AllowAutoRegistration || f.cas[0].VerificationCertificate == nil {
		t.Errorf("CA registrations = %+v, want 2, active, auto-registration, with verification certificate", f.cas)
	}
	ids := d.CAs[0].ID + "," + d.CAs[1].ID
	if got := d.FunctionEnv["CA_CERTIFICATE_IDS"]; got != ids {
		t.Errorf("CA_CERTIFICATE_IDS = %q, want %q", got, ids)
	}
	if got := d.FunctionEnv["PROVISIONED_BY"]; got != "SphereJitr" {
		t.Errorf("PROVISIONED_BY = %q", got)
	}
	name := d.FunctionEnv["DEVICE_POLICY_NAME"]
	doc, ok := f.policies[name]
	if !ok || !strings.HasPrefix(name, "SphereJitr-DevicePolicy1-") {
		t.Fatalf("DEVICE_POLICY_NAME %q does not name the created policy (created %v)", name, f.policies)
	}
	if !strings.Contains(doc, `arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}`) {
		t.Errorf("policy document intrinsics not resolved: %s", doc)
	}
	if !strings.Contains(d.FunctionEnv["DLQ"], "arn:aws:sqs:us-east-1:123456789012:SphereJitr-Dlq1-") {
		t.Errorf("Fn::Sub over an undeployed resource = %q", d.FunctionEnv["DLQ"])
	}
	if len(d.Rules) != 2 || d.Rules[0].TopicFilter != "$aws/events/certificates/registered/"+d.CAs[0].ID {
		t.Errorf("rules = %+v", d.Rules)
	}
	if len(f.buckets) != 1 || d.Bucket != f.buckets[0] || d.Outputs["DemoBucketName"] != d.Bucket || d.Outputs["CaCertificateIds"] != ids {
		t.Errorf("bucket %q, outputs %v", d.Bucket, d.Outputs)
	}
}

func TestDeployRefusesForgedVerificationCertificate(t *testing.T) {
	_, ca1, _ := newTestCA(t, "CA one")
	_, _, otherVerif := newTestCA(t, "Other")
	f := &fakeDeployAPI{policies: map[string]string{}, rules: map[string]string{}}
	_, err := Deploy(context.Background(), fixtureTemplate(t, []string{ca1}, []string{otherVerif}), f, f, DeployOptions{Region: "us-east-1", AccountID: "1"})
	if err == nil || !strings.Contains(err.Error(), "not signed by the CA") {
		t.Errorf("Deploy with a verification certificate of another CA: err = %v", err)
	}
}

func TestRuleSQLSelectsFieldsAndTopicLevels(t *testing.T) {
	s, err := ParseRuleSQL("SELECT topic(2) AS topicThing, operation, name FROM 'devices/+/s3/url'")
	if err != nil || s.TopicFilter != "devices/+/s3/url" {
		t.Fatalf("%+v %v", s, err)
	}
	// A field of the payload named like the alias does not override the topic level.
	out, err := s.Apply("devices/abc/s3/url", []byte(`{"operation":"GET","name":"x","topicThing":"other","extra":1}`))
	if err != nil || string(out) != `{"name":"x","operation":"GET","topicThing":"abc"}` {
		t.Errorf("Apply = %s, %v", out, err)
	}
	if _, err := s.Apply("devices/abc/s3/url", []byte("not json")); err == nil {
		t.Error("a payload that is not JSON was accepted")
	}
	for _, sql := range []string{"SELECT a FROM 'x' WHERE b = 1", "SELECT upper(a) FROM 'x'", "SELECT topic(0) AS t FROM 'x'", "DELETE FROM 'x'"} {
		if _, err := ParseRuleSQL(sql); err == nil {
			t.Errorf("ParseRuleSQL(%q) accepted SQL the emulator cannot evaluate", sql)
		}
	}
}
