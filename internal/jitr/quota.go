package jitr

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Who gets the AWS IoT quotas. Activation and retirement spend the same scarce APIs (DescribeCertificate and
// UpdateCertificate, 10 a second per account by default) from different execution environments, which know of
// each other only through the registration queue: while it holds registered events, waiting or in flight,
// retirement gives way (giveWayToRegistrations); and a registration batch may take what the other environments
// leave of the quota, the whole of it when they are idle (takeIdleShares).

const (
	// depthTTL is how long one reading of the registration queue's depth serves: at most one GetQueueAttributes a
	// second per execution environment, however many calls ask.
	depthTTL = time.Second
	// retirementRation is how often one execution environment may start a retirement past its retirementGrace
	// while registrations wait: one a ration, run to its end. A backlog that never drains still sees its
	// retirements done, and they take at most 2 % of the scarce quotas from activations (one DescribeCertificate
	// and one UpdateCertificate per device with one older certificate, two environments, 10 a second each).
	retirementRation = 10 * time.Second
	// backlogGap is how long an execution environment may go without reading the registration queue's depth and
	// still take two busy readings for one backlog: while registered events wait, an environment handles their
	// batches and reads every depthTTL (takeIdleShares); one that read nothing for longer had nothing to do, and
	// does not know what happened in between. (A minute was too long: the last busy reading of one storm and the
	// first of the next, 40 s apart, made one backlog of two, and the second storm's retirements were put back for
	// 15 minutes.)
	backlogGap = 15 * time.Second
)

// errGiveWay is what a retirement's AWS IoT call fails with when registered events wait: it is not sent, and the
// retirement is handed back whole (see Handler.retire for the one exception, a certificate already deactivated).
var errGiveWay = errors.New("registered events are waiting: retirement gives way to their activation")

// QuotaShares is the pacing of the handler's IoT client (an *iotapi.Pacing): how many shares of the account's
// quotas it may take (1 to Config.RateShares).
type QuotaShares interface {
	SetShares(shares float64)
}

// WithPacing lets registration batches raise the IoT client's pacing to the whole quota while the other
// execution environments are idle (Config.RateShares shares). Without it, every batch keeps its one share.
func WithPacing(p QuotaShares) Option { return func(h *Handler) { h.pacing = p } }

// queueDepth is what GetQueueAttributes says of a queue: messages waiting, and in flight (received and not
// deleted, or put back with a delay).
type queueDepth struct{ waiting, inFlight int }

func (d queueDepth) empty() bool { return d.waiting+d.inFlight == 0 }

// depthWatch caches the registration queue's depth for depthTTL.
type depthWatch struct {
	mu    sync.Mutex
	at    time.Time
	depth queueDepth
	err   error
	// wasBusy says the reading before this one found registered events waiting or in flight.
	wasBusy bool
	// busySince is when the readings started finding registered events, without an empty reading or a pause
	// longer than backlogGap since: when the backlog began, as far as this execution environment saw it. Zero
	// while the queue reads empty.
	busySince time.Time
}

// registrationDepth reads the registration queue's depth, at most once per depthTTL (h.now's clock) for the
// whole execution environment; a failed read is kept as long, and logged once.
func (h *Handler) registrationDepth(ctx context.Context) (queueDepth, error) {
	if h.queues == nil || h.cfg.RegistrationQueueURL == "" {
		return queueDepth{}, nil
	}
	w := &h.depth
	w.mu.Lock()
	defer w.mu.Unlock()
	now := h.now()
	if age := now.Sub(w.at); !w.at.IsZero() && age >= 0 && age < h.depthTTL {
		return w.depth, w.err
	}
	w.wasBusy = !w.at.IsZero() && w.err == nil && !w.depth.empty()
	previous := w.at
	w.at, w.depth, w.err = now, queueDepth{}, nil
	out, err := h.queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(h.cfg.RegistrationQueueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
	})
	if err != nil {
		w.err = fmt.Errorf("read the registration queue's depth: %w", err)
		if ctx.Err() != nil {
			// The caller's own deadline, not the queue's answer: the next caller reads again.
			w.at = time.Time{}
			return w.depth, w.err
		}
		h.log.Warn("registration queue's depth unknown: retirements proceed, registrations keep their share", "error", w.err.Error())
		return w.depth, w.err
	}
	w.depth.waiting, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	w.depth.inFlight, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	switch {
	case w.depth.empty():
		w.busySince = time.Time{}
	case w.busySince.IsZero() || now.Sub(previous) > backlogGap:
		w.busySince = now
	}
	return w.depth, nil
}

// backlogAge is how long the registration queue has held registered events, as this execution environment's
// readings saw it (depthWatch.busySince); 0 while it reads empty or before a reading.
func (h *Handler) backlogAge() time.Duration {
	h.depth.mu.Lock()
	defer h.depth.mu.Unlock()
	if h.depth.busySince.IsZero() {
		return 0
	}
	return max(h.now().Sub(h.depth.busySince), 0)
}

// registrationBacklog reports whether registered events wait in, or are being handled from, the registration
// queue. Both count: the event source mapping takes whatever is visible into its batches, so a queue with nothing
// visible may still have a storm in flight. A retirement queued by an event's own invocation therefore waits one
// retirementDelay at least, which is the point: retirement is never urgent.
func (h *Handler) registrationBacklog(ctx context.Context) (bool, error) {
	d, err := h.registrationDepth(ctx)
	return err == nil && !d.empty(), err
}

// registrationsJustDrained reports that the registration queue's depth reads empty right after a reading that
// found registered events: between two batches of a storm it may read so for a moment, and a retirement batch that
// started then would spend DescribeCertificate and UpdateCertificate until its next reading. A retirement batch
// waits for a second empty reading.
func (h *Handler) registrationsJustDrained(ctx context.Context) bool {
	d, err := h.registrationDepth(ctx)
	h.depth.mu.Lock()
	defer h.depth.mu.Unlock()
	return err == nil && d.empty() && h.depth.wasBusy
}

// giveWayToRegistrations is a retirement's admission check (iotapi.WithAdmission), run when a call's slot
// comes: errGiveWay while registered events wait or are in flight, so retirement never takes a slot of
// DescribeCertificate or UpdateCertificate an activation could use. An unknown depth lets the call through.
func (h *Handler) giveWayToRegistrations(ctx context.Context) error {
	if busy, _ := h.registrationBacklog(ctx); busy {
		return errGiveWay
	}
	return nil
}

// rationing hands out the retirements an execution environment may start during a backlog, one per
// retirementRation.
type rationing struct {
	mu   sync.Mutex
	next time.Time
}

func (r *rationing) take(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.next) {
		return false
	}
	r.next = now.Add(retirementRation)
	return true
}

// takeIdleShares lets a registration batch's pacing rise toward the whole quota (Config.RateShares shares) while
// fewer fresh registered events wait in the registration queue than the batch holds: the queue can no longer keep
// another execution environment busy, as at the storm's tail, where one batch is left. Fresh means not a duplicate
// of a certificate settled or being handled: devices retrying while their certificate is pending send about one
// event per attempt, and at a reboot's tail most of what waits is such duplicates, which another environment drops
// without an AWS IoT call (counting them kept the last real events at half the quota). The queue's waiting events
// are taken to be as fresh as the records of this environment's recent batches (batchMix). The pacing then grows
// while AWS IoT answers and halves back toward the share, holding there a few seconds, on a ThrottlingException (as
// the SDK's adaptive retry mode does), so a neighbour busy after all costs a throttle or two. While more wait, the
// batch keeps its share: two environments at their shares use the whole quota without a throttle, where probing
// it mid-storm cost about 6 % of the calls in throttles and the activations their retries' backoff. (Waiting for
// an empty queue was too strict: devices retrying while their certificate is pending keep registered events
// arriving to the end, and the storm's tail ran at half the quota.) It reads at once and again every depthTTL
// until stop, which gives the share back.
func (h *Handler) takeIdleShares(ctx context.Context, n int) (stop func()) {
	if h.pacing == nil || h.cfg.RateShares <= 1 {
		return func() {}
	}
	current := 0.0
	decide := func() {
		d, err := h.registrationDepth(ctx)
		shares, fresh := 1.0, h.mix.fresh()
		if err == nil && float64(d.waiting)*fresh < float64(n) {
			shares = h.cfg.RateShares
		}
		if shares != current {
			h.pacing.SetShares(shares)
			current = shares
			h.log.Debug("AWS IoT pacing set to its shares of the quotas", "step", "pace", "shares", shares,
				"waiting", d.waiting, "fresh", fresh, "inFlight", d.inFlight, "batch", n)
		}
	}
	decide()
	ticks, stopTicks := h.ticker(depthTTL)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-ticks:
				decide()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		stopTicks()
		h.pacing.SetShares(1)
	}
}

// realTicker is the default Handler.ticker.
func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// batchMix is what an execution environment's recent registration batches held: records, and how many of them
// were stale (a duplicate in the batch, of a certificate settled here or elsewhere, or held by another delivery).
// Past batches count half as much with each new one; the batch in hand counts its records not yet found stale as
// fresh.
type batchMix struct {
	mu                sync.Mutex
	records, freshSum float64 // past batches, decayed
	current           *batchCount
}

// batchCount is one batch's records and the stale ones found so far.
type batchCount struct {
	records int
	stale   atomic.Int64
}

func (m *batchMix) begin(records, stale int) *batchCount {
	c := &batchCount{records: records}
	c.stale.Store(int64(stale))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.current = c
	return c
}

func (m *batchMix) end(c *batchCount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = m.records/2 + float64(c.records)
	m.freshSum = m.freshSum/2 + float64(c.records-int(c.stale.Load()))
	if m.current == c {
		m.current = nil
	}
}

// fresh is the share of fresh records in the recent batches, 1 before any.
func (m *batchMix) fresh() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	records, fresh := m.records, m.freshSum
	if c := m.current; c != nil {
		records += float64(c.records)
		fresh += float64(c.records - int(c.stale.Load()))
	}
	if records == 0 {
		return 1
	}
	return fresh / records
}
