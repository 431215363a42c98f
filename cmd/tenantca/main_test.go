package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/config"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// TestMain doubles as the fake CLI's signer: the fake az/azsphere scripts run this test binary with
// TENANTCA_TEST_SIGNER=1 to sign a proof-of-possession certificate for the verification code they were given,
// as the Azure Sphere Security Service does.
func TestMain(m *testing.M) {
	if os.Getenv("TENANTCA_TEST_SIGNER") == "1" {
		os.Exit(signProof(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// signProof: <ca.pem> <ca.key> <CN> <dest>; writes DER like the CLI's .cer files.
func signProof(args []string) int {
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "signer: want ca.pem ca.key cn dest")
		return 2
	}
	certPEM, err1 := os.ReadFile(args[0])
	keyPEM, err2 := os.ReadFile(args[1])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "signer:", err1, err2)
		return 1
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	cert, err1 := x509.ParseCertificate(cb.Bytes)
	key, err2 := x509.ParseECPrivateKey(kb.Bytes)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "signer:", err1, err2)
		return 1
	}
	proof, err := (&testpki.Pair{Cert: cert, Key: key}).IssueVerification(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "signer:", err)
		return 1
	}
	if err := os.WriteFile(args[3], proof.Cert.Raw, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "signer:", err)
		return 1
	}
	return 0
}

const (
	testTenant = "0123abcd-4567-89ef-0123-456789abcdef"
	testCode   = "5e2f1c0b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
)

// fake describes the CLIs the test puts on PATH.
type fake struct {
	az, azExtension, azsphere bool
	loggedOut                 bool
	catalogs                  string        // az sphere catalog list output
	catalog                   string        // az sphere catalog show output
	ca                        *testpki.Pair // downloaded tenant CA
	proofSigner               *testpki.Pair // signs the proof; default ca
	proofCN                   string        // CN of the proof; default the verification code
	failDownload              bool
}

type fakeCLI struct {
	dir, log string
}

func writeFake(t *testing.T, f fake) fakeCLI {
	t.Helper()
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	bin, data := t.TempDir(), t.TempDir()
	log := filepath.Join(data, "calls.log")
	if f.ca == nil {
		f.ca = newCA(t, testpki.CAOptions{})
	}
	if f.proofSigner == nil {
		f.proofSigner = f.ca
	}
	files := map[string][]byte{
		"ca.der": f.ca.Cert.Raw, "signer.pem": f.proofSigner.CertPEM(), "signer.key": f.proofSigner.ECKeyPEM(),
		"catalogs.json": []byte(f.catalogs), "catalog.json": []byte(f.catalog),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sign := fmt.Sprintf(`TENANTCA_TEST_SIGNER=1 exec '%s' '%s/signer.pem' '%s/signer.key' "$code" "$out"`, os.Args[0], data, data)
	if f.proofCN != "" {
		sign = strings.Replace(sign, `"$code"`, "'"+f.proofCN+"'", 1)
	}
	download := fmt.Sprintf(`'%s' '%s/ca.der' > "$out"`, cat, data)
	if f.failDownload {
		download = `echo "ERROR: (NotFound) The certificate was not found." >&2; exit 1`
	}
	loggedOut := "false"
	if f.loggedOut {
		loggedOut = "true"
	}
	common := fmt.Sprintf(`log='%s'; data='%s'; logged_out=%s
out=; code=
parse() { while [ $# -gt 0 ]; do case "$1" in --output-file|--destination) out=$2; shift ;; --verification-code) code=$2; shift ;; esac; shift; done; }
certificate() { # $1: download | download-proof
	case "$1" in
	download) %s ;;
	download-proof) [ -n "$code" ] || { echo "ERROR: --verification-code is required" >&2; exit 2; }; %s ;;
	esac
}
`, log, data, loggedOut, download, sign)
	azExt := "exit 0"
	if !f.azExtension {
		azExt = `echo "ERROR: The extension azure-sphere is not installed." >&2; exit 1`
	}
	scripts := map[string]string{}
	if f.az {
		scripts["az"] = "#!/bin/sh\n" + common + fmt.Sprintf(`echo "az $*" >> "$log"
case "$1 $2" in
"extension show") %s ;;
"account show") if $logged_out; then echo "ERROR: Please run 'az login' to setup account." >&2; exit 1; fi ;;
"sphere catalog") case "$3" in list) '%s' "$data/catalogs.json" ;; show) '%s' "$data/catalog.json" ;; esac ;;
"sphere ca-certificate") verb=$3; shift 3; parse "$@"; [ -n "$out" ] || { echo "ERROR: --output-file is required" >&2; exit 2; }; certificate "$verb" ;;
*) echo "fake az: unexpected: $*" >&2; exit 2 ;;
esac
`, azExt, cat, cat)
	}
	if f.azsphere {
		scripts["azsphere"] = "#!/bin/sh\n" + common + fmt.Sprintf(`echo "azsphere $*" >> "$log"
case "$1 $2" in
"tenant show-selected") if $logged_out; then echo "error: You are not logged in. Run 'azsphere login'." >&2; exit 1; fi
	echo '{"id": "%s", "name": "MyTenant", "roles": ["Administrator"]}' ;;
"ca-certificate download"|"ca-certificate download-proof") verb=$2; shift 2; parse "$@"; [ -n "$out" ] || { echo "error: --destination is required" >&2; exit 2; }; certificate "$verb" ;;
*) echo "fake azsphere: unexpected: $*" >&2; exit 2 ;;
esac
`, strings.ToUpper(testTenant))
	}
	for name, script := range scripts {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Only the fakes are on PATH: a real az on the machine must not answer.
	t.Setenv("PATH", bin)
	return fakeCLI{dir: bin, log: log}
}

func (f fakeCLI) calls(t *testing.T) string {
	t.Helper()
	data, _ := os.ReadFile(f.log)
	return string(data)
}

func newCA(t *testing.T, opts testpki.CAOptions) *testpki.Pair {
	t.Helper()
	ca, err := testpki.NewCA(opts)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

type codeFunc func(context.Context, *iot.GetRegistrationCodeInput, ...func(*iot.Options)) (*iot.GetRegistrationCodeOutput, error)

func (f codeFunc) GetRegistrationCode(ctx context.Context, in *iot.GetRegistrationCodeInput, opts ...func(*iot.Options)) (*iot.GetRegistrationCodeOutput, error) {
	return f(ctx, in, opts...)
}

func fixedCode(code string) func(context.Context) (registrationCodeAPI, string, error) {
	return func(context.Context) (registrationCodeAPI, string, error) {
		return codeFunc(func(context.Context, *iot.GetRegistrationCodeInput, ...func(*iot.Options)) (*iot.GetRegistrationCodeOutput, error) {
			return &iot.GetRegistrationCodeOutput{RegistrationCode: aws.String(code)}, nil
		}), "eu-west-1", nil
	}
}

type result struct {
	code           int
	stdout, stderr string
	out            string
}

func runTool(t *testing.T, iotFn func(context.Context) (registrationCodeAPI, string, error), args ...string) result {
	t.Helper()
	out := filepath.Join(t.TempDir(), "build", "tenant-ca")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"-out", out}, args...), &stdout, &stderr, env{now: time.Now, runner: execRunner{}, iot: iotFn})
	return result{code, stdout.String(), stderr.String(), out}
}

func (r result) noFiles(t *testing.T) {
	t.Helper()
	for _, name := range []string{caFileName, proofFileName} {
		if _, err := os.Stat(filepath.Join(r.out, name)); err == nil {
			t.Errorf("%s left behind by a refused run", name)
		}
	}
}

var deployLine = regexp.MustCompile(`(?m)^  cdk deploy --outputs-file cdk-outputs.json -c tenantCaCerts=(\S+) -c verificationCerts=(\S+) -c tenantId=(\S+)$`)

// checkSuccess verifies the files and that the printed deploy command passes the stack's own context validation.
func checkSuccess(t *testing.T, r result, ca *testpki.Pair, code string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	caPath, proofPath := filepath.Join(r.out, caFileName), filepath.Join(r.out, proofFileName)
	wantLine := fmt.Sprintf("  make deploy CDK_ARGS='-c tenantCaCerts=%s -c verificationCerts=%s -c tenantId=%s'", caPath, proofPath, testTenant)
	if !strings.Contains(r.stdout, wantLine+"\n") {
		t.Errorf("output lacks %q:\n%s", wantLine, r.stdout)
	}
	m := deployLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no cdk deploy command in:\n%s", r.stdout)
	}
	ctxValues := map[string]any{config.KeyTenantCACerts: m[1], config.KeyVerificationCerts: m[2], config.KeyTenantID: m[3]}
	cfg, err := config.Load(func(k string) any { return ctxValues[k] }, time.Now())
	if err != nil {
		t.Fatalf("the stack refuses the printed context: %v", err)
	}
	if !cfg.TenantCAs[0].Cert.Equal(ca.Cert) || cfg.TenantCAs[0].Verification.Subject.CommonName != code || cfg.TenantID != testTenant {
		t.Errorf("stack config: CA %s, proof CN %s, tenant %s", cfg.TenantCAs[0].Cert.Subject, cfg.TenantCAs[0].Verification.Subject.CommonName, cfg.TenantID)
	}
	data, err := os.ReadFile(proofPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := azsphere.ParseCertificate(data); err != nil {
		t.Errorf("proof: %v", err)
	}
}

func TestAzSphere(t *testing.T) {
	ca := newCA(t, testpki.CAOptions{})
	f := writeFake(t, fake{az: true, azExtension: true, ca: ca,
		catalogs: `[{"id": "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.AzureSphere/catalogs/cat1", "name": "cat1", "location": "global"}]`,
		catalog:  `{"id": "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.AzureSphere/catalogs/cat1", "name": "cat1", "properties": {"tenantId": "` + strings.ToUpper(testTenant) + `"}}`,
	})
	r := runTool(t, fixedCode(testCode))
	checkSuccess(t, r, ca, testCode)
	calls := f.calls(t)
	for _, want := range []string{
		"az account show --output none",
		"az sphere catalog list --output json",
		"az sphere catalog show --resource-group rg1 --catalog cat1 --output json",
		"az sphere ca-certificate download --resource-group rg1 --catalog cat1 --output-file " + filepath.Join(r.out, caFileName),
		"az sphere ca-certificate download-proof --resource-group rg1 --catalog cat1 --verification-code " + testCode + " --output-file " + filepath.Join(r.out, proofFileName),
	} {
		if !strings.Contains(calls, want+"\n") {
			t.Errorf("az was not called as %q; calls:\n%s", want, calls)
		}
	}
}

func TestAzSphereCatalogSelection(t *testing.T) {
	two := `[{"id": "/subscriptions/s/resourceGroups/rg1/providers/Microsoft.AzureSphere/catalogs/cat1", "name": "cat1"},
	         {"id": "/subscriptions/s/resourceGroups/rg2/providers/Microsoft.AzureSphere/catalogs/cat2", "name": "cat2"}]`
	migrated := `{"name": "cat2", "properties": {}, "tags": {"MigratedCatalogId": "` + testTenant + `"}}`
	t.Run("two catalogs", func(t *testing.T) {
		writeFake(t, fake{az: true, azExtension: true, catalogs: two})
		r := runTool(t, fixedCode(testCode))
		if r.code != 1 || !strings.Contains(r.stderr, "2 Azure Sphere catalogs match") ||
			!strings.Contains(r.stderr, "-catalog cat1 -resource-group rg1 | -catalog cat2 -resource-group rg2") {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
		r.noFiles(t)
	})
	t.Run("catalog named and group looked up and tenant from the migration tag", func(t *testing.T) {
		ca := newCA(t, testpki.CAOptions{})
		f := writeFake(t, fake{az: true, azExtension: true, ca: ca, catalogs: two, catalog: migrated})
		r := runTool(t, fixedCode(testCode), "-catalog", "cat2", "-ca-name", "SERIAL42")
		checkSuccess(t, r, ca, testCode)
		if calls := f.calls(t); !strings.Contains(calls, "az sphere ca-certificate download --resource-group rg2 --catalog cat2 --name SERIAL42 --output-file") {
			t.Errorf("calls:\n%s", calls)
		}
	})
	t.Run("catalog and group given: no listing", func(t *testing.T) {
		ca := newCA(t, testpki.CAOptions{})
		f := writeFake(t, fake{az: true, azExtension: true, ca: ca, catalogs: "not called", catalog: migrated})
		r := runTool(t, fixedCode(testCode), "-catalog", "cat2", "-resource-group", "rg2")
		checkSuccess(t, r, ca, testCode)
		if strings.Contains(f.calls(t), "catalog list") {
			t.Errorf("listed catalogs although both were given")
		}
	})
	t.Run("no catalog", func(t *testing.T) {
		writeFake(t, fake{az: true, azExtension: true, catalogs: "[]"})
		r := runTool(t, fixedCode(testCode))
		if r.code != 1 || !strings.Contains(r.stderr, "no matching Azure Sphere catalog") || !strings.Contains(r.stderr, "az account set") {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
	})
}

func TestLegacyAzsphere(t *testing.T) {
	ca := newCA(t, testpki.CAOptions{})
	f := writeFake(t, fake{azsphere: true, ca: ca})
	r := runTool(t, fixedCode(testCode), "-legacy-cli", "-index", "1")
	checkSuccess(t, r, ca, testCode)
	if !strings.Contains(r.stderr, "warning: the legacy azsphere CLI retires on 2027-09-27") {
		t.Errorf("no retirement warning:\n%s", r.stderr)
	}
	calls := f.calls(t)
	for _, want := range []string{
		"azsphere tenant show-selected --output json",
		"azsphere ca-certificate download --destination " + filepath.Join(r.out, caFileName) + " --index 1",
		"azsphere ca-certificate download-proof --destination " + filepath.Join(r.out, proofFileName) + " --index 1 --verification-code " + testCode,
	} {
		if !strings.Contains(calls, want+"\n") {
			t.Errorf("azsphere was not called as %q; calls:\n%s", want, calls)
		}
	}
	if !strings.Contains(r.stdout, "Azure Sphere CLI:     azsphere") {
		t.Errorf("output: %s", r.stdout)
	}
}

// Without -legacy-cli the legacy CLI is never used, even when it is the only one that would work: the command
// says how to get az sphere, and how to ask for the legacy CLI until it retires.
func TestNoSilentFallbackToLegacy(t *testing.T) {
	for name, fk := range map[string]fake{
		"az without the extension": {az: true, azExtension: false, azsphere: true},
		"no az":                    {azsphere: true},
	} {
		t.Run(name, func(t *testing.T) {
			fk.ca = newCA(t, testpki.CAOptions{})
			f := writeFake(t, fk)
			r := runTool(t, fixedCode(testCode))
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			for _, want := range []string{"az extension add --name azure-sphere", "make tenant-ca LEGACY_CLI=1", "2027-09-27"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("message does not contain %q:\n%s", want, r.stderr)
				}
			}
			if strings.Contains(f.calls(t), "azsphere ") {
				t.Errorf("the legacy CLI was called without -legacy-cli:\n%s", f.calls(t))
			}
			r.noFiles(t)
		})
	}
}

func TestRefusals(t *testing.T) {
	other := newCA(t, testpki.CAOptions{CommonName: "Another tenant"})
	expired := newCA(t, testpki.CAOptions{NotBefore: time.Now().Add(-3 * 365 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	oneCatalog := `[{"id": "/subscriptions/s/resourceGroups/rg1/providers/Microsoft.AzureSphere/catalogs/cat1", "name": "cat1"}]`
	catalog := `{"properties": {"tenantId": "` + testTenant + `"}}`
	for _, tc := range []struct {
		name string
		fake fake
		args []string
		want []string
	}{
		{"no CLI", fake{}, nil, []string{"no Azure Sphere CLI found", "az extension add --name azure-sphere", "https://aka.ms/AzureSphereSDKDownload/Linux"}},
		{"-legacy-cli without azsphere", fake{az: true, azExtension: true}, []string{"-legacy-cli"}, []string{"the legacy azsphere CLI is not on PATH", "drop LEGACY_CLI"}},
		{"az without the extension", fake{az: true}, nil, []string{"without the Azure Sphere extension", "az extension add --name azure-sphere"}},
		{"az not signed in", fake{az: true, azExtension: true, loggedOut: true}, nil, []string{"not signed in", "run 'az login'", "Please run 'az login'"}},
		{"azsphere not signed in", fake{azsphere: true, loggedOut: true}, []string{"-legacy-cli"}, []string{"azsphere is not signed in", "azsphere login", "azsphere tenant select"}},
		{"proof signed by another CA", fake{azsphere: true, proofSigner: other}, []string{"-legacy-cli"}, []string{"not signed by the downloaded tenant CA", "-index or -thumbprint"}},
		{"proof for another code", fake{azsphere: true, proofCN: "0000"}, []string{"-legacy-cli"}, []string{`has CN "0000", not the AWS IoT registration code`}},
		{"expired tenant CA", fake{azsphere: true, ca: expired}, []string{"-legacy-cli"}, []string{"is not a usable tenant CA", "expired"}},
		{"download fails", fake{az: true, azExtension: true, catalogs: oneCatalog, catalog: catalog, failDownload: true}, nil,
			[]string{"download the tenant CA certificate with az sphere", "(NotFound) The certificate was not found"}},
		{"comma in the output folder", fake{azsphere: true}, []string{"-legacy-cli", "-out", "build/a,b"}, []string{"without ','"}},
		{"bad tenant id", fake{azsphere: true}, []string{"-legacy-cli", "-tenant-id", "tenant-1"}, []string{`-tenant-id "tenant-1" is not a tenant id`}},
		{"CA_NAME with azsphere", fake{azsphere: true}, []string{"-legacy-cli", "-ca-name", "X"}, []string{"-ca-name selects a CA in az sphere", "-index <n>"}},
		{"INDEX with az sphere", fake{az: true, azExtension: true}, []string{"-index", "1"}, []string{"-index and -thumbprint select a CA in the legacy azsphere CLI", "-ca-name <serial number>", "LEGACY_CLI=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFake(t, tc.fake)
			r := runTool(t, fixedCode(testCode), tc.args...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1; stdout %s", r.code, r.stdout)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("message does not contain %q:\n%s", want, r.stderr)
				}
			}
			r.noFiles(t)
		})
	}
}

// isolateAWS leaves the default credential chain nothing to find.
func isolateAWS(t *testing.T) {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("HOME", t.TempDir())
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOT", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestNoAWSCredentials(t *testing.T) {
	writeFake(t, fake{azsphere: true})
	isolateAWS(t)
	t.Setenv("AWS_REGION", "eu-west-1")
	r := runTool(t, defaultIoT, "-legacy-cli")
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	for _, want := range []string{"no AWS credentials to get the AWS IoT registration code", "aws configure", "aws sso login"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("message does not contain %q:\n%s", want, r.stderr)
		}
	}
	r.noFiles(t)
}

func TestNoAWSRegion(t *testing.T) {
	writeFake(t, fake{azsphere: true})
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	r := runTool(t, defaultIoT, "-legacy-cli")
	if r.code != 1 || !strings.Contains(r.stderr, "no AWS region") || !strings.Contains(r.stderr, "AWS_REGION") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

func TestUnreadableCLIOutput(t *testing.T) {
	for name, f := range map[string]fake{
		"catalog list": {az: true, azExtension: true, catalogs: "not json"},
		"catalog show": {az: true, azExtension: true, catalogs: `[{"id": "/subscriptions/s/resourceGroups/rg/providers/x/catalogs/c", "name": "c"}]`, catalog: "{}"},
	} {
		t.Run(name, func(t *testing.T) {
			writeFake(t, f)
			r := runTool(t, fixedCode(testCode))
			if r.code != 1 || !(strings.Contains(r.stderr, "printed no catalog list") || strings.Contains(r.stderr, "has no tenant id")) {
				t.Errorf("exit %d: %s", r.code, r.stderr)
			}
		})
	}
}

// The registration code comes from AWS IoT through the real SDK client and the default credential chain (moto
// here, whose code is per account and region as on AWS: the proof must carry it).
func TestRegistrationCodeFromAWSIoT(t *testing.T) {
	ctx := context.Background()
	moto, err := motoserver.Start(ctx, motoserver.Options{})
	if err != nil {
		t.Fatalf("start moto: %v", err)
	}
	t.Cleanup(moto.Stop)
	ca := newCA(t, testpki.CAOptions{})
	writeFake(t, fake{azsphere: true, ca: ca})
	isolateAWS(t)
	for k, v := range map[string]string{"AWS_ENDPOINT_URL_IOT": moto.URL, "AWS_REGION": motoserver.Region,
		"AWS_ACCESS_KEY_ID": motoserver.AccessKeyID, "AWS_SECRET_ACCESS_KEY": motoserver.SecretAccessKey} {
		t.Setenv(k, v)
	}
	r := runTool(t, defaultIoT, "-legacy-cli")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	proof, err := os.ReadFile(filepath.Join(r.out, proofFileName))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := azsphere.ParseCertificate(proof)
	if err != nil {
		t.Fatal(err)
	}
	checkSuccess(t, r, ca, cert.Subject.CommonName)
	if !strings.Contains(r.stdout, "registration code of "+motoserver.Region) || !strings.Contains(r.stdout, "Deploy the stack in "+motoserver.Region) {
		t.Errorf("region not reported:\n%s", r.stdout)
	}
}
