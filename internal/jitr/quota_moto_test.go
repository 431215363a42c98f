package jitr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
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

// heldActivations is the JITR function's IoT client whose activations wait until release.
type heldActivations struct {
	jitr.IoTAPI
	release chan struct{}
}

func (h heldActivations) UpdateCertificate(ctx context.Context, in *iot.UpdateCertificateInput, opts ...func(*iot.Options)) (*iot.UpdateCertificateOutput, error) {
	<-h.release
	return h.IoTAPI.UpdateCertificate(ctx, in, opts...)
}

// TestRegistrationBatchTakesTheWholeQuotaInMoto: a registration batch received from a real queue may take its two
// shares when two readings of the queue a second apart find nothing waiting in it, and keeps its one share while
// another event waits.
func TestRegistrationBatchTakesTheWholeQuotaInMoto(t *testing.T) {
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
	for _, tc := range []struct {
		name  string
		other int
		want  string
	}{{"alone", 0, "[1 2 1]"}, {"another event waiting", 1, "[1 1 1]"}} {
		t.Run(tc.name, func(t *testing.T) {
			queues, cfg := f.withQueues(t)
			cfg.RateShares = 2
			batch := receive(t, queues, cfg.RegistrationQueueURL, events(3))
			for _, b := range events(tc.other) {
				if _, err := queues.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(cfg.RegistrationQueueURL), MessageBody: aws.String(b)}); err != nil {
					t.Fatal(err)
				}
			}
			var (
				shares  = &shareRecorder{set: make(chan float64, 8)}
				ticks   = make(chan time.Time)
				release = make(chan struct{})
				clockMu sync.Mutex
				clock   = time.Now()
			)
			h := jitr.NewHandler(heldActivations{IoTAPI: newIoTClient(nil, testRetryPolicy, f.principal.Credentials()), release: release}, cfg,
				jitr.WithQueues(queues), jitr.WithPacing(shares), jitr.WithLogger(slog.New(slog.DiscardHandler)), jitr.WithMetricsOutput(f.metrics),
				jitr.WithClock(func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }))
			jitr.SetTicker(h, func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} })
			done := make(chan error, 1)
			go func() {
				resp, err := h.HandleRegistrations(ctx, batch)
				if err == nil && len(resp.BatchItemFailures) != 0 {
					err = fmt.Errorf("%d batch item failures", len(resp.BatchItemFailures))
				}
				done <- err
			}()
			shares.next(t)
			clockMu.Lock()
			clock = clock.Add(time.Second)
			clockMu.Unlock()
			ticks <- clock
			shares.next(t)
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(shares.all()); got != tc.want {
				t.Errorf("SetShares calls %s, want %s", got, tc.want)
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
