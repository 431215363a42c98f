package jitr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// withQueues creates the registration and retirement queues in moto and returns an SQS client of them and the
// fixture's configuration naming them.
func (f *fixture) withQueues(t *testing.T) (*sqs.Client, jitr.Config) {
	t.Helper()
	queues := sqs.New(sqs.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: adminCredentials})
	cfg := f.cfg
	for name, q := range map[string]*string{"registrations": &cfg.RegistrationQueueURL, "retirements": &cfg.RetirementQueueURL} {
		out, err := queues.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))})
		if err != nil {
			t.Fatal(err)
		}
		*q = aws.ToString(out.QueueUrl)
	}
	return queues, cfg
}

// receive sends bodies to the queue and receives them, as the event source mapping does: the returned batch's
// messages are in flight.
func receive(t *testing.T, queues *sqs.Client, url string, bodies []string) events.SQSEvent {
	t.Helper()
	ctx := context.Background()
	for _, b := range bodies {
		if _, err := queues.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	var batch events.SQSEvent
	for tries := 0; len(batch.Records) < len(bodies) && tries < 20; tries++ {
		out, err := queues.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			batch.Records = append(batch.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
				Body: aws.ToString(m.Body), Attributes: m.Attributes})
		}
	}
	if len(batch.Records) != len(bodies) {
		t.Fatalf("received %d of %d messages", len(batch.Records), len(bodies))
	}
	return batch
}

// discardRetirements is a retirement queue that drops every request: the fixture's devices keep both certificates.
type discardRetirements struct{}

func (discardRetirements) QueueRetirement(context.Context, contract.RetirementRequest) error {
	return nil
}

// arrivingStorm is the JITR function's IoT client with registered events arriving right after the first
// certificate a retirement deactivates: it counts the DescribeCertificate and UpdateCertificate calls that began
// after that and were answered.
type arrivingStorm struct {
	jitr.IoTAPI
	arrive func()
	once   sync.Once
	mu     sync.Mutex
	late   bool
	after  map[string]int
}

func (s *arrivingStorm) arrived() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.late
}

func (s *arrivingStorm) count(op string, late bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if late && err == nil {
		s.after[op]++
	}
}

func (s *arrivingStorm) DescribeCertificate(ctx context.Context, in *iot.DescribeCertificateInput, opts ...func(*iot.Options)) (*iot.DescribeCertificateOutput, error) {
	late := s.arrived()
	out, err := s.IoTAPI.DescribeCertificate(ctx, in, opts...)
	s.count("DescribeCertificate", late, err)
	return out, err
}

func (s *arrivingStorm) UpdateCertificate(ctx context.Context, in *iot.UpdateCertificateInput, opts ...func(*iot.Options)) (*iot.UpdateCertificateOutput, error) {
	late := s.arrived()
	out, err := s.IoTAPI.UpdateCertificate(ctx, in, opts...)
	s.count("UpdateCertificate", late, err)
	if err == nil && in.NewStatus == types.CertificateStatusInactive {
		s.once.Do(func() {
			s.arrive()
			s.mu.Lock()
			s.late = true
			s.mu.Unlock()
		})
	}
	return out, err
}

// TestRetirementGivesWayToArrivingRegistrationsInMoto: the JITR function's own paced SDK client (the role's
// grants under IAM), its retirement batch of 5 devices drawn from a real queue, and a registered event sent to the
// registration queue right after the first deactivation. The deactivated certificate is finished; no
// DescribeCertificate or UpdateCertificate call begun after the event arrived is sent; every other device keeps
// both certificates, untouched, and its retirement is handed back.
func TestRetirementGivesWayToArrivingRegistrationsInMoto(t *testing.T) {
	f := newFixture(t, testRetryPolicy)
	queues, cfg := f.withQueues(t)
	ctx := context.Background()
	activate := jitr.NewHandler(newIoTClient(nil, testRetryPolicy, f.principal.Credentials()), f.cfg,
		jitr.WithRetirementQueue(discardRetirements{}), jitr.WithLogger(slog.New(slog.DiscardHandler)), jitr.WithMetricsOutput(f.metrics))
	const n = 5
	var (
		devs, olds, curs []string
		bodies           []string
	)
	for range n {
		dev := testpki.RandomDeviceID()
		old := f.device(t, dev, time.Now().Add(-3*time.Hour))
		f.handle(t, old)
		notBefore := time.Now().Add(-time.Hour).Truncate(time.Second)
		cur := f.device(t, dev, notBefore)
		if err := activate.Handle(ctx, f.event(cur)); err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(contract.RetirementRequest{Thing: thingOf(dev), CertificateID: cur, CertificateARN: certARNOf(t, f, cur), NotBefore: notBefore.Unix()})
		devs, olds, curs, bodies = append(devs, dev), append(olds, old), append(curs, cur), append(bodies, string(body))
	}
	batch := receive(t, queues, cfg.RetirementQueueURL, bodies)

	client := iot.New(iot.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: f.principal.Credentials(),
		Retryer:    iotapi.NewRetryer(testRetryPolicy),
		APIOptions: []func(*middleware.Stack) error{iotapi.WithRateLimits(iotapi.RateLimits{"DescribeCertificate": 10, "UpdateCertificate": 10})}})
	storm := &arrivingStorm{IoTAPI: client, after: map[string]int{}, arrive: func() {
		if _, err := queues.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(cfg.RegistrationQueueURL), MessageBody: aws.String("{}")}); err != nil {
			t.Error(err)
		}
	}}
	h := jitr.NewHandler(storm, cfg, jitr.WithQueues(queues), jitr.WithLogger(slog.New(slog.NewJSONHandler(f.logs, nil))), jitr.WithMetricsOutput(f.metrics))
	jitr.SetDepthTTL(h, 0)
	resp, err := h.HandleRetirements(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if !storm.arrived() {
		t.Fatalf("no certificate was deactivated: the registered event never arrived (logs %s)", f.logs)
	}
	if storm.after["DescribeCertificate"] != 0 || storm.after["UpdateCertificate"] != 0 {
		t.Errorf("after the registered event arrived, retirement sent %v; want no DescribeCertificate nor UpdateCertificate", storm.after)
	}
	retired := 0
	for i := range n {
		oldStatus, attached := f.status(t, olds[i]), f.thingPrincipals(t, thingOf(devs[i]))
		switch {
		case oldStatus == "" && len(attached) == 1 && attached[0] == curs[i]:
			retired++
		case oldStatus == types.CertificateStatusActive && len(attached) == 2 && f.hasPolicy(t, certARNOf(t, f, olds[i])):
		default:
			t.Errorf("device %d: older certificate %q, thing principals %v: want retired whole or untouched", i, oldStatus, attached)
		}
		if st := f.status(t, curs[i]); st != types.CertificateStatusActive {
			t.Errorf("device %d: current certificate %q, want ACTIVE", i, st)
		}
	}
	if retired < 1 || retired+len(resp.BatchItemFailures) != n || len(resp.BatchItemFailures) < 1 {
		t.Errorf("%d devices retired and %d retirements handed back; want the one deactivated first (or the few already admitted) retired and the rest, at least one, handed back, %d in all",
			retired, len(resp.BatchItemFailures), n)
	}
	// The devices handed back keep two ACTIVE certificates until their retirement comes back: not converged yet,
	// but every ACTIVE certificate has its thing and policy.
	f.assertActiveInvariant(t)
}

// pacedActivations is the JITR function's IoT client recording its pacing's UpdateCertificate rate at every
// activation.
type pacedActivations struct {
	jitr.IoTAPI
	pacing *iotapi.Pacing
	mu     sync.Mutex
	rates  []float64
}

func (p *pacedActivations) UpdateCertificate(ctx context.Context, in *iot.UpdateCertificateInput, opts ...func(*iot.Options)) (*iot.UpdateCertificateOutput, error) {
	p.mu.Lock()
	p.rates = append(p.rates, p.pacing.Rate("UpdateCertificate"))
	p.mu.Unlock()
	return p.IoTAPI.UpdateCertificate(ctx, in, opts...)
}

// TestRegistrationBatchRisesToTheWholeQuotaInMoto: the JITR function's paced SDK client (one share of 4 calls a
// second, up to two shares) with a registration batch of 12 events drawn from a real queue. With one more event
// waiting in the queue, AWS IoT answering every call, the batch's pacing rises above its share toward both shares;
// with 12 more waiting (another batch's worth for a neighbour) it stays at its share. Every certificate ends
// ACTIVE, and when the batch returns the pacing is back at its share.
func TestRegistrationBatchRisesToTheWholeQuotaInMoto(t *testing.T) {
	f := newFixture(t, testRetryPolicy)
	ctx := context.Background()
	events := func(n int) []string {
		var bodies []string
		for range n {
			body, _ := json.Marshal(f.event(f.device(t, testpki.RandomDeviceID(), time.Now().Add(-time.Hour))))
			bodies = append(bodies, string(body))
		}
		return bodies
	}
	const share = 4.0
	for _, tc := range []struct {
		name    string
		waiting int
		rises   bool
	}{{"one event waiting", 1, true}, {"a batch waiting", 12, false}} {
		t.Run(tc.name, func(t *testing.T) {
			queues, cfg := f.withQueues(t)
			cfg.RateShares = 2
			batch := receive(t, queues, cfg.RegistrationQueueURL, events(12))
			for _, b := range events(tc.waiting) {
				if _, err := queues.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(cfg.RegistrationQueueURL), MessageBody: aws.String(b)}); err != nil {
					t.Fatal(err)
				}
			}
			pacing := iotapi.NewPacing(iotapi.RateLimits{"DescribeCertificate": share, "UpdateCertificate": share}, iotapi.MaxShares(cfg.RateShares))
			client := &pacedActivations{pacing: pacing, IoTAPI: iot.New(iot.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL),
				Credentials: f.principal.Credentials(), Retryer: iotapi.NewRetryer(testRetryPolicy),
				APIOptions: []func(*middleware.Stack) error{pacing.Middleware()}})}
			h := jitr.NewHandler(client, cfg, jitr.WithQueues(queues), jitr.WithPacing(pacing), jitr.WithLogger(slog.New(slog.DiscardHandler)),
				jitr.WithMetricsOutput(f.metrics))
			resp, err := h.HandleRegistrations(ctx, batch)
			if err != nil || len(resp.BatchItemFailures) != 0 {
				t.Fatalf("HandleRegistrations: %v, %d batch item failures", err, len(resp.BatchItemFailures))
			}
			highest := slices.Max(client.rates)
			switch {
			case tc.rises && highest <= share:
				t.Errorf("UpdateCertificate paced at most %.2f a second over the batch (%v); want above its share, %.0f", highest, client.rates, share)
			case !tc.rises && highest != share:
				t.Errorf("UpdateCertificate paced up to %.2f a second with a batch's worth waiting; want its share, %.0f", highest, share)
			case highest > share*cfg.RateShares:
				t.Errorf("UpdateCertificate paced at %.2f a second, above the whole quota (%.0f)", highest, share*cfg.RateShares)
			}
			if got := pacing.Rate("UpdateCertificate"); got != share {
				t.Errorf("after the batch: UpdateCertificate paced at %.2f a second, want its share %.0f", got, share)
			}
			for _, m := range batch.Records {
				var e jitr.Event
				_ = json.Unmarshal([]byte(m.Body), &e)
				if st := f.status(t, e.CertificateID); st != types.CertificateStatusActive {
					t.Errorf("certificate %s is %q, want ACTIVE", e.CertificateID[:8], st)
				}
			}
		})
	}
}

// TestHandedBackRecordsComeBackSoonInMoto: a registration batch of 25 events from a real queue whose visibility
// timeout is the stack's (6 minutes), with no time left to start any of them: every record is handed back and
// visible again after a few seconds, not after the visibility timeout — put back in calls of at most 10 entries,
// the most SQS takes (25 in one call fails whole).
func TestHandedBackRecordsComeBackSoonInMoto(t *testing.T) {
	f := newFixture(t, testRetryPolicy)
	ctx := context.Background()
	queues, cfg := f.withQueues(t)
	if _, err := queues.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(cfg.RegistrationQueueURL),
		Attributes: map[string]string{"VisibilityTimeout": "360"}}); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for range 25 {
		body, _ := json.Marshal(f.event(f.device(t, testpki.RandomDeviceID(), time.Now().Add(-time.Hour))))
		bodies = append(bodies, string(body))
	}
	batch := receive(t, queues, cfg.RegistrationQueueURL, bodies)
	cfg.RateLimits = iotapi.RateLimits{"DescribeCertificate": 10, "UpdateCertificate": 10}
	logs := &strings.Builder{}
	h := jitr.NewHandler(newIoTClient(nil, testRetryPolicy, f.principal.Credentials()), cfg, jitr.WithQueues(queues),
		jitr.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), jitr.WithMetricsOutput(f.metrics))
	short, cancel := context.WithTimeout(ctx, time.Second) // less than the margins a batch keeps: room for none
	defer cancel()
	resp, err := h.HandleRegistrations(short, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 25 {
		t.Fatalf("%d batch item failures, want all 25 handed back", len(resp.BatchItemFailures))
	}
	visible := 0
	for range 20 {
		time.Sleep(500 * time.Millisecond)
		out, err := queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(cfg.RegistrationQueueURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
		if err != nil {
			t.Fatal(err)
		}
		if visible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)]); visible == 25 {
			break
		}
	}
	if visible != 25 {
		t.Errorf("%d of 25 handed-back events visible again 10 s later, want all (the rest wait for the 6-minute visibility timeout); logs: %s", visible, logs)
	}
}
