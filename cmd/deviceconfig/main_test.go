package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const (
	sampleOutputs  = "testdata/cdk-outputs.json"
	deviceDir      = "../../device"
	goldenKey      = "fleet/golden/notice.txt"
	testAccessKey  = "AKIDEXAMPLE"
	testSecretKey  = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	sampleEndpoint = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
	sampleBucket   = "spherejitr-demobucket-1a2b3c4d5e6f"
	sampleRegion   = "eu-west-1"
)

var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testEnv signs with fixed credentials at a fixed time and never reads the machine's AWS configuration.
func testEnv(creds aws.CredentialsProvider) env {
	return env{
		now: func() time.Time { return fixedNow },
		loadAWSConfig: func(_ context.Context, optFns ...func(*config.LoadOptions) error) (aws.Config, error) {
			var lo config.LoadOptions
			for _, fn := range optFns {
				if err := fn(&lo); err != nil {
					return aws.Config{}, err
				}
			}
			return aws.Config{Region: lo.Region, Credentials: creds}, nil
		},
		getenv:        func(string) string { return "" },
		defaultSDKDir: filepath.Join(os.TempDir(), "no-azure-sphere-sdk-here"),
	}
}

func staticCreds(token string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, token)
}

type result struct {
	code           int
	stdout, stderr string
	dir            string
}

func runTool(t *testing.T, e env, args ...string) result {
	t.Helper()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	args = append([]string{"-out", dir, "-device-dir", deviceDir}, args...)
	code := run(context.Background(), args, &stdout, &stderr, e)
	return result{code, stdout.String(), stderr.String(), dir}
}

func (r result) file(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		t.Fatalf("%s was not written: %v\nstderr: %s", name, err, r.stderr)
	}
	return string(data)
}

func (r result) noFiles(t *testing.T) {
	t.Helper()
	for _, name := range []string{"device_config.h", "app_manifest.json"} {
		if _, err := os.Stat(filepath.Join(r.dir, name)); err == nil {
			t.Errorf("%s was written by a refused run", name)
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run go test ./cmd/deviceconfig -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./cmd/deviceconfig -update rewrites it after review)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// The header and manifest from the sample outputs file, with the device's real manifest template.
func TestGoldenHeaderAndManifest(t *testing.T) {
	r := runTool(t, testEnv(staticCreds("")), "-outputs", sampleOutputs, "-key", goldenKey)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("unexpected warnings with long-term credentials: %s", r.stderr)
	}
	golden(t, "device_config.h", r.file(t, "device_config.h"))
	golden(t, "app_manifest.json", r.file(t, "app_manifest.json"))
	golden(t, "stdout.txt", strings.ReplaceAll(r.stdout, r.dir, "<out>"))
}

func TestManifestKeepsTemplateAndFillsCapabilities(t *testing.T) {
	r := runTool(t, testEnv(staticCreds("")), "-outputs", sampleOutputs, "-key", goldenKey)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	tmpl, err := os.ReadFile(filepath.Join(deviceDir, "app_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := parseObject(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	out, err := parseObject([]byte(r.file(t, "app_manifest.json")))
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != len(out) {
		t.Fatalf("manifest has %d keys, template %d", len(out), len(in))
	}
	for i, m := range in {
		if out[i].Key != m.Key {
			t.Errorf("key %d is %s, template has %s", i, out[i].Key, m.Key)
		}
		if m.Key != "Capabilities" && !bytes.Equal(compactJSON(t, out[i].Value), compactJSON(t, m.Value)) {
			t.Errorf("%s changed: %s, template %s", m.Key, out[i].Value, m.Value)
		}
	}
	caps, _ := out.get("Capabilities")
	want := `{"AllowedConnections":["` + sampleEndpoint + `","` + sampleBucket + `.s3.` + sampleRegion + `.amazonaws.com"],` +
		`"DeviceAuthentication":"01234567-89ab-cdef-0123-456789abcdef"}`
	if got := string(compactJSON(t, caps)); got != want {
		t.Errorf("Capabilities = %s\nwant %s", got, want)
	}
}

func compactJSON(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jsonCompact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRenderManifestRefusals(t *testing.T) {
	s := ManifestSettings{Endpoint: sampleEndpoint, BucketHost: "b.s3.eu-west-1.amazonaws.com", TenantID: "01234567-89ab-cdef-0123-456789abcdef"}
	for name, tc := range map[string]struct{ template, want string }{
		"unknown placeholder":        {`{"ComponentId":"f4f145d0-8225-433f-9fea-27a29bda22b2","Name":"@APP_NAME@"}`, "placeholder @APP_NAME@"},
		"no ComponentId":             {`{"Name":"x","Capabilities":{}}`, "no ComponentId GUID"},
		"ComponentId not a GUID":     {`{"ComponentId":"app","Capabilities":{}}`, "no ComponentId GUID"},
		"not JSON":                   {`{"ComponentId":`, "invalid JSON"},
		"duplicate key":              {`{"ComponentId":"f4f145d0-8225-433f-9fea-27a29bda22b2","ComponentId":"f4f145d0-8225-433f-9fea-27a29bda22b2"}`, "appears twice"},
		"Capabilities not an object": {`{"ComponentId":"f4f145d0-8225-433f-9fea-27a29bda22b2","Capabilities":[]}`, "Capabilities"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := RenderManifest([]byte(tc.template), s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	t.Run("other capabilities kept in order", func(t *testing.T) {
		got, err := RenderManifest([]byte(`{"ComponentId":"f4f145d0-8225-433f-9fea-27a29bda22b2","Capabilities":{"Gpio":[8,9],"AllowedConnections":["old.example.com"],"WifiConfig":true}}`), s)
		if err != nil {
			t.Fatal(err)
		}
		want := `{"ComponentId":"f4f145d0-8225-433f-9fea-27a29bda22b2","Capabilities":{"Gpio":[8,9],"AllowedConnections":["` + sampleEndpoint +
			`","b.s3.eu-west-1.amazonaws.com"],"WifiConfig":true,"DeviceAuthentication":"01234567-89ab-cdef-0123-456789abcdef"}}`
		if string(compactJSON(t, got)) != want {
			t.Errorf("got %s\nwant %s", compactJSON(t, got), want)
		}
	})
}

// presigned returns the query of a URL of the header.
func headerValue(t *testing.T, header, macro string) string {
	t.Helper()
	for _, line := range strings.Split(header, "\n") {
		if rest, ok := strings.CutPrefix(line, "#define "+macro+" "); ok {
			if !strings.HasPrefix(rest, `"`) {
				return rest
			}
			// Our URLs carry no escapes; the compile test covers escaping.
			return strings.Trim(rest, `"`)
		}
	}
	t.Fatalf("%s not defined in the header:\n%s", macro, header)
	return ""
}

// signatureMatches re-signs the URL independently for method and reports whether the signature is the same, which
// proves what method, credentials, region, time and expiry the URL was signed for.
func signatureMatches(t *testing.T, raw, method string, creds aws.Credentials) bool {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	sig := q.Get("X-Amz-Signature")
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token"} {
		q.Del(k)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, "UNSIGNED-PAYLOAD", "s3", sampleRegion, fixedNow,
		func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		t.Fatal(err)
	}
	su, _ := url.Parse(signed)
	return sig != "" && su.Query().Get("X-Amz-Signature") == sig
}

func TestPresignedURLs(t *testing.T) {
	creds := aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}
	for _, tc := range []struct {
		expires     string
		wantSeconds string
	}{
		{"", "86400"}, // the default, 24h
		{"7d", "604800"},
		{"168h", "604800"},
		{"90m", "5400"},
		{"1.5d", "129600"},
	} {
		t.Run("expires="+tc.expires, func(t *testing.T) {
			args := []string{"-outputs", sampleOutputs, "-key", goldenKey}
			if tc.expires != "" {
				args = append(args, "-expires", tc.expires)
			}
			r := runTool(t, testEnv(staticCreds("")), args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			header := r.file(t, "device_config.h")
			// No image carries a URL that writes: the only URL is a GET, and its signature is no PUT signature.
			if strings.Contains(header, "PUT") {
				t.Errorf("header mentions PUT:\n%s", header)
			}
			for _, c := range []struct{ macro, method, other string }{
				{"S3_FLEET_GET_URL", http.MethodGet, http.MethodPut},
			} {
				raw := headerValue(t, header, c.macro)
				u, err := url.Parse(raw)
				if err != nil {
					t.Fatalf("%s: %v", c.macro, err)
				}
				if u.Scheme != "https" || u.Host != sampleBucket+".s3."+sampleRegion+".amazonaws.com" || u.Path != "/"+goldenKey {
					t.Errorf("%s: scheme %s host %s path %s", c.macro, u.Scheme, u.Host, u.Path)
				}
				q := u.Query()
				if got := q.Get("X-Amz-Expires"); got != tc.wantSeconds {
					t.Errorf("%s: X-Amz-Expires = %s, want %s", c.macro, got, tc.wantSeconds)
				}
				if got := q.Get("X-Amz-SignedHeaders"); got != "host" {
					t.Errorf("%s: signed headers %q: the device sends only Host", c.macro, got)
				}
				if got := q.Get("X-Amz-Date"); got != fixedNow.Format("20060102T150405Z") {
					t.Errorf("%s: X-Amz-Date = %s", c.macro, got)
				}
				if got := q.Get("X-Amz-Credential"); got != testAccessKey+"/20260102/"+sampleRegion+"/s3/aws4_request" {
					t.Errorf("%s: X-Amz-Credential = %s", c.macro, got)
				}
				for k := range q {
					if strings.Contains(strings.ToLower(k), "checksum") {
						t.Errorf("%s: carries %s, which the device cannot honour", c.macro, k)
					}
				}
				if !signatureMatches(t, raw, c.method, creds) {
					t.Errorf("%s: signature is not a %s signature of this URL", c.macro, c.method)
				}
				if signatureMatches(t, raw, c.other, creds) {
					t.Errorf("%s: signature also verifies as %s", c.macro, c.other)
				}
			}
		})
	}
}

// The image carries a URL for the fleet-wide file only: fleet/notice.txt by default, never a key outside fleet/
// (a device's own objects are reached with runtime URLs), nor one that climbs out of it.
func TestFleetKey(t *testing.T) {
	e := testEnv(staticCreds(""))
	r := runTool(t, e, "-outputs", sampleOutputs)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	u, _ := url.Parse(headerValue(t, r.file(t, "device_config.h"), "S3_FLEET_GET_URL"))
	if u.Path != "/"+DefaultFleetKey {
		t.Errorf("object key %s, want %s", u.Path, DefaultFleetKey)
	}
	for _, key := range []string{"devices/0a1b2c/hello.txt", "fleet/", "fleet/../devices/x", "fleet//x", "notice.txt", "/fleet/x"} {
		t.Run(key, func(t *testing.T) {
			r := runTool(t, e, "-outputs", sampleOutputs, "-key", key)
			if r.code != 2 || !strings.Contains(r.stderr, "-key") {
				t.Errorf("exit %d, stderr %s: want a usage error naming -key", r.code, r.stderr)
			}
		})
	}
}

func TestTemporaryCredentialsOutlivingTheURLsDoNotWarn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expires time.Time
		warn    bool
	}{
		{"session ends before the URLs", fixedNow.Add(time.Hour), true},
		{"session outlives the URLs", fixedNow.Add(48 * time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey, SessionToken: "tok", CanExpire: true, Expires: tc.expires}, nil
			})
			r := runTool(t, testEnv(creds), "-outputs", sampleOutputs, "-key", goldenKey)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			warned := strings.Contains(r.stderr, "temporary credentials")
			if warned != tc.warn {
				t.Errorf("warned %v, want %v: %q", warned, tc.warn, r.stderr)
			}
			if tc.warn && !strings.Contains(r.stderr, "at "+tc.expires.Format(time.RFC3339)) {
				t.Errorf("warning does not say when the session ends: %q", r.stderr)
			}
		})
	}
}

func TestTemporaryCredentialsWarn(t *testing.T) {
	r := runTool(t, testEnv(staticCreds("session-token-value")), "-outputs", sampleOutputs, "-key", goldenKey)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "temporary credentials") || !strings.Contains(r.stderr, "IAM user") {
		t.Errorf("no warning about temporary credentials: %q", r.stderr)
	}
	if !strings.Contains(headerValue(t, r.file(t, "device_config.h"), "S3_FLEET_GET_URL"), "X-Amz-Security-Token=session-token-value") {
		t.Errorf("URL signed without the session token")
	}
}

func TestNoCredentialsWithOutputsFileWritesUnsignedURLs(t *testing.T) {
	none := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errNoCreds
	})
	r := runTool(t, testEnv(none), "-outputs", sampleOutputs, "-key", goldenKey)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"UNSIGNED", "aws configure", "aws sso login"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("warning %q does not mention %q", r.stderr, want)
		}
	}
	header := r.file(t, "device_config.h")
	want := "https://" + sampleBucket + ".s3." + sampleRegion + ".amazonaws.com/" + goldenKey
	if got := headerValue(t, header, "S3_FLEET_GET_URL"); got != want {
		t.Errorf("GET URL %s, want %s", got, want)
	}
	if !strings.Contains(header, "NOT signed") {
		t.Errorf("header does not say the URLs are unsigned")
	}
}

type credsError string

func (e credsError) Error() string { return string(e) }

const errNoCreds = credsError("no credentials in the chain")

// writeOutputs writes an outputs file with the sample values changed by edit (nil value: removed).
func writeOutputs(t *testing.T, edit map[string]any) string {
	t.Helper()
	values := map[string]any{
		"IotEndpoint": sampleEndpoint, "CaCertificateIds": "abc", "DevicePolicyName": "p", "DemoBucketName": sampleBucket,
		"Region": sampleRegion, "TenantId": "01234567-89ab-cdef-0123-456789abcdef", "RetainRegistry": "false", "DeviceTopicRoot": "devices",
	}
	for k, v := range edit {
		if v == nil {
			delete(values, k)
		} else {
			values[k] = v
		}
	}
	path := filepath.Join(t.TempDir(), "cdk-outputs.json")
	if err := os.WriteFile(path, mustJSON(t, map[string]any{"SphereJitr": values}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     func(t *testing.T) []string
		code     int
		contains []string
	}{
		{"missing output key", func(t *testing.T) []string {
			return []string{"-outputs", writeOutputs(t, map[string]any{"DemoBucketName": nil})}
		}, 1, []string{`"DemoBucketName"`, "is missing", "make deploy"}},
		{"two missing output keys reported together", func(t *testing.T) []string {
			return []string{"-outputs", writeOutputs(t, map[string]any{"IotEndpoint": nil, "TenantId": ""})}
		}, 1, []string{`"IotEndpoint"`, `"TenantId"`}},
		{"bad tenant id", func(t *testing.T) []string {
			return []string{"-outputs", writeOutputs(t, map[string]any{"TenantId": "my-tenant"})}
		}, 1, []string{`"TenantId"`, `"my-tenant" is not an Azure Sphere tenant id`, "tenantId=<GUID>"}},
		{"endpoint with a scheme", func(t *testing.T) []string {
			return []string{"-outputs", writeOutputs(t, map[string]any{"IotEndpoint": "https://" + sampleEndpoint})}
		}, 1, []string{`"IotEndpoint"`, "not a host name"}},
		{"expiry over 7 days", func(t *testing.T) []string {
			return []string{"-outputs", sampleOutputs, "-expires", "8d"}
		}, 2, []string{"more than 7 days", "SigV4", "-expires 7d"}},
		{"expiry one second over 7 days", func(t *testing.T) []string {
			return []string{"-outputs", sampleOutputs, "-expires", "168h0m1s"}
		}, 2, []string{"more than 7 days"}},
		{"expiry not a duration", func(t *testing.T) []string {
			return []string{"-outputs", sampleOutputs, "-expires", "soon"}
		}, 2, []string{`-expires "soon" is not a duration`}},
		{"expiry zero", func(t *testing.T) []string {
			return []string{"-outputs", sampleOutputs, "-expires", "0s"}
		}, 2, []string{"at least a second"}},
		{"port", func(t *testing.T) []string {
			return []string{"-outputs", sampleOutputs, "-port", "1883"}
		}, 2, []string{"port 1883", "8883", "443"}},
		{"outputs file missing", func(t *testing.T) []string {
			return []string{"-outputs", filepath.Join(t.TempDir(), "cdk-outputs.json")}
		}, 1, []string{"does not exist", "make deploy", "leave OUTPUTS unset"}},
		{"stack not in the outputs file", func(t *testing.T) []string {
			return []string{"-outputs", sampleOutputs, "-stack", "Other"}
		}, 1, []string{`no stack "Other"`, "it has: SphereJitr", "-stack <name>"}},
		{"outputs file not JSON", func(t *testing.T) []string {
			p := filepath.Join(t.TempDir(), "cdk-outputs.json")
			if err := os.WriteFile(p, []byte("IotEndpoint=x"), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"-outputs", p}
		}, 1, []string{"is not the JSON 'cdk deploy --outputs-file' writes"}},
		{"manifest template missing", func(t *testing.T) []string {
			return []string{"-outputs", sampleOutputs, "-manifest-template", filepath.Join(t.TempDir(), "none.json")}
		}, 1, []string{"manifest template"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runTool(t, testEnv(staticCreds("")), tc.args(t)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr %s", r.code, tc.code, r.stderr)
			}
			for _, want := range tc.contains {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("message does not contain %q:\n%s", want, r.stderr)
				}
			}
			r.noFiles(t)
		})
	}
}

// Generated values must never land where git would track them.
func TestRefusesTrackedDestination(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed to tell tracked from ignored paths: %v", err)
	}
	dest := filepath.Join(deviceDir, "src")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-outputs", sampleOutputs, "-device-dir", deviceDir, "-out", dest}, &stdout, &stderr, testEnv(staticCreds("")))
	if code != 1 || !strings.Contains(stderr.String(), "git would track it") {
		t.Errorf("exit %d, stderr %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dest, "device_config.h")); err == nil {
		os.Remove(filepath.Join(dest, "device_config.h"))
		t.Errorf("wrote device_config.h into device/src")
	}
	if !tracked(filepath.Join(deviceDir, "src", "app_config.h")) || tracked(filepath.Join(deviceDir, "build", "config", "device_config.h")) {
		t.Errorf("tracked(): device/src must count as tracked, device/build/config as ignored")
	}
	// A new folder inside the sources is refused before it is created.
	fresh := filepath.Join(deviceDir, "src", "generated-by-test")
	code = run(context.Background(), []string{"-outputs", sampleOutputs, "-device-dir", deviceDir, "-out", fresh}, &stdout, &stderr, testEnv(staticCreds("")))
	if _, err := os.Stat(fresh); err == nil {
		os.RemoveAll(fresh)
		t.Errorf("created %s", fresh)
	}
	if code != 1 {
		t.Errorf("exit %d for a new folder in the sources", code)
	}
}

var (
	toolOnce sync.Once
	toolPath string
	toolErr  error
)

// buildTool builds the command once, for the tests that need its real exit status and a clean environment.
func buildTool(t *testing.T) string {
	t.Helper()
	toolOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deviceconfig-test-")
		if err != nil {
			toolErr = err
			return
		}
		toolPath = filepath.Join(dir, "deviceconfig")
		out, err := exec.Command("go", "build", "-o", toolPath, ".").CombinedOutput()
		if err != nil {
			toolErr = err
			t.Logf("%s", out)
		}
	})
	if toolErr != nil {
		t.Fatalf("build the command: %v", toolErr)
	}
	return toolPath
}

// isolatedAWSEnv is an environment in which no AWS credentials or configuration can be found.
func isolatedAWSEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	empty := filepath.Join(home, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + empty,
		"AWS_SHARED_CREDENTIALS_FILE=" + empty,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

func TestNoOutputsFileAndNoCredentials(t *testing.T) {
	cmd := exec.Command(buildTool(t), "-out", t.TempDir(), "-device-dir", deviceDir)
	cmd.Env = append(isolatedAWSEnv(t), "AWS_REGION="+sampleRegion)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v; stderr %s", err, stderr.String())
	}
	for _, want := range []string{"no stack outputs file and no AWS credentials", "aws configure", "aws sso login", "-outputs cdk-outputs.json"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("message does not contain %q:\n%s", want, stderr.String())
		}
	}
}

// make device-image without the SDK: a clear error and a non-zero exit, after the config was written.
func TestImageWithoutSDK(t *testing.T) {
	t.Run("AzureSphereDefaultSDKDir invalid", func(t *testing.T) {
		out := t.TempDir()
		notSDK := t.TempDir()
		cmd := exec.Command(buildTool(t), "-image", "-outputs", sampleOutputs, "-out", out, "-device-dir", deviceDir)
		cmd.Env = append(isolatedAWSEnv(t), "AWS_ACCESS_KEY_ID="+testAccessKey, "AWS_SECRET_ACCESS_KEY="+testSecretKey,
			"AzureSphereDefaultSDKDir="+notSDK)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		exit, ok := err.(*exec.ExitError)
		if !ok || exit.ExitCode() != 1 {
			t.Fatalf("want exit status 1, got %v; stderr %s", err, stderr.String())
		}
		for _, want := range []string{"AzureSphereDefaultSDKDir=" + notSDK + " is not an Azure Sphere SDK", "CMakeFiles/AzureSphereToolchain.cmake",
			"https://aka.ms/AzureSphereSDKDownload/Linux", "make device-image"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("message does not contain %q:\n%s", want, stderr.String())
			}
		}
		for _, name := range []string{"device_config.h", "app_manifest.json"} {
			if _, err := os.Stat(filepath.Join(out, name)); err != nil {
				t.Errorf("config not written before the SDK check: %v", err)
			}
		}
		// The sources are staged, with the generated manifest, before the SDK is looked for.
		generated, _ := os.ReadFile(filepath.Join(out, "app_manifest.json"))
		staged, err := os.ReadFile(filepath.Join(out, ImageSourceDir, "app_manifest.json"))
		if err != nil || !bytes.Equal(staged, generated) || !strings.Contains(stdout.String(), "staged the image sources") {
			t.Errorf("staged manifest %q, %v; want the generated one %q; stdout %s", staged, err, generated, stdout.String())
		}
		if _, err := os.Stat(filepath.Join(out, ImageSourceDir, "src", "main.c")); err != nil {
			t.Errorf("sources not staged: %v", err)
		}
	})
	t.Run("AzureSphereDefaultSDKDir unset and no SDK in the default folder", func(t *testing.T) {
		r := runTool(t, testEnv(staticCreds("")), "-image", "-outputs", sampleOutputs)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1; stderr %s", r.code, r.stderr)
		}
		for _, want := range []string{"Azure Sphere SDK is not installed", "AzureSphereDefaultSDKDir is not set", "https://aka.ms/AzureSphereSDKDownload/Linux",
			"export AzureSphereDefaultSDKDir=/opt/azurespheresdk"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("message does not contain %q:\n%s", want, r.stderr)
			}
		}
		r.file(t, "device_config.h")
		r.file(t, "app_manifest.json")
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func jsonCompact(dst *bytes.Buffer, src []byte) error { return json.Compact(dst, src) }

// A bucket name with dots is addressed path-style (its virtual host would not match S3's wildcard certificate),
// signed or not, and the manifest allows the host the URLs really use.
func TestDottedBucketIsPathStyle(t *testing.T) {
	none := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return aws.Credentials{}, errNoCreds })
	for name, creds := range map[string]aws.CredentialsProvider{"signed": staticCreds(""), "unsigned": none} {
		t.Run(name, func(t *testing.T) {
			r := runTool(t, testEnv(creds), "-outputs", writeOutputs(t, map[string]any{"DemoBucketName": "demo.bucket.example"}), "-key", goldenKey)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			u, err := url.Parse(headerValue(t, r.file(t, "device_config.h"), "S3_FLEET_GET_URL"))
			if err != nil {
				t.Fatal(err)
			}
			if u.Host != "s3."+sampleRegion+".amazonaws.com" || u.Path != "/demo.bucket.example/"+goldenKey {
				t.Errorf("GET URL host %s path %s", u.Host, u.Path)
			}
			if !strings.Contains(r.file(t, "app_manifest.json"), `"s3.`+sampleRegion+`.amazonaws.com"`) {
				t.Errorf("manifest does not allow the path-style host")
			}
		})
	}
}
