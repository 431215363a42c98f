package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

const tenant = "01234567-89ab-cdef-0123-456789abcdef"

// files generates the certificates the cases refer to, at test time.
type files struct {
	caDER, caPEM, verification       string
	ca2PEM, verification2            string
	notCA, expiredCA, garbage, empty string
	foreignVerification, missing     string
}

func writeFixtures(t *testing.T) files {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := testpki.NewCA(testpki.CAOptions{CommonName: "Next Tenant CA"})
	if err != nil {
		t.Fatal(err)
	}
	notCA, err := testpki.NewCA(testpki.CAOptions{NotCA: true})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := testpki.NewCA(testpki.CAOptions{NotBefore: time.Now().Add(-3 * 365 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	must := func(p *testpki.Pair, err error) *testpki.Pair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return files{
		caDER:               write("tenant-ca.cer", ca.Cert.Raw),
		caPEM:               write("tenant-ca.pem", ca.CertPEM()),
		verification:        write("verification.cer", must(ca.IssueVerification("regcode")).Cert.Raw),
		ca2PEM:              write("next-ca.pem", ca2.CertPEM()),
		verification2:       write("next-verification.pem", must(ca2.IssueVerification("regcode")).CertPEM()),
		notCA:               write("leaf.pem", notCA.CertPEM()),
		expiredCA:           write("expired.pem", expired.CertPEM()),
		garbage:             write("garbage.cer", []byte("this is not a certificate\n")),
		empty:               write("empty.cer", nil),
		foreignVerification: write("foreign-verification.pem", must(ca2.IssueVerification("regcode")).CertPEM()),
		missing:             filepath.Join(dir, "does-not-exist.cer"),
	}
}

func TestLoadAccepts(t *testing.T) {
	f := writeFixtures(t)
	tests := []struct {
		name    string
		ctx     map[string]any
		cas     int
		mode    string
		retain  bool
		withVer bool
	}{
		{"DER CA with DER proof", map[string]any{"tenantCaCerts": f.caDER, "verificationCerts": f.verification, "tenantId": tenant}, 1, ModeDefault, false, true},
		{"PEM CA", map[string]any{"tenantCaCerts": f.caPEM, "verificationCerts": f.verification, "tenantId": tenant}, 1, ModeDefault, false, true},
		{"two CAs", map[string]any{"tenantCaCerts": f.caDER + " , " + f.ca2PEM, "verificationCerts": f.verification + "," + f.verification2, "tenantId": tenant}, 2, ModeDefault, false, true},
		{"SNI_ONLY without proof", map[string]any{"tenantCaCerts": f.caDER, "certificateMode": "sni_only", "tenantId": tenant}, 1, ModeSNIOnly, false, false},
		{"retain as string", map[string]any{"tenantCaCerts": f.caDER, "verificationCerts": f.verification, "tenantId": tenant, "retainRegistry": "true"}, 1, ModeDefault, true, true},
		{"retain as JSON bool", map[string]any{"tenantCaCerts": []any{f.caDER}, "verificationCerts": []any{f.verification}, "tenantId": strings.ToUpper(tenant), "retainRegistry": true}, 1, ModeDefault, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(func(k string) any { return tt.ctx[k] }, time.Now())
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(cfg.TenantCAs) != tt.cas || cfg.CertificateMode != tt.mode || cfg.RetainRegistry != tt.retain || cfg.TenantID != tenant {
				t.Errorf("got %d CAs, mode %s, retain %v, tenant %s; want %d, %s, %v, %s", len(cfg.TenantCAs), cfg.CertificateMode, cfg.RetainRegistry, cfg.TenantID, tt.cas, tt.mode, tt.retain, tenant)
			}
			for i, ca := range cfg.TenantCAs {
				if (ca.Verification != nil) != tt.withVer {
					t.Errorf("CA %d: verification present = %v, want %v", i, ca.Verification != nil, tt.withVer)
				}
			}
		})
	}
}

func TestPresignDefaultsAndOverrides(t *testing.T) {
	f := writeFixtures(t)
	base := map[string]any{"tenantCaCerts": f.caDER, "verificationCerts": f.verification, "tenantId": tenant}
	cfg, err := Load(func(k string) any { return base[k] }, time.Now())
	if err != nil || cfg.PresignMaxPutBytes != 1<<20 || cfg.PresignURLExpiry != 15*time.Minute {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	base["presignMaxPutBytes"], base["presignUrlExpiry"] = "4096", "5m"
	cfg, err = Load(func(k string) any { return base[k] }, time.Now())
	if err != nil || cfg.PresignMaxPutBytes != 4096 || cfg.PresignURLExpiry != 5*time.Minute {
		t.Fatalf("overrides: %+v %v", cfg, err)
	}
}

func TestStormDefaultsAndOverrides(t *testing.T) {
	f := writeFixtures(t)
	base := map[string]any{"tenantCaCerts": f.caDER, "verificationCerts": f.verification, "tenantId": tenant}
	cfg, err := Load(func(k string) any { return base[k] }, time.Now())
	if err != nil || cfg.JitrConcurrency != 2 || cfg.JitrBatchSize != 50 || cfg.JitrBatchWindow != time.Second ||
		cfg.IoTQuotas["DescribeCertificate"] != 10 || cfg.IoTQuotas["AttachPolicy"] != 15 {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	base["jitrMaxConcurrency"], base["jitrBatchSize"], base["jitrBatchWindow"] = "8", "10", "0s"
	base["iotQuotas"] = map[string]any{"DescribeCertificate": 40.0, "UpdateCertificate": 40.0} // cdk.json holds an object
	cfg, err = Load(func(k string) any { return base[k] }, time.Now())
	if err != nil || cfg.JitrConcurrency != 8 || cfg.JitrBatchSize != 10 || cfg.JitrBatchWindow != 0 ||
		cfg.IoTQuotas["DescribeCertificate"] != 40 || cfg.IoTQuotas["DeleteCertificate"] != 10 {
		t.Fatalf("overrides: %+v %v", cfg, err)
	}
	if DefaultIoTQuotas["DescribeCertificate"] != 10 {
		t.Fatal("an override changed the defaults")
	}
}

func TestAlarmEmail(t *testing.T) {
	f := writeFixtures(t)
	for _, tc := range []struct{ given, want string }{{"", ""}, {" ops@example.com ", "ops@example.com"}} {
		cfg, err := Load(func(k string) any {
			return map[string]any{"tenantCaCerts": f.caDER, "verificationCerts": f.verification, "tenantId": tenant, "alarmEmail": tc.given}[k]
		}, time.Now())
		if err != nil || cfg.AlarmEmail != tc.want {
			t.Errorf("alarmEmail %q: got %q, %v; want %q", tc.given, cfg.AlarmEmail, err, tc.want)
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	f := writeFixtures(t)
	good := func(over map[string]any) map[string]any {
		m := map[string]any{"tenantCaCerts": f.caDER, "verificationCerts": f.verification, "tenantId": tenant}
		for k, v := range over {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name    string
		ctx     map[string]any
		key     string
		problem string
		fix     string
	}{
		{"CA missing", good(map[string]any{"tenantCaCerts": nil}), KeyTenantCACerts, "is not set", "make tenant-ca"},
		{"CA file unreadable", good(map[string]any{"tenantCaCerts": f.missing}), KeyTenantCACerts, "cannot read", "make tenant-ca"},
		{"CA not a certificate", good(map[string]any{"tenantCaCerts": f.garbage}), KeyTenantCACerts, "not a certificate", "make tenant-ca"},
		{"CA file empty", good(map[string]any{"tenantCaCerts": f.empty}), KeyTenantCACerts, "not a certificate", "make tenant-ca"},
		{"CA not a CA", good(map[string]any{"tenantCaCerts": f.notCA}), KeyTenantCACerts, "not a CA", "make tenant-ca"},
		{"CA expired", good(map[string]any{"tenantCaCerts": f.expiredCA}), KeyTenantCACerts, "expired", "make tenant-ca"},
		{"three CAs", good(map[string]any{"tenantCaCerts": f.caDER + "," + f.ca2PEM + "," + f.caPEM}), KeyTenantCACerts, "at most 2", "-c tenantCaCerts=<current.cer>,<next.cer>"},
		{"same CA twice", good(map[string]any{"tenantCaCerts": f.caDER + "," + f.caPEM, "verificationCerts": f.verification + "," + f.verification}), KeyTenantCACerts, "same certificate", "name each tenant CA once"},
		{"proof missing in DEFAULT", good(map[string]any{"verificationCerts": nil}), KeyVerificationCerts, "required in DEFAULT", "certificateMode=SNI_ONLY"},
		{"proof count differs", good(map[string]any{"verificationCerts": f.verification + "," + f.verification2}), KeyVerificationCerts, "2 certificates for 1 tenant CAs", "make tenant-ca"},
		{"proof of another CA", good(map[string]any{"verificationCerts": f.foreignVerification}), KeyVerificationCerts, "not signed by the tenant CA", "make tenant-ca"},
		{"proof unreadable", good(map[string]any{"verificationCerts": f.missing}), KeyVerificationCerts, "cannot read", "make tenant-ca"},
		{"proof given in SNI_ONLY", good(map[string]any{"certificateMode": "SNI_ONLY"}), KeyVerificationCerts, "SNI_ONLY", "drop -c verificationCerts"},
		{"unknown mode", good(map[string]any{"certificateMode": "STRICT"}), KeyCertificateMode, `"STRICT" is not a certificate mode`, "-c certificateMode=SNI_ONLY"},
		{"tenant missing", good(map[string]any{"tenantId": nil}), KeyTenantID, "is not set", "az sphere catalog show"},
		{"tenant not a GUID", good(map[string]any{"tenantId": "my-tenant"}), KeyTenantID, "not a GUID", "az sphere catalog show"},
		{"retain not a bool", good(map[string]any{"retainRegistry": "yes"}), KeyRetainRegistry, "not true or false", "-c retainRegistry=true"},
		{"retain as number", good(map[string]any{"retainRegistry": 1.0}), KeyRetainRegistry, "not true or false", "-c retainRegistry=true"},
		// The old name fails whatever its value, naming the new key and the lock-out it hid.
		{"retainDevices renamed", good(map[string]any{"retainDevices": "true"}), KeyRetainDevices, "was renamed retainRegistry, because it never kept the devices working", "-c retainRegistry=true"},
		{"retainDevices=false renamed", good(map[string]any{"retainDevices": false}), KeyRetainDevices, "the whole fleet within a day", "drop -c retainDevices"},
		{"PUT cap zero", good(map[string]any{"presignMaxPutBytes": "0"}), KeyPresignMaxPut, "not a byte count from 1", "-c presignMaxPutBytes="},
		{"PUT cap over 5 GiB", good(map[string]any{"presignMaxPutBytes": "5368709121"}), KeyPresignMaxPut, "not a byte count from 1", "-c presignMaxPutBytes="},
		{"PUT cap not a number", good(map[string]any{"presignMaxPutBytes": "1MB"}), KeyPresignMaxPut, "not a byte count", "-c presignMaxPutBytes="},
		{"expiry too short", good(map[string]any{"presignUrlExpiry": "30s"}), KeyPresignURLExpiry, "from 1m0s to 1h0m0s", "-c presignUrlExpiry=15m"},
		{"expiry too long", good(map[string]any{"presignUrlExpiry": "2h"}), KeyPresignURLExpiry, "from 1m0s to 1h0m0s", "-c presignUrlExpiry=15m"},
		{"expiry not a duration", good(map[string]any{"presignUrlExpiry": "15"}), KeyPresignURLExpiry, "not a duration", "-c presignUrlExpiry=15m"},
		{"concurrency below AWS's minimum", good(map[string]any{"jitrMaxConcurrency": "1"}), KeyJitrConcurrency, "from 2 to 1000", "-c jitrMaxConcurrency=2"},
		{"batch size not a number", good(map[string]any{"jitrBatchSize": "ten"}), KeyJitrBatchSize, "from 1 to 100", "-c jitrBatchSize=50"},
		{"batch over 10 without a window", good(map[string]any{"jitrBatchSize": "20", "jitrBatchWindow": "0s"}), KeyJitrBatchSize, "need a batching window", "-c jitrBatchWindow=1s"},
		{"window too long", good(map[string]any{"jitrBatchWindow": "10m"}), KeyJitrBatchWindow, "from 0s to 5m", "-c jitrBatchWindow=1s"},
		{"quota of an API the function does not call", good(map[string]any{"iotQuotas": `{"DescribeThing":50}`}), KeyIoTQuotas, "DescribeThing", "-c iotQuotas="},
		{"quota not positive", good(map[string]any{"iotQuotas": `{"UpdateCertificate":0}`}), KeyIoTQuotas, "not a positive rate", "-c iotQuotas="},
		{"quotas not JSON", good(map[string]any{"iotQuotas": "UpdateCertificate=50"}), KeyIoTQuotas, "not a JSON object", "-c iotQuotas="},
		{"alarm e-mail without @", good(map[string]any{"alarmEmail": "ops.example.com"}), KeyAlarmEmail, "not an e-mail address", "-c alarmEmail=ops@example.com"},
		{"alarm e-mail with a space", good(map[string]any{"alarmEmail": "ops team@example.com"}), KeyAlarmEmail, "not an e-mail address", "-c alarmEmail="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(func(k string) any { return tt.ctx[k] }, time.Now())
			if err == nil {
				t.Fatalf("Load accepted %v: %+v", tt.ctx, cfg)
			}
			msg := err.Error()
			for _, want := range []string{`context "` + tt.key + `"`, tt.problem, "Fix: ", tt.fix} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	_, err := Load(func(string) any { return nil }, time.Now())
	if err == nil {
		t.Fatal("empty context accepted")
	}
	for _, key := range []string{KeyTenantCACerts, KeyVerificationCerts, KeyTenantID} {
		if !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Errorf("error does not mention %s: %v", key, err)
		}
	}
}
