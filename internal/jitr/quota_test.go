package jitr_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// fakeQueues is a func-type-free fake of jitr.QueueAPI: the registration queue's depth is what the test sets, and
// every GetQueueAttributes is counted.
type fakeQueues struct {
	mu                sync.Mutex
	waiting, inFlight int
	depthReads        int
	putBack           []int32 // the visibility timeouts of the entries put back, in order
}

var _ jitr.QueueAPI = (*fakeQueues)(nil)

func (q *fakeQueues) setDepth(waiting, inFlight int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiting, q.inFlight = waiting, inFlight
}

func (q *fakeQueues) reads() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.depthReads
}

func (q *fakeQueues) SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return &sqs.SendMessageOutput{}, nil
}

func (q *fakeQueues) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.depthReads++
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
		"ApproximateNumberOfMessages": strconv.Itoa(q.waiting), "ApproximateNumberOfMessagesNotVisible": strconv.Itoa(q.inFlight)}}, nil
}

func (q *fakeQueues) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range in.Entries {
		q.putBack = append(q.putBack, e.VisibilityTimeout)
	}
	return &sqs.ChangeMessageVisibilityBatchOutput{}, nil
}

// rotatedFleet is a fake registry of n devices, each with an older and a newer ACTIVE certificate attached to its
// thing, and the retirement batch the newer certificates' activations queued (sent at sent).
type rotatedFleet struct {
	r          *fakeRegistry
	ca         *testpki.Pair
	old, newer []unitCert
	batch      events.SQSEvent
}

func newRotatedFleet(t *testing.T, n int, sent time.Time) *rotatedFleet {
	t.Helper()
	ca, err := testpki.NewCA(testpki.CAOptions{NotBefore: time.Now().Add(-48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	f := &rotatedFleet{r: newFakeRegistry(), ca: ca}
	for i := range n {
		dev := testpki.RandomDeviceID()
		older := newUnitCert(t, func() (*testpki.Pair, error) { return ca.IssueDevice(dev, time.Now().Add(-24*time.Hour)) })
		newer := newUnitCert(t, func() (*testpki.Pair, error) { return ca.IssueDevice(dev, time.Now().Add(-time.Hour)) })
		f.r.provisioned(older.id, older.pem, thingOf(dev), types.CertificateStatusActive)
		f.r.provisioned(newer.id, newer.pem, thingOf(dev), types.CertificateStatusActive)
		f.old, f.newer = append(f.old, older), append(f.newer, newer)
		body, _ := json.Marshal(contract.RetirementRequest{Thing: thingOf(dev), CertificateID: newer.id,
			CertificateARN: certARN(newer.id), NotBefore: time.Now().Add(-time.Hour).Unix()})
		f.batch.Records = append(f.batch.Records, events.SQSMessage{MessageId: fmt.Sprint("m", i), Body: string(body),
			Attributes: map[string]string{"SentTimestamp": strconv.FormatInt(sent.UnixMilli(), 10)}})
	}
	return f
}

func (f *rotatedFleet) handler(api jitr.IoTAPI, queues jitr.QueueAPI, now func() time.Time, metrics *bytes.Buffer) *jitr.Handler {
	return jitr.NewHandler(api, jitr.Config{CAs: map[string]*x509.Certificate{unitCAID: f.ca.Cert}, PolicyName: "p", ProvisionedBy: "s",
		ClockSkew: azsphere.DefaultClockSkew, RegistrationQueueURL: "https://sqs.example/123456789012/registration",
		RetirementQueueURL: "https://sqs.example/123456789012/retirement"},
		jitr.WithQueues(queues), jitr.WithClock(now), jitr.WithLogger(slog.New(slog.DiscardHandler)), jitr.WithMetricsOutput(metrics))
}

// admittingIoT is the fleet's registry behind a client that, as the pacing does, runs each call's admission check
// (iotapi.Admit) before it is sent, one call at a time.
func (f *rotatedFleet) admittingIoT() jitr.IoTAPI {
	var mu sync.Mutex
	return fakeIoT(func(ctx context.Context, op string, in any) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		if err := iotapi.Admit(ctx); err != nil {
			return nil, err
		}
		return f.r.call(ctx, op, in)
	})
}

// retireDuringBacklog hands the fleet's batch to a handler whose clock reads now while 500 registered events wait
// and 100 are in flight, and returns its answer and the queues it put records back into.
func (f *rotatedFleet) retireDuringBacklog(t *testing.T, now time.Time) (events.SQSEventResponse, *fakeQueues) {
	t.Helper()
	queues := &fakeQueues{}
	queues.setDepth(500, 100)
	h := f.handler(f.admittingIoT(), queues, func() time.Time { return now }, &bytes.Buffer{})
	resp, err := h.HandleRetirements(context.Background(), f.batch)
	if err != nil {
		t.Fatal(err)
	}
	return resp, queues
}

// retired reports whether device i's older certificate is gone, and fails the test when it is neither gone nor
// untouched (ACTIVE, attached, with its policy): a certificate's retirement runs all or none.
func (f *rotatedFleet) retired(t *testing.T, i int) bool {
	t.Helper()
	arn := certARN(f.old[i].id)
	c, ok := f.r.certs[f.old[i].id]
	if !ok {
		if f.r.attachedToAThing(arn) {
			t.Errorf("device %d: older certificate deleted but still attached", i)
		}
		return true
	}
	if c.status != types.CertificateStatusActive || !f.r.attachedToAThing(arn) || !f.r.policies[arn] {
		t.Errorf("device %d: older certificate part-retired (status %s, attached %v, policy %v): want all of its retirement or none",
			i, c.status, f.r.attachedToAThing(arn), f.r.policies[arn])
	}
	return false
}

// TestRetirementGivesWayWhenRegistrationsArrive: a retirement batch of 6 devices starts with the registration
// queue empty; registered events arrive right after the first device's older certificate is deactivated. That
// certificate's retirement is finished (detached, deleted: never left INACTIVE and attached), and from then on no
// retirement takes a DescribeCertificate or UpdateCertificate slot: the other five are handed back whole, to come
// back after the backlog. (Before retirement gave way call by call, the batch went on spending both APIs.)
func TestRetirementGivesWayWhenRegistrationsArrive(t *testing.T) {
	const n = 6
	now := time.Now()
	f := newRotatedFleet(t, n, now)
	queues := &fakeQueues{}
	var (
		mu        sync.Mutex
		flipped   = make(chan struct{})
		backlog   bool
		lists     int
		afterFlip = map[string]int{}
	)
	api := fakeIoT(func(ctx context.Context, op string, in any) (any, error) {
		if op == "ListThingPrincipals" {
			mu.Lock()
			lists++
			first := lists == 1
			mu.Unlock()
			if !first {
				<-flipped // the other retirements start once registrations are waiting
			}
		}
		mu.Lock()
		defer mu.Unlock()
		// The client's pacing runs the call's admission check when its slot comes (iotapi.Admit).
		if err := iotapi.Admit(ctx); err != nil {
			return nil, err
		}
		if backlog {
			afterFlip[op]++
		}
		out, err := f.r.call(ctx, op, in)
		if u, ok := in.(*iot.UpdateCertificateInput); ok && !backlog && u.NewStatus == types.CertificateStatusInactive {
			backlog = true
			queues.setDepth(40, 10)
			close(flipped)
		}
		return out, err
	})
	metrics := &bytes.Buffer{}
	h := f.handler(api, queues, func() time.Time { return now }, metrics)
	jitr.SetDepthTTL(h, 0)
	resp, err := h.HandleRetirements(context.Background(), f.batch)
	if err != nil {
		t.Fatal(err)
	}
	if afterFlip["DescribeCertificate"] != 0 || afterFlip["UpdateCertificate"] != 0 {
		t.Errorf("after registered events arrived, retirement made %d DescribeCertificate and %d UpdateCertificate calls; want none",
			afterFlip["DescribeCertificate"], afterFlip["UpdateCertificate"])
	}
	done := 0
	for i := range n {
		if f.retired(t, i) {
			done++
		}
	}
	if done != 1 {
		t.Errorf("%d devices retired, want 1 (the one deactivated before the registrations arrived, finished)", done)
	}
	if len(resp.BatchItemFailures) != n-1 {
		t.Errorf("%d retirements handed back, want %d", len(resp.BatchItemFailures), n-1)
	}
	if got := metricSum(t, metrics.String(), contract.MetricRetirementDeferred); got != n-1 {
		t.Errorf("%s = %v, want %d", contract.MetricRetirementDeferred, got, n-1)
	}
}

// TestRetirementPastItsGraceIsRationed: during a backlog that never drains, retirements older than their grace
// still run, but one per ration interval in an execution environment, not the whole batch; a retirement within
// its grace never runs during the backlog.
func TestRetirementPastItsGraceIsRationed(t *testing.T) {
	now := time.Now()
	f := newRotatedFleet(t, 4, now.Add(-20*time.Minute))
	f.batch.Records[3].Attributes["SentTimestamp"] = strconv.FormatInt(now.UnixMilli(), 10) // within its grace
	queues := &fakeQueues{}
	queues.setDepth(500, 100)
	var mu sync.Mutex
	api := fakeIoT(func(ctx context.Context, op string, in any) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		return f.r.call(ctx, op, in)
	})
	clock := now
	h := f.handler(api, queues, func() time.Time { return clock }, &bytes.Buffer{})
	retired := func() (n int) {
		for i := range 4 {
			if f.retired(t, i) {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		after time.Duration
		want  int
	}{{0, 1}, {time.Second, 1}, {11 * time.Second, 2}, {12 * time.Second, 2}, {22 * time.Second, 3}, {40 * time.Second, 3}} {
		clock = now.Add(tc.after)
		var batch events.SQSEvent
		for i, m := range f.batch.Records {
			if _, present := f.r.certs[f.old[i].id]; present {
				batch.Records = append(batch.Records, m)
			}
		}
		if _, err := h.HandleRetirements(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		if got := retired(); got != tc.want {
			t.Errorf("after a batch at +%s during a backlog: %d devices retired, want %d", tc.after, got, tc.want)
		}
	}
}

// TestDeferredRetirementComesBackAfterAsLongAsItWaited: during a backlog, a retirement is put back for as long as
// it has waited since it was queued, at least 30 s and at most 15 min (its retirementGrace, after which a ration
// lets it run).
func TestDeferredRetirementComesBackAfterAsLongAsItWaited(t *testing.T) {
	now := time.Now()
	ages := []time.Duration{0, 5 * time.Second, 45*time.Second + 400*time.Millisecond, 4 * time.Minute, 14 * time.Minute}
	want := []int32{30, 30, 45, 240, 840}
	f := newRotatedFleet(t, len(ages), now)
	for i, age := range ages {
		f.batch.Records[i].Attributes["SentTimestamp"] = strconv.FormatInt(now.Add(-age).UnixMilli(), 10)
	}
	resp, queues := f.retireDuringBacklog(t, now)
	if len(resp.BatchItemFailures) != len(ages) {
		t.Fatalf("%d retirements handed back during the backlog, want all %d", len(resp.BatchItemFailures), len(ages))
	}
	queues.mu.Lock()
	defer queues.mu.Unlock()
	if !slices.Equal(queues.putBack, want) {
		t.Errorf("retirements aged %v put back for %v s, want %v s", ages, queues.putBack, want)
	}
}

// TestDeferredRetirementComesBackAfterAsLongAsTheBacklogLasted: a retirement queued late in a long backlog is put
// back for as long as the backlog has lasted, not for its own short wait: put back for a fixed or its own time,
// each retirement came back once per delay of the backlog, and a 10 000-device storm's retirements about seven
// times each. The backlog's age is what this execution environment's readings saw: an empty reading, or a pause
// in the readings longer than 15 s, starts it again.
func TestDeferredRetirementComesBackAfterAsLongAsTheBacklogLasted(t *testing.T) {
	start := time.Now()
	clock := start
	f := newRotatedFleet(t, 1, start)
	queues := &fakeQueues{}
	queues.setDepth(800, 100)
	h := f.handler(f.admittingIoT(), queues, func() time.Time { return clock }, &bytes.Buffer{})
	putBack := func(step string, waited time.Duration, want int32) {
		t.Helper()
		rec := f.batch.Records[0]
		rec.Attributes = map[string]string{"SentTimestamp": strconv.FormatInt(clock.Add(-waited).UnixMilli(), 10), "ApproximateReceiveCount": "1"}
		queues.mu.Lock()
		queues.putBack = nil
		queues.mu.Unlock()
		if _, err := h.HandleRetirements(context.Background(), events.SQSEvent{Records: []events.SQSMessage{rec}}); err != nil {
			t.Fatal(err)
		}
		queues.mu.Lock()
		defer queues.mu.Unlock()
		if len(queues.putBack) != 1 {
			t.Fatalf("%s: put back %v, want the retirement once", step, queues.putBack)
		}
		if got := queues.putBack[0]; got != want {
			t.Errorf("%s: put back for %d s, want %d s", step, got, want)
		}
	}
	// read is an empty batch: any batch reads the depth.
	read := func() {
		t.Helper()
		if _, err := h.HandleRetirements(context.Background(), events.SQSEvent{}); err != nil {
			t.Fatal(err)
		}
	}
	// Readings every 10 s for 400 s of one backlog.
	for clock.Sub(start) < 400*time.Second {
		read()
		clock = clock.Add(10 * time.Second)
	}
	// Queued 10 s ago, 400 s into the backlog: back in 400 s. Queued 600 s ago: its own wait is longer.
	putBack("queued 10 s ago, 400 s into a backlog", 10*time.Second, int32(clock.Sub(start).Seconds()))
	putBack("queued 600 s ago", 600*time.Second, 600)

	// The queue reads empty for a moment (and the batch is handed back for a second reading); then a new backlog.
	queues.setDepth(0, 0)
	clock = clock.Add(2 * time.Second)
	read()
	queues.setDepth(300, 10)
	clock = clock.Add(2 * time.Second)
	putBack("as a backlog begins again", 0, 30) // the first busy reading: 0 s old, put back for the least
	for range 4 {
		clock = clock.Add(10 * time.Second)
		read()
	}
	clock = clock.Add(5 * time.Second)
	putBack("45 s into the new backlog, queued now", 0, 45)
	// No reading for 20 s, as between the last batch of one storm and the first of the next: what happened
	// meanwhile is unknown, the backlog is taken to begin now.
	clock = clock.Add(20 * time.Second)
	putBack("after a pause in the readings", 0, 30)
}

// TestFirstBootRetirementIsDoneDuringTheBacklog: the retirement of a device whose thing its activation created
// (every device of a first boot) lists the thing's principals at its first receive even while registrations are
// queued — ListThingPrincipals, which activation does not call — and with nothing older attached it is done:
// deferred until the backlog drained, a 10 000-device first boot put every retirement back about seven times.
// It spends no DescribeCertificate or UpdateCertificate: one that finds an older certificate gives way at its first
// DescribeCertificate; one received before, or of a thing that existed, is put back without a call.
func TestFirstBootRetirementIsDoneDuringTheBacklog(t *testing.T) {
	now := time.Now()
	f := newRotatedFleet(t, 4, now)
	// Devices 0 and 1 booted for the first time: only their certificate is attached, to a thing their activation
	// created. Device 2's activation created its thing too, but an older certificate is attached (another event of
	// the device, handled at the same time). Device 3's thing existed.
	for i := range 3 {
		var req contract.RetirementRequest
		if err := json.Unmarshal([]byte(f.batch.Records[i].Body), &req); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			arn := certARN(f.old[i].id)
			f.r.thingCerts[req.Thing] = slices.DeleteFunc(f.r.thingCerts[req.Thing], func(a string) bool { return a == arn })
		}
		req.NewThing = true
		body, _ := json.Marshal(req)
		f.batch.Records[i].Body = string(body)
	}
	f.batch.Records[1].Attributes["ApproximateReceiveCount"] = "2"
	resp, _ := f.retireDuringBacklog(t, now)
	var back []string
	for _, r := range resp.BatchItemFailures {
		back = append(back, r.ItemIdentifier)
	}
	slices.Sort(back)
	if want := []string{"m1", "m2", "m3"}; !slices.Equal(back, want) {
		t.Errorf("handed back %v during the backlog, want %v (m0 done: nothing older; m1 received before; m2 finds an older certificate; m3's thing existed)", back, want)
	}
	want := map[string]int{"ListThingPrincipals": 2}
	if got := f.r.count; !maps.Equal(got, want) {
		t.Errorf("AWS IoT calls during the backlog %v, want %v", got, want)
	}
	if f.retired(t, 2) || f.retired(t, 3) {
		t.Error("an older certificate was retired during the backlog")
	}
}

// TestRegistrationDepthIsReadOncePerSecond: however many retirements ask whether registrations wait, one
// execution environment reads the queue's depth at most once per second of its clock.
func TestRegistrationDepthIsReadOncePerSecond(t *testing.T) {
	now := time.Now()
	f := newRotatedFleet(t, 8, now)
	queues := &fakeQueues{}
	api := f.admittingIoT()
	clock := now
	h := f.handler(api, queues, func() time.Time { return clock }, &bytes.Buffer{})
	resp, err := h.HandleRetirements(context.Background(), events.SQSEvent{Records: f.batch.Records[:4]})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("batch of 4: %v, %d handed back; want all 4 retired", err, len(resp.BatchItemFailures))
	}
	if got := queues.reads(); got != 1 {
		t.Errorf("one batch of 4 retirements (about 20 admission checks) within a second read the depth %d times, want 1", got)
	}
	clock = clock.Add(999 * time.Millisecond)
	if _, err := h.HandleRetirements(context.Background(), events.SQSEvent{Records: f.batch.Records[4:6]}); err != nil {
		t.Fatal(err)
	}
	if got := queues.reads(); got != 1 {
		t.Errorf("a second batch 0.999 s later read the depth again (%d reads), want the first reading", got)
	}
	clock = clock.Add(time.Millisecond)
	if _, err := h.HandleRetirements(context.Background(), events.SQSEvent{Records: f.batch.Records[6:]}); err != nil {
		t.Fatal(err)
	}
	if got := queues.reads(); got != 2 {
		t.Errorf("a batch 1 s after the first reading: %d reads, want 2", got)
	}
	for i := range 8 {
		if !f.retired(t, i) {
			t.Errorf("device %d not retired", i)
		}
	}
}

// TestRetirementWaitsForASecondEmptyReading: a registration queue that reads empty right after it read busy may be
// a moment between two batches of a storm: the retirement batch is handed back for a moment, without an AWS IoT
// call, and runs when the next reading, a second later, finds the queue empty again.
func TestRetirementWaitsForASecondEmptyReading(t *testing.T) {
	now := time.Now()
	f := newRotatedFleet(t, 3, now)
	queues := &fakeQueues{}
	api := f.admittingIoT()
	clock := now
	h := f.handler(api, queues, func() time.Time { return clock }, &bytes.Buffer{})
	for _, step := range []struct {
		what              string
		waiting, inFlight int
		wantCalls         int
		wantBack          int
	}{
		{"registrations in flight", 0, 50, 0, 3},
		{"the first empty reading", 0, 0, 0, 3},
		{"the second empty reading", 0, 0, 15, 0},
	} {
		queues.setDepth(step.waiting, step.inFlight)
		before := len(f.r.calls)
		resp, err := h.HandleRetirements(context.Background(), f.batch)
		if err != nil {
			t.Fatal(err)
		}
		if calls := len(f.r.calls) - before; calls != step.wantCalls || len(resp.BatchItemFailures) != step.wantBack {
			t.Errorf("%s: %d AWS IoT calls, %d handed back; want %d, %d", step.what, calls, len(resp.BatchItemFailures), step.wantCalls, step.wantBack)
		}
		clock = clock.Add(time.Second)
	}
}

// shareRecorder is a fake jitr.QuotaShares: it records every SetShares.
type shareRecorder struct {
	mu     sync.Mutex
	shares []float64
}

func (s *shareRecorder) SetShares(n float64) {
	s.mu.Lock()
	s.shares = append(s.shares, n)
	s.mu.Unlock()
}

func (s *shareRecorder) all() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]float64(nil), s.shares...)
}

// TestRegistrationBatchMayRiseToTheWholeQuota: a registration batch of 4 lets its pacing rise to the RateShares
// shares of the quota before its first activation while fewer fresh events wait in the registration queue than it
// holds (the pacing halves back on throttling if a neighbour is busy after all), keeps its share while more wait,
// and gives the share back when it returns; with one share there is nothing to raise. Duplicates do not count as
// work waiting: a batch whose records are each sent twice (as devices retrying while pending send them) takes the
// queue's as half duplicates too, so 12 waiting are 6 fresh, fewer than its 8 records.
func TestRegistrationBatchMayRiseToTheWholeQuota(t *testing.T) {
	for _, tc := range []struct {
		name     string
		shares   float64
		waiting  int
		want     string
		whenSent string // the shares set when the first activation is sent
		twice    bool   // every record of the batch is in it twice
	}{
		{"nothing waiting", 2, 0, "[2 1]", "[2]", false},
		{"fewer waiting than the batch", 2, 3, "[2 1]", "[2]", false},
		{"as many waiting as the batch", 2, 4, "[1 1]", "[1]", false},
		{"a storm waiting", 2, 300, "[1 1]", "[1]", false},
		{"one share", 1, 0, "[]", "[]", false},
		{"duplicates waiting, fewer fresh than the batch", 2, 12, "[2 1]", "[2]", true},
		{"duplicates waiting, as many fresh as the batch", 2, 16, "[1 1]", "[1]", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shares := &shareRecorder{}
			queues := &fakeQueues{}
			queues.setDepth(tc.waiting, 4)
			r, h, _, batch, _ := deadlineSetup(t, 4, jitr.WithQueues(queues), jitr.WithPacing(shares))
			jitr.SetRateShares(h, tc.shares)
			if tc.twice {
				batch.Records = append(batch.Records, batch.Records...)
			}
			var atFirst string
			r.before = func(_ *fakeRegistry, op string, _ int) {
				if op == "UpdateCertificate" && atFirst == "" {
					atFirst = fmt.Sprint(shares.all())
				}
			}
			resp, err := h.HandleRegistrations(context.Background(), batch)
			if err != nil || len(resp.BatchItemFailures) != 0 {
				t.Fatalf("HandleRegistrations: %v, %d batch item failures", err, len(resp.BatchItemFailures))
			}
			if got := fmt.Sprint(shares.all()); got != tc.want {
				t.Errorf("SetShares calls %s, want %s", got, tc.want)
			}
			if atFirst != tc.whenSent {
				t.Errorf("SetShares calls before the first activation %s, want %s", atFirst, tc.whenSent)
			}
			if got := r.count["UpdateCertificate"]; got != 4 {
				t.Errorf("%d activations, want 4", got)
			}
		})
	}
}

// TestRegistrationBatchTakesItsSlice: a batch starts what its share of the quotas handles in 5 s (at 2 calls a
// second, 10 of its 25 fresh records) and hands the rest back visible at once, unstarted, for whichever execution
// environment is free: one environment holding a whole batch of fresh events kept the other idle at a storm's tail.
func TestRegistrationBatchTakesItsSlice(t *testing.T) {
	queues := &fakeQueues{}
	queues.setDepth(0, 25)
	r, h, metrics, batch, _ := deadlineSetup(t, 25, jitr.WithQueues(queues))
	resp, err := h.HandleRegistrations(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.count["UpdateCertificate"]; got != 10 {
		t.Errorf("%d activations, want 10 (5 s at 2 a second)", got)
	}
	if got := r.count["DescribeCertificate"]; got != 10 {
		t.Errorf("%d certificates read, want 10: the records handed back are not started", got)
	}
	if len(resp.BatchItemFailures) != 15 {
		t.Fatalf("%d batch item failures, want 15", len(resp.BatchItemFailures))
	}
	queues.mu.Lock()
	defer queues.mu.Unlock()
	if fmt.Sprint(queues.putBack) != fmt.Sprint(make([]int32, 15)) {
		t.Errorf("put back with visibility timeouts %v, want 15 × 0", queues.putBack)
	}
	if got := metricSum(t, metrics.String(), "HandedBack"); got != 15 {
		t.Errorf("HandedBack %v, want 15", got)
	}
}
