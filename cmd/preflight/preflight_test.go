package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

var moto *motoserver.Server

const motoStartTimeout = 2 * time.Minute

// The preflight runs against moto as the account: STS, AWS IoT (registration code, fleet indexing, v2 logging),
// CloudFormation (the bootstrap stack) and Service Quotas (iotcore), the last three through testkit/moto/account.py.
func TestMain(m *testing.M) { os.Exit(motoserver.RunTestsWith(motoserver.Options{}, m, &moto)) }

// account is a fresh moto account seen from region, with the process environment pointing the SDK at it and the
// working directory an empty folder (no cdk.json, no build/tenant-ca).
func account(t *testing.T, s *motoserver.Server, region string) aws.Config {
	t.Helper()
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", motoserver.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", motoserver.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_REGION", region)
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL", s.URL)
	t.Chdir(t.TempDir())
	return aws.Config{Region: region, BaseEndpoint: aws.String(s.URL),
		Credentials: credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")}
}

// registrationCode is the account's AWS IoT registration code in the region of cfg.
func registrationCode(t *testing.T, cfg aws.Config) string {
	t.Helper()
	out, err := iot.NewFromConfig(cfg).GetRegistrationCode(context.Background(), &iot.GetRegistrationCodeInput{})
	if err != nil {
		t.Fatal(err)
	}
	return *out.RegistrationCode
}

// tenantCA writes build/tenant-ca/tenant-ca.cer and verification.cer (DER, as `make tenant-ca` does), the proof
// carrying code as its CN, and returns the CA.
func tenantCA(t *testing.T, code string) *testpki.Pair {
	t.Helper()
	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: "Azure Sphere test tenant CA"})
	if err != nil {
		t.Fatal(err)
	}
	proof, err := ca.IssueVerification(code)
	if err != nil {
		t.Fatal(err)
	}
	writeCert(t, defaultTenantCA, ca)
	writeCert(t, defaultVerification, proof)
	return ca
}

func writeCert(t *testing.T, path string, p *testpki.Pair) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, p.Cert.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// bootstrapTemplate stands for the CDK bootstrap template: its version parameter and the output the CLI reads.
const bootstrapTemplate = `{"Resources":{"CdkBootstrapVersion":{"Type":"AWS::SSM::Parameter",
  "Properties":{"Type":"String","Name":"/cdk-bootstrap/hnb659fds/version","Value":"%s"}}},
  "Outputs":{"BootstrapVersion":{"Value":"%s"}}}`

// bootstrap creates the CDKToolkit stack with BootstrapVersion version in the region of cfg.
func bootstrap(t *testing.T, cfg aws.Config, version string) {
	t.Helper()
	body := strings.ReplaceAll(bootstrapTemplate, "%s", version)
	_, err := cloudformation.NewFromConfig(cfg).CreateStack(context.Background(), &cloudformation.CreateStackInput{
		StackName: aws.String("CDKToolkit"), TemplateBody: aws.String(body)})
	if err != nil {
		t.Fatal(err)
	}
}

// preflightRun runs the command and returns its output and error.
func preflightRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	t.Logf("$ preflight %s\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String(), err
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestPreflightPasses(t *testing.T) {
	cfg := account(t, moto, "us-east-1")
	tenantCA(t, registrationCode(t, cfg))
	bootstrap(t, cfg, "30")
	out, err := preflightRun(t, "-devices", "1000")
	if err != nil {
		t.Fatalf("preflight failed: %v", err)
	}
	wantLines(t, out,
		"[ok  ] credentials: account 123456789012, region us-east-1",
		"[ok  ] tenant CA files: DEFAULT mode: build/tenant-ca/tenant-ca.cer",
		"[ok  ] account and region of the tenant CA: the verification certificate's CN is the registration code of account 123456789012 in us-east-1",
		"[ok  ] CDK bootstrap: CDKToolkit in us-east-1: BootstrapVersion 30",
		"[info] fleet indexing (account-wide): thing indexing OFF",
		"[info] AWS IoT logging (account-wide): v2 logging not configured",
		// The emulator's Service Quotas answer the rates it enforces: AWS's defaults, 10/s for both APIs.
		"[ok  ] AWS IoT quotas and fleet reboot: DescribeCertificate 10/s, UpdateCertificate 10/s from Service Quotas (iotcore)",
		"Whole-fleet reboot of 1000 devices: bound 1000 ÷ 10/s (DescribeCertificate) = 100 s (1m40s); projected 130 s (2m10s) until every device is connected again (× 1.30",
	)
	if strings.Contains(out, "fix:") {
		t.Error("a passing preflight names a fix")
	}
}

func TestPreflightRefusesAProofOfAnotherRegion(t *testing.T) {
	cfg := account(t, moto, "us-east-1")
	other := cfg.Copy()
	other.Region = "eu-west-1"
	otherCode := registrationCode(t, other)
	if otherCode == registrationCode(t, cfg) {
		t.Fatal("the emulator gives two regions the same registration code: the check below could not fail")
	}
	tenantCA(t, otherCode) // make tenant-ca ran with AWS_REGION=eu-west-1
	bootstrap(t, cfg, "30")
	out, err := preflightRun(t)
	if !errors.Is(err, errChecksFailed) {
		t.Fatalf("error %v, want %v", err, errChecksFailed)
	}
	wantLines(t, out,
		"[FAIL] account and region of the tenant CA: the verification certificate of the tenant CA build/tenant-ca/tenant-ca.cer has CN "+otherCode,
		"'make tenant-ca' ran with other credentials or another region",
		"fix: AWS_REGION=us-east-1 make tenant-ca (with the credentials of account 123456789012)",
	)
}

func TestPreflightWithoutBootstrapStack(t *testing.T) {
	cfg := account(t, moto, "us-east-1")
	tenantCA(t, registrationCode(t, cfg))
	// A bootstrap stack in another region does not count.
	other := cfg.Copy()
	other.Region = "eu-west-1"
	bootstrap(t, other, "30")
	out, err := preflightRun(t)
	if !errors.Is(err, errChecksFailed) {
		t.Fatalf("error %v, want %v", err, errChecksFailed)
	}
	wantLines(t, out,
		"[FAIL] CDK bootstrap: no bootstrap stack CDKToolkit in account 123456789012, region us-east-1",
		"fix: AWS_REGION=us-east-1 make bootstrap")
}

func TestPreflightWithAnOldBootstrapStack(t *testing.T) {
	cfg := account(t, moto, "us-east-1")
	tenantCA(t, registrationCode(t, cfg))
	bootstrap(t, cfg, "5")
	out, err := preflightRun(t)
	if !errors.Is(err, errChecksFailed) {
		t.Fatalf("error %v, want %v", err, errChecksFailed)
	}
	wantLines(t, out, "[FAIL] CDK bootstrap: bootstrap version 5, the app needs 6 or later", "fix: AWS_REGION=us-east-1 make bootstrap")
}

func TestPreflightRefusesBadTenantCAFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shape func(t *testing.T, code string)
		want  []string
	}{
		{"missing", func(t *testing.T, code string) {}, []string{
			`[FAIL] tenant CA files: context "tenantCaCerts": `, "build/tenant-ca/tenant-ca.cer",
			"fix: run 'make tenant-ca' to download the current tenant CA"}},
		{"not a certificate", func(t *testing.T, code string) {
			tenantCA(t, code)
			if err := os.WriteFile(defaultTenantCA, []byte("not a certificate"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{`[FAIL] tenant CA files: context "tenantCaCerts": `, "fix: run 'make tenant-ca'"}},
		{"not a CA", func(t *testing.T, code string) {
			tenantCA(t, code)
			leaf, err := testpki.NewCA(testpki.CAOptions{NotCA: true})
			if err != nil {
				t.Fatal(err)
			}
			writeCert(t, defaultTenantCA, leaf)
		}, []string{`[FAIL] tenant CA files: context "tenantCaCerts": build/tenant-ca/tenant-ca.cer: `, "not a CA", "fix: download the tenant CA that is valid now: 'make tenant-ca'"}},
		{"proof signed by another CA", func(t *testing.T, code string) {
			tenantCA(t, code)
			other, err := testpki.NewCA(testpki.CAOptions{})
			if err != nil {
				t.Fatal(err)
			}
			proof, err := other.IssueVerification(code)
			if err != nil {
				t.Fatal(err)
			}
			writeCert(t, defaultVerification, proof)
		}, []string{`[FAIL] tenant CA files: context "verificationCerts": build/tenant-ca/verification.cer is not signed by the tenant CA build/tenant-ca/tenant-ca.cer`,
			"fix: download the proof for that CA: 'make tenant-ca'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := account(t, moto, "us-east-1")
			bootstrap(t, cfg, "30")
			tc.shape(t, registrationCode(t, cfg))
			out, err := preflightRun(t)
			if !errors.Is(err, errChecksFailed) {
				t.Fatalf("error %v, want %v", err, errChecksFailed)
			}
			wantLines(t, out, tc.want...)
			wantLines(t, out, "[FAIL] account and region of the tenant CA: not checked: the tenant CA files did not pass")
		})
	}
}

func TestPreflightReadsTheDeploysContext(t *testing.T) {
	cfg := account(t, moto, "us-east-1")
	tenantCA(t, registrationCode(t, cfg))
	bootstrap(t, cfg, "30")
	// The deploy's CDK_ARGS name other files: preflight checks those, not build/tenant-ca.
	if err := os.Rename(defaultTenantCA, "ca.cer"); err != nil {
		t.Fatal(err)
	}
	out, err := preflightRun(t, "-cdk-args", "-c tenantCaCerts=ca.cer --context verificationCerts=build/tenant-ca/verification.cer -c tenantId=x")
	if err != nil {
		t.Fatalf("preflight failed: %v", err)
	}
	wantLines(t, out, "[ok  ] tenant CA files: DEFAULT mode: ca.cer", "from CDK_ARGS")
	// SNI_ONLY from cdk.json: no proof, so no account/region tie; preflight says so and passes.
	if err := os.WriteFile("cdk.json", []byte(`{"context":{"certificateMode":"SNI_ONLY","tenantCaCerts":"ca.cer"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = preflightRun(t)
	if err != nil {
		t.Fatalf("preflight failed: %v", err)
	}
	wantLines(t, out, "[ok  ] tenant CA files: SNI_ONLY mode: ca.cer", "from cdk.json", "[info] account and region of the tenant CA: SNI_ONLY")
}

func TestPreflightWithoutRegion(t *testing.T) {
	account(t, moto, "")
	out, err := preflightRun(t)
	if !errors.Is(err, errChecksFailed) {
		t.Fatalf("error %v, want %v", err, errChecksFailed)
	}
	wantLines(t, out, "[FAIL] credentials: no AWS region", "fix: export AWS_REGION=<the region to deploy to>")
}

// TestPreflightReportsAccountWideSettings: fleet indexing and v2 logging someone else set are warnings, not failures.
func TestPreflightReportsAccountWideSettings(t *testing.T) {
	cfg := account(t, moto, "us-east-1")
	tenantCA(t, registrationCode(t, cfg))
	bootstrap(t, cfg, "30")
	api := iot.NewFromConfig(cfg)
	ctx := context.Background()
	if _, err := api.UpdateIndexingConfiguration(ctx, &iot.UpdateIndexingConfigurationInput{
		ThingIndexingConfiguration: &iottypes.ThingIndexingConfiguration{ThingIndexingMode: iottypes.ThingIndexingModeRegistry,
			ThingConnectivityIndexingMode: iottypes.ThingConnectivityIndexingModeStatus}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.SetV2LoggingOptions(ctx, &iot.SetV2LoggingOptionsInput{DefaultLogLevel: iottypes.LogLevelWarn,
		RoleArn: aws.String("arn:aws:iam::123456789012:role/someone-elses-logging")}); err != nil {
		t.Fatal(err)
	}
	out, err := preflightRun(t)
	if err != nil {
		t.Fatalf("preflight failed: %v", err)
	}
	wantLines(t, out,
		"[warn] fleet indexing (account-wide): thing indexing REGISTRY, connectivity indexing STATUS: already set",
		"[warn] AWS IoT logging (account-wide): v2 logging already configured: default level WARN, role arn:aws:iam::123456789012:role/someone-elses-logging")
}

// TestPreflightProjectsFromTheAccountsQuotas: a raised quota in Service Quotas changes the projection, and preflight
// says how to let the JITR function use it.
func TestPreflightProjectsFromTheAccountsQuotas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), motoStartTimeout)
	raised, err := motoserver.Start(ctx, motoserver.Options{Env: []string{`IOT_QUOTAS={"DescribeCertificate":50,"UpdateCertificate":40}`}})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raised.Stop)
	cfg := account(t, raised, "us-east-1")
	tenantCA(t, registrationCode(t, cfg))
	bootstrap(t, cfg, "30")
	out, err := preflightRun(t, "-devices", "10000")
	if err != nil {
		t.Fatalf("preflight failed: %v", err)
	}
	wantLines(t, out,
		"DescribeCertificate 50/s, UpdateCertificate 40/s from Service Quotas (iotcore)",
		"Whole-fleet reboot of 10000 devices: bound 10000 ÷ 40/s (UpdateCertificate) = 250 s (4m10s); projected 325 s (5m25s)",
		`deploy with -c iotQuotas='{"DescribeCertificate":50,"UpdateCertificate":40}'`)
}

func TestPrintEnvironment(t *testing.T) {
	account(t, moto, "eu-central-1")
	out, err := preflightRun(t, "-print-environment")
	if err != nil || out != "aws://123456789012/eu-central-1\n" {
		t.Errorf("got %q, %v; want aws://123456789012/eu-central-1", out, err)
	}
	account(t, moto, "")
	if _, err := preflightRun(t, "-print-environment"); err == nil || !strings.Contains(err.Error(), "export AWS_REGION") {
		t.Errorf("without a region: %v, want the fix", err)
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-devices", "0"}, "-devices 0"},
		{[]string{"extra"}, "takes no argument"},
	} {
		if _, err := preflightRun(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("preflight %v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}
