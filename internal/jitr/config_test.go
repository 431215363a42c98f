package jitr_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

func TestConfigFromEnv(t *testing.T) {
	ca1, err := testpki.NewCA(testpki.CAOptions{CommonName: "current tenant CA"})
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := testpki.NewCA(testpki.CAOptions{CommonName: "next tenant CA"})
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	pems := string(ca1.CertPEM()) + string(ca2.CertPEM())
	valid := map[string]string{
		contract.EnvCACertificateIDs:     id1 + ", " + id2,
		contract.EnvCACertificatesPEM:    pems,
		contract.EnvDevicePolicyName:     "policy",
		contract.EnvProvisionedBy:        "Stack",
		contract.EnvDenyListTable:        "deny-list",
		contract.EnvLedgerTable:          "ledger",
		contract.EnvRegistrationQueueURL: "https://sqs.us-east-1.amazonaws.com/123456789012/registrations",
		contract.EnvRetirementQueueURL:   "https://sqs.us-east-1.amazonaws.com/123456789012/retirements",
		contract.EnvIoTRateLimits:        `{"DescribeCertificate":5,"UpdateCertificate":5}`,
	}
	with := func(k, v string) map[string]string {
		env := map[string]string{}
		for key, val := range valid {
			env[key] = val
		}
		env[k] = v
		return env
	}

	t.Run("two CAs paired in order", func(t *testing.T) {
		cfg, err := jitr.ConfigFromEnv(func(k string) string { return valid[k] })
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.CAs) != 2 || cfg.CAs[id1].Subject.CommonName != "current tenant CA" || cfg.CAs[id2].Subject.CommonName != "next tenant CA" {
			t.Errorf("CAs = %v, want both, paired in order", cfg.CAs)
		}
		if cfg.PolicyName != "policy" || cfg.ProvisionedBy != "Stack" || cfg.MetricsNamespace != contract.MetricsNamespace {
			t.Errorf("config = %+v", cfg)
		}
		if cfg.DenyListTable != "deny-list" {
			t.Errorf("DenyListTable = %q, want deny-list", cfg.DenyListTable)
		}
		if cfg.ClockSkew != 5*time.Minute {
			t.Errorf("clock skew tolerance = %v without %s, want the 5m default", cfg.ClockSkew, contract.EnvClockSkewTolerance)
		}
		if cfg.RateShares != 1 {
			t.Errorf("RateShares = %v without %s, want 1 (never more than the share)", cfg.RateShares, contract.EnvIoTRateShares)
		}
	})

	t.Run("rate shares set", func(t *testing.T) {
		cfg, err := jitr.ConfigFromEnv(func(k string) string { return with(contract.EnvIoTRateShares, "2")[k] })
		if err != nil || cfg.RateShares != 2 {
			t.Fatalf("RateShares = %v, %v; want 2", cfg.RateShares, err)
		}
	})

	t.Run("clock skew tolerance set", func(t *testing.T) {
		cfg, err := jitr.ConfigFromEnv(func(k string) string { return with(contract.EnvClockSkewTolerance, "90s")[k] })
		if err != nil || cfg.ClockSkew != 90*time.Second {
			t.Fatalf("ClockSkew = %v, %v; want 90s", cfg.ClockSkew, err)
		}
	})

	for _, tc := range []struct {
		name, wantInErr string
		env             map[string]string
	}{
		{"no environment at all", contract.EnvCACertificateIDs + " is empty", map[string]string{}},
		{"ids missing", contract.EnvCACertificateIDs + " is empty", with(contract.EnvCACertificateIDs, " , ")},
		{"PEM missing", "no PEM certificate", with(contract.EnvCACertificatesPEM, "")},
		{"PEM with a key block", "not CERTIFICATE", with(contract.EnvCACertificatesPEM, pems+string(ca1.KeyPEM()))},
		{"PEM with trailing text", "not a PEM certificate", with(contract.EnvCACertificatesPEM, pems+"garbage")},
		{"PEM block that is not X.509", "certificate 1", with(contract.EnvCACertificatesPEM, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")},
		{"more ids than certificates", "2 ids but", with(contract.EnvCACertificatesPEM, string(ca1.CertPEM()))},
		{"id not hexadecimal", "not a 64-character", with(contract.EnvCACertificateIDs, id1+",nothex")},
		{"id listed twice", "listed twice", with(contract.EnvCACertificateIDs, id1+","+id1)},
		{"policy missing", contract.EnvDevicePolicyName + " is empty", with(contract.EnvDevicePolicyName, " ")},
		{"stack name missing", contract.EnvProvisionedBy + " is empty", with(contract.EnvProvisionedBy, "")},
		{"deny-list table missing", contract.EnvDenyListTable + " is empty", with(contract.EnvDenyListTable, "")},
		{"ledger table missing", contract.EnvLedgerTable + " is empty", with(contract.EnvLedgerTable, "")},
		{"retirement queue missing", contract.EnvRetirementQueueURL + " is empty", with(contract.EnvRetirementQueueURL, "")},
		{"rate limits not JSON", contract.EnvIoTRateLimits, with(contract.EnvIoTRateLimits, "DescribeCertificate=5")},
		{"rate limit not positive", "want a positive number", with(contract.EnvIoTRateLimits, `{"UpdateCertificate":0}`)},
		{"clock skew not a duration", contract.EnvClockSkewTolerance, with(contract.EnvClockSkewTolerance, "5 minutes")},
		{"clock skew negative", contract.EnvClockSkewTolerance, with(contract.EnvClockSkewTolerance, "-1m")},
		{"rate shares not a number", contract.EnvIoTRateShares, with(contract.EnvIoTRateShares, "two")},
		{"rate shares below one", contract.EnvIoTRateShares, with(contract.EnvIoTRateShares, "0")},
		{"clock skew beyond an hour", contract.EnvClockSkewTolerance, with(contract.EnvClockSkewTolerance, "2h")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jitr.ConfigFromEnv(func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("ConfigFromEnv error = %v, want one containing %q", err, tc.wantInErr)
			}
			if !strings.Contains(err.Error(), "redeploy") {
				t.Errorf("error %q does not say how to fix it", err)
			}
		})
	}
}

func TestEventJSON(t *testing.T) {
	id := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name, payload     string
		wantTS, wantRegTS jitr.EpochMillis
		wantErr           bool
	}{
		{"numbers", `{"timestamp":1541544880127,"certificateRegistrationTimestamp":1541544880000}`, 1541544880127, 1541544880000, false},
		{"registration timestamp null (as AWS sends it)", `{"timestamp":1541544880127,"certificateRegistrationTimestamp":null}`, 1541544880127, 0, false},
		{"quoted numbers", `{"timestamp":"1541544880127","certificateRegistrationTimestamp":"1541544880000"}`, 1541544880127, 1541544880000, false},
		{"empty string", `{"timestamp":""}`, 0, 0, false},
		{"not a number", `{"timestamp":"yesterday"}`, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e jitr.Event
			err := json.Unmarshal([]byte(tc.payload), &e)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Unmarshal error = %v, want error %v", err, tc.wantErr)
			}
			if e.Timestamp != tc.wantTS || e.CertificateRegistrationTimestamp != tc.wantRegTS {
				t.Errorf("timestamps = %d, %d; want %d, %d", e.Timestamp, e.CertificateRegistrationTimestamp, tc.wantTS, tc.wantRegTS)
			}
		})
	}

	t.Run("the AWS payload decodes with the documented keys and validates", func(t *testing.T) {
		payload := `{"certificateId":"` + id + `","caCertificateId":"` + strings.Repeat("b", 64) + `","timestamp":1487027939917,` +
			`"certificateStatus":"PENDING_ACTIVATION","awsAccountId":"123456789012","certificateRegistrationTimestamp":null}`
		var e jitr.Event
		if err := json.Unmarshal([]byte(payload), &e); err != nil {
			t.Fatal(err)
		}
		if e.CertificateID != id || e.CertificateStatus != "PENDING_ACTIVATION" || e.AWSAccountID != "123456789012" {
			t.Errorf("decoded %+v", e)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), `"timestamp":1487027939917`) {
			t.Errorf("timestamp does not encode as a number: %s", out)
		}
	})

	t.Run("validation names every problem", func(t *testing.T) {
		err := jitr.Event{CertificateID: "ABC", CACertificateID: strings.ToUpper(id), AWSAccountID: "12345"}.Validate()
		if err == nil {
			t.Fatal("Validate accepted an empty event")
		}
		for _, want := range []string{"certificateId", "caCertificateId", "timestamp", "certificateStatus", "awsAccountId"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %s", err, want)
			}
		}
	})
}
