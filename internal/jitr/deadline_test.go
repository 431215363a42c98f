package jitr_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// deadlineSetup is a fake registry with n pending certificates of n devices, a handler paced to 2 calls a second
// of DescribeCertificate and UpdateCertificate (one of 2 shares), and the batch of their registered events.
func deadlineSetup(t *testing.T, n int, opts ...jitr.Option) (*fakeRegistry, *jitr.Handler, *bytes.Buffer, events.SQSEvent, []unitCert) {
	t.Helper()
	ca, err := testpki.NewCA(testpki.CAOptions{NotBefore: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	r := newFakeRegistry()
	var (
		mu    sync.Mutex
		batch events.SQSEvent
		certs []unitCert
	)
	for i := range n {
		c := newUnitCert(t, func() (*testpki.Pair, error) {
			return ca.IssueDevice(testpki.RandomDeviceID(), time.Now().Add(-time.Hour))
		})
		r.certs[c.id] = &fakeCert{pem: c.pem, status: types.CertificateStatusPendingActivation}
		body, _ := json.Marshal(jitr.Event{CertificateID: c.id, CACertificateID: unitCAID, Timestamp: 1,
			CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: "123456789012"})
		batch.Records = append(batch.Records, events.SQSMessage{MessageId: fmt.Sprint("m", i), Body: string(body)})
		certs = append(certs, c)
	}
	// HandleRegistrations handles its records concurrently: the fake serializes them.
	api := fakeIoT(func(ctx context.Context, op string, in any) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		return r.call(ctx, op, in)
	})
	metrics := &bytes.Buffer{}
	h := jitr.NewHandler(api, jitr.Config{CAs: map[string]*x509.Certificate{unitCAID: ca.Cert}, PolicyName: "p", ProvisionedBy: "s",
		ClockSkew: azsphere.DefaultClockSkew, RateLimits: iotapi.RateLimits{"DescribeCertificate": 2, "UpdateCertificate": 2}, RateShares: 2,
		RegistrationQueueURL: "https://sqs.example/123456789012/registration"},
		append([]jitr.Option{jitr.WithLogger(slog.New(slog.DiscardHandler)), jitr.WithMetricsOutput(metrics)}, opts...)...)
	return r, h, metrics, batch, certs
}

// metricSum sums a metric over the EMF lines.
func metricSum(t *testing.T, lines, name string) float64 {
	t.Helper()
	sum := 0.0
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		var m map[string]any
		if l == "" || json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		v, _ := m[name].(float64)
		sum += v
	}
	return sum
}

// TestBatchTakesWhatItCanFinishBeforeTheDeadline: with 3.5 s left beyond the margins (deadlineMargin 0.5 s,
// batchReserve 3 s) at 2 activations a second sized to half its pacing, a batch of 6 starts 3 (3.5 × 2 × 0.5 =
// 3.5, of which 0.5 s may pass before the sizing) and hands the other 3 back unstarted, as batch item failures:
// none is cut in the middle and the invocation does not run into its deadline.
func TestBatchTakesWhatItCanFinishBeforeTheDeadline(t *testing.T) {
	r, h, metrics, batch, certs := deadlineSetup(t, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	resp, err := h.HandleRegistrations(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	if len(failed) != 3 {
		t.Errorf("%d records handed back (%v), want 3", len(failed), resp.BatchItemFailures)
	}
	for i, c := range certs {
		want := types.CertificateStatusActive
		if failed[batch.Records[i].MessageId] {
			want = types.CertificateStatusPendingActivation
		}
		if got := r.certs[c.id].status; got != want {
			t.Errorf("record %d: certificate %s, want %s (handed back: %v)", i, got, want, failed[batch.Records[i].MessageId])
		}
	}
	if r.count["DescribeCertificate"] != 3 {
		t.Errorf("%d DescribeCertificate calls, want 3: a record handed back costs none", r.count["DescribeCertificate"])
	}
	if got := metricSum(t, metrics.String(), contract.MetricHandedBack); got != 3 {
		t.Errorf("%s = %v, want 3", contract.MetricHandedBack, got)
	}
	if got := metricSum(t, metrics.String(), contract.MetricDeadlineCut); got != 0 {
		t.Errorf("%s = %v, want 0", contract.MetricDeadlineCut, got)
	}
}

// TestBatchThatRunsIntoItsDeadlineIsCounted: a record whose paced call finds no slot before the deadline is left
// for a retry, and the invocation counts once as cut by the deadline.
func TestBatchThatRunsIntoItsDeadlineIsCounted(t *testing.T) {
	r, h, metrics, batch, _ := deadlineSetup(t, 2)
	r.failures["UpdateCertificate"] = fmt.Errorf("wait for the UpdateCertificate rate limit: %w", iotapi.ErrNoTimeLeft)
	resp, err := h.HandleRegistrations(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 2 {
		t.Errorf("%d records left for a retry, want 2", len(resp.BatchItemFailures))
	}
	if got := metricSum(t, metrics.String(), contract.MetricDeadlineCut); got != 1 {
		t.Errorf("%s = %v, want 1 (one invocation)", contract.MetricDeadlineCut, got)
	}
}
