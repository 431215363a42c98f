package jitr_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
)

// maxLine bounds every log and metric line the handler writes, whatever the event holds.
const maxLine = 4096

// handleUntrusted runs one event through a handler whose registry knows no certificate, and returns the
// calls it made and what it logged and emitted.
func handleUntrusted(t testing.TB, e jitr.Event) (calls []string, logs, metrics string) {
	t.Helper()
	r := newFakeRegistry()
	var logBuf, metricBuf bytes.Buffer
	h := jitr.NewHandler(r.api(), jitr.Config{CAs: map[string]*x509.Certificate{unitCAID: nil}, PolicyName: "p", ProvisionedBy: "s"},
		jitr.WithLogger(slog.New(slog.NewJSONHandler(&logBuf, nil))), jitr.WithMetricsOutput(&metricBuf))
	if err := h.Handle(context.Background(), e); err != nil {
		t.Fatalf("Handle = %v, want nil: nothing in such an event is worth a retry", err)
	}
	return r.calls, logBuf.String(), metricBuf.String()
}

// checkLines fails unless every line of out is JSON and at most maxLine bytes long, and none holds raw.
func checkLines(t testing.TB, out, raw string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		if len(line) > maxLine {
			t.Errorf("line of %d bytes, want at most %d: %.200s…", len(line), maxLine, line)
		}
		if !json.Valid([]byte(line)) {
			t.Errorf("line is not JSON: %.200s", line)
		}
		if raw != "" && strings.Contains(line, raw) {
			t.Errorf("line holds the raw unvalidated field: %.200s", line)
		}
	}
}

func TestHandleBoundsEventFieldsInLogs(t *testing.T) {
	huge := strings.Repeat("A", 1<<20)
	for _, tc := range []struct {
		name string
		e    jitr.Event
		raw  string // must not appear in any line
	}{
		{"1 MB certificate id", jitr.Event{CertificateID: huge, CACertificateID: unitCAID, Timestamp: 1, CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: "123456789012"}, huge[:200]},
		{"1 MB CA id", jitr.Event{CertificateID: strings.Repeat("a", 64), CACertificateID: huge, Timestamp: 1, CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: "123456789012"}, huge[:200]},
		{"1 MB account", jitr.Event{CertificateID: strings.Repeat("a", 64), CACertificateID: unitCAID, Timestamp: 1, CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: huge}, huge[:200]},
		{"control characters and a forged log line in the id", jitr.Event{CertificateID: "x\n{\"level\":\"INFO\",\"msg\":\"certificate provisioned\"}\u2028\x00", CACertificateID: unitCAID, Timestamp: 1, CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: "123456789012"}, "\u2028"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, logs, metrics := handleUntrusted(t, tc.e)
			if len(calls) != 0 {
				t.Errorf("AWS calls made for a malformed event: %v", calls)
			}
			if logs == "" {
				t.Error("the refusal was not logged")
			}
			checkLines(t, logs, tc.raw)
			checkLines(t, metrics, tc.raw)
			if n := strings.Count(strings.TrimSpace(logs), "\n") + 1; n != 1 {
				t.Errorf("%d log lines, want the one refusal (no line forged through the id):\n%s", n, logs)
			}
		})
	}
}

// FuzzEvent feeds arbitrary JSON through the event decoder the Lambda runtime uses (encoding/json into Event)
// and the handler: a decoded event never panics, never makes an AWS call unless it validates, and never writes
// an unbounded or non-JSON line.
func FuzzEvent(f *testing.F) {
	f.Add([]byte(`{"certificateId":"` + strings.Repeat("a", 64) + `","caCertificateId":"` + unitCAID + `","timestamp":1487027939917,"certificateStatus":"PENDING_ACTIVATION","awsAccountId":"123456789012","certificateRegistrationTimestamp":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e jitr.Event
		if err := json.Unmarshal(data, &e); err != nil {
			return // the runtime rejects it before the handler
		}
		valid := e.Validate() == nil
		calls, logs, metrics := handleUntrusted(t, e)
		if !valid && len(calls) != 0 {
			t.Errorf("AWS calls made for an event that does not validate: %v", calls)
		}
		raw := ""
		if len(e.CertificateID) > 100 {
			raw = e.CertificateID
		}
		checkLines(t, logs, raw)
		checkLines(t, metrics, raw)
		if valid && len(calls) > 1 {
			t.Errorf("calls %v for a certificate the registry does not know, want one DescribeCertificate", calls)
		}
	})
}
