package jitr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

// LedgerAPI is the part of DynamoDB the provisioning ledger uses.
type LedgerAPI interface {
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

var _ LedgerAPI = (*dynamodb.Client)(nil)

// QueueAPI is the part of SQS the handler uses: queueing retirements and re-queued events, and reading the
// registration queue's backlog.
type QueueAPI interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

var _ QueueAPI = (*sqs.Client)(nil)

const (
	// claimLease is how long a claim keeps other deliveries of the same certificate away: longer than one
	// invocation may run (the function's timeout), so a claim is only taken over from a crashed invocation.
	claimLease = 2 * time.Minute
	// ledgerRetention is how long a settled certificate stays in the ledger (its TTL): long enough for the
	// reconciler to find a retirement that never happened.
	ledgerRetention = 7 * 24 * time.Hour
	// retryDelay is how long a registered event or a retirement whose handling failed (throttling past the
	// retries, the deadline) stays invisible before it is tried again.
	retryDelay = 10 * time.Second
	// retirementDelay is how long a retirement put back during a registration backlog stays invisible, at least
	// (its visibility timeout is shortened to this); see deferral for how long beyond it.
	retirementDelay = 30 * time.Second
	// retirementMaxDelay bounds how long a retirement put back during a backlog stays invisible: its grace, so in a
	// backlog that never drains it is back within two graces of being queued, past its grace, and a ration lets it
	// run.
	retirementMaxDelay = retirementGrace
	// claimRecheck is how long a delivery put back because another one holds the certificate's claim stays
	// invisible: long enough for that delivery to settle the certificate, so this one is then dropped.
	claimRecheck = 5 * time.Second
	// retirementGrace is how long a retirement may wait for the registration queue to drain; after it, it runs
	// even during a backlog, so a steady stream of registrations cannot starve it.
	retirementGrace = 15 * time.Minute
	// recentFor is how long a duplicate of a settled certificate is dropped without reading the ledger
	// (recentSet): a device still retrying after it sends its events within it.
	recentFor = 10 * time.Minute
	// retirementLostAfter is how long a device's older certificates may stay unretired after their retirement was
	// queued before the reconciler queues it again: longer than a retirement may legitimately wait, put back
	// during a backlog (up to retirementGrace, then up to retirementMaxDelay more before its ration), so only
	// one lost to an outage, a purged queue or the dead-letter queue is queued twice.
	retirementLostAfter = time.Hour
	// batchParallelism is how many records of one batch are handled at once (at most): the whole batch, paced by
	// the IoT client to this execution environment's share of the quotas. Fewer would leave the paced APIs idle
	// while a handful of events walk through their steps in lockstep.
	batchParallelism = 100
	// batchReserve is kept free at the end of an invocation besides deadlineMargin, for what follows the last
	// paced calls: their latency, the ledger writes, putting failed records back.
	batchReserve = 3 * time.Second
	// paceHeadroom is the share of its pacing a batch is sized to: the calls of one record wait for each other, and
	// a retry after a throttle spends a slot too.
	paceHeadroom = 0.5
	// handBackDelay is how long a record handed back unstarted stays invisible: long enough not to be in the next
	// batch of the same execution environment's poller right away.
	handBackDelay = 2 * time.Second
	// batchSlice is how much work a registration batch takes on: the records its share of the quotas handles in
	// this time. The rest goes back to the queue at once (visible again at once), for whichever execution
	// environment is free first: a whole batch of fresh events held by one environment left the other one with
	// nothing but duplicates at a storm's tail, 50 records at a share of 5 a second being 10 s at half the quota.
	batchSlice = 5 * time.Second
)

// registrationCalls is what one registered event spends at most of each paced AWS IoT API (the attachments have
// quotas ten times larger); retirementCalls what the retirement of a device with one older certificate spends.
var (
	registrationCalls = map[string]float64{"DescribeCertificate": 1, "AttachPolicy": 1, "UpdateCertificate": 1}
	retirementCalls   = map[string]float64{"ListThingPrincipals": 1, "DescribeCertificate": 1, "UpdateCertificate": 1, "DeleteCertificate": 1}
)

// fits returns how many records, each spending calls, the invocation can finish before its deadline at this
// execution environment's pacing (Config.RateLimits), with paceHeadroom and batchReserve to spare. Without a
// deadline or pacing, every record fits.
func (h *Handler) fits(ctx context.Context, calls map[string]float64) int {
	deadline, ok := ctx.Deadline()
	if !ok {
		return math.MaxInt
	}
	perSecond := h.pace(calls)
	if math.IsInf(perSecond, 1) {
		return math.MaxInt
	}
	left := time.Until(deadline) - deadlineMargin - batchReserve
	if left <= 0 {
		return 0
	}
	return int(left.Seconds() * perSecond * paceHeadroom)
}

// pace is how many records, each spending calls, this execution environment's pacing (Config.RateLimits, its share
// of the quotas) handles a second; +Inf without pacing.
func (h *Handler) pace(calls map[string]float64) float64 {
	perSecond := math.Inf(1)
	for api, n := range calls {
		if rate := h.cfg.RateLimits[api]; rate > 0 {
			perSecond = min(perSecond, rate/n)
		}
	}
	return perSecond
}

// slice is how many records, each spending calls, a batch starts: what its pacing handles in batchSlice.
func (h *Handler) slice(calls map[string]float64) int {
	perSecond := h.pace(calls)
	if math.IsInf(perSecond, 1) || perSecond*batchSlice.Seconds() >= math.MaxInt32 {
		return math.MaxInt
	}
	return max(1, int(math.Ceil(perSecond*batchSlice.Seconds())))
}

// cutByDeadline reports whether err says a call ran into the invocation's deadline.
func cutByDeadline(err error) bool {
	return errors.Is(err, iotapi.ErrNoTimeLeft) || errors.Is(err, context.DeadlineExceeded)
}

// batchOutcome counts, across the goroutines of one batch, what the invocation's metric record reports.
type batchOutcome struct {
	handedBack int
	cut        atomic.Bool
}

// report writes the batch's metric record and warns when it ran into its deadline.
func (h *Handler) report(o *batchOutcome, counts map[string]int) {
	rec := h.record()
	for name, n := range counts {
		if n > 0 {
			rec.count(name, n)
		}
	}
	if o.handedBack > 0 {
		rec.count(contract.MetricHandedBack, o.handedBack)
	}
	if o.cut.Load() {
		rec.count(contract.MetricDeadlineCut, 1)
		h.log.Warn("invocation ran into its deadline: records left for a retry", "step", "batch", "deadlineCut", 1)
	}
	if len(rec.order) > 0 {
		h.metrics.writeLine(rec.encode(h.now()))
	}
}

// WithLedger sets the client of the provisioning ledger Config.LedgerTable names. Without it only duplicates
// this execution environment has seen are dropped.
func WithLedger(api LedgerAPI) Option { return func(h *Handler) { h.ledger = api } }

// WithQueues sets the SQS client: retirements go to Config.RetirementQueueURL (see WithRetirementQueue), the
// reconciler queues events on Config.RegistrationQueueURL, and retirement waits while that queue has a backlog.
func WithQueues(api QueueAPI) Option {
	return func(h *Handler) {
		h.queues = api
		if h.cfg.RetirementQueueURL != "" {
			h.retirements = sqsRetirements{api: api, url: h.cfg.RetirementQueueURL}
		}
	}
}

// sqsRetirements queues retirement requests on the retirement queue.
type sqsRetirements struct {
	api QueueAPI
	url string
}

func (q sqsRetirements) QueueRetirement(ctx context.Context, req contract.RetirementRequest) error {
	body, _ := json.Marshal(req)
	_, err := q.api.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.url), MessageBody: aws.String(string(body))})
	return err
}

// HandleRegistrations handles a batch of registered events from the registration queue's event source mapping.
// Each certificate is handled by one delivery at a time: a duplicate (in the batch, settled here earlier, or
// claimed in the ledger by another delivery) is dropped before any AWS IoT call. It reports the records a retry
// can help (ReportBatchItemFailures): they come back after the short delay putBack gives each (not the queue's
// visibility timeout, six times the function's), and go to the dead-letter queue after its maxReceiveCount.
func (h *Handler) HandleRegistrations(ctx context.Context, batch events.SQSEvent) (events.SQSEventResponse, error) {
	var (
		failed    failures
		wg        sync.WaitGroup
		slots     = make(chan struct{}, batchParallelism)
		seen      = map[string]bool{}
		malformed int
		outcome   batchOutcome
		room      = h.fits(ctx, registrationCalls)
		slice     = h.slice(registrationCalls)
	)
	type record struct {
		m events.SQSMessage
		e Event
	}
	var todo []record
	for _, m := range batch.Records {
		var e Event
		if err := json.Unmarshal([]byte(m.Body), &e); err != nil {
			_ = h.Handle(ctx, Event{}) // refused (logged, counted): nothing a retry can change
			malformed++
			continue
		}
		// A duplicate names the same certificate, CA and account: an event that differs (refused or ignored) must
		// not hide the certificate's own event.
		key := e.CertificateID + "/" + e.CACertificateID + "/" + e.AWSAccountID + "/" + e.CertificateStatus
		if seen[key] || h.recent.contains(e.CertificateID, h.now()) {
			continue
		}
		seen[key] = true
		todo = append(todo, record{m, e})
	}
	// Every record not to be handled is stale: malformed, or a duplicate; those handled add theirs as found.
	mix := h.mix.begin(len(batch.Records), len(batch.Records)-len(todo))
	defer h.mix.end(mix)
	defer h.takeIdleShares(ctx, len(batch.Records))()
	for _, r := range todo {
		switch {
		case room == 0:
			// Not started: back in the queue before the deadline rather than cut short in the middle.
			outcome.handedBack++
			failed.add(r.m, handBackDelay)
			continue
		case slice == 0:
			// More than this batch's share of the work: back at once, for an environment that is free.
			outcome.handedBack++
			failed.add(r.m, 0)
			continue
		}
		room--
		slice--
		wg.Add(1)
		slots <- struct{}{}
		go func(m events.SQSMessage, e Event) {
			defer func() { <-slots; wg.Done() }()
			dup, err := h.registerOnce(ctx, e)
			if dup {
				mix.stale.Add(1)
			}
			switch {
			case errors.Is(err, errClaimedElsewhere):
				failed.add(m, claimRecheck)
			case err != nil:
				// Back in a few seconds rather than after the queue's visibility timeout: a batch cut short by the
				// function's deadline must not leave its devices waiting minutes.
				if cutByDeadline(err) {
					outcome.cut.Store(true)
				}
				h.log.Warn("registered event left for a retry", "certificateId", loggableID(e.CertificateID), "error", err.Error())
				failed.add(m, retryDelay)
			}
		}(r.m, r.e)
	}
	wg.Wait()
	h.putBack(ctx, h.cfg.RegistrationQueueURL, failed.later)
	h.report(&outcome, map[string]int{contract.MetricDuplicate: int(mix.stale.Load()) - malformed})
	return failed.resp, nil
}

// failures collects, from the goroutines of one batch, the records reported as batch item failures and when each
// is to come back.
type failures struct {
	mu    sync.Mutex
	resp  events.SQSEventResponse
	later []sqstypes.ChangeMessageVisibilityBatchRequestEntry
}

// add reports m as failed, to come back after the given delay (its visibility timeout is shortened to it, see
// putBack).
func (f *failures) add(m events.SQSMessage, after time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resp.BatchItemFailures = append(f.resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
	f.later = append(f.later, sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(len(f.later))),
		ReceiptHandle: aws.String(m.ReceiptHandle), VisibilityTimeout: int32(after / time.Second)})
}

// putBack shortens the visibility timeout of messages reported as batch item failures, so they come back after
// the delay each entry names rather than after the queue's visibility timeout (six times the function's). SQS takes
// at most sqsBatchEntries entries per ChangeMessageVisibilityBatch and refuses a longer one whole.
func (h *Handler) putBack(ctx context.Context, queueURL string, entries []sqstypes.ChangeMessageVisibilityBatchRequestEntry) {
	if h.queues == nil || queueURL == "" {
		return
	}
	for chunk := range slices.Chunk(entries, sqsBatchEntries) {
		out, err := h.queues.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(queueURL), Entries: chunk})
		switch {
		case err != nil:
			h.log.Warn("messages put back keep the queue's visibility timeout", "messages", len(chunk), "error", err.Error())
		case len(out.Failed) > 0:
			h.log.Warn("messages put back keep the queue's visibility timeout", "messages", len(out.Failed), "error", aws.ToString(out.Failed[0].Message))
		}
	}
}

// sqsBatchEntries is the most entries SQS takes in one batch action.
const sqsBatchEntries = 10

// errClaimedElsewhere says another delivery of the same certificate's event holds the ledger claim: this one is
// put back, and dropped when it comes again if that delivery settled the certificate (or handled if it failed).
var errClaimedElsewhere = errors.New("another delivery of the certificate's event is being handled")

// registerOnce claims the event's certificate in the ledger and handles the event; dup reports that another
// delivery settled the certificate (the event is dropped). The ledger records only what was done to the
// certificate: an event refused or ignored before any call (malformed, a CA not the stack's) takes no claim, and
// one that did nothing to it (left PENDING, ignored after DescribeCertificate, failed) puts the entry back as it
// was, so the certificate's genuine event is never dropped as its duplicate.
func (h *Handler) registerOnce(ctx context.Context, e Event) (dup bool, err error) {
	id := e.CertificateID
	if _, ours := h.cfg.CAs[e.CACertificateID]; e.Validate() != nil || !ours {
		return false, h.Handle(ctx, e) // refused or ignored, and counted: nothing for the ledger
	}
	c, err := h.claim(ctx, id)
	switch {
	case err != nil:
		return false, err
	case c.outcome == settledElsewhere:
		h.recent.add(id, h.now().Add(recentFor))
		return true, nil
	case c.outcome == heldElsewhere:
		// Dropping it would lose the event if that delivery fails and this is the same SQS message delivered
		// twice; its retry costs a receive, never an AWS IoT call.
		return true, errClaimedElsewhere
	}
	untouched, err := h.handle(ctx, e, c.reregistered)
	if err != nil || untouched {
		// A later delivery must run again: a retry of this one, or the event of the device's next attempt.
		if relErr := h.release(ctx, id, c); relErr != nil {
			h.log.Warn("ledger claim not released; it lapses after its lease", "certificateId", id, "error", relErr.Error())
		}
		return false, err
	}
	if err := h.settle(ctx, id); err != nil {
		h.log.Warn("ledger claim not settled; it lapses after its lease", "certificateId", id, "error", err.Error())
	}
	h.recent.add(id, h.now().Add(recentFor))
	return false, nil
}

func (h *Handler) ledgerOn() bool { return h.ledger != nil && h.cfg.LedgerTable != "" }

func ledgerKey(id string) map[string]ddbtypes.AttributeValue {
	return map[string]ddbtypes.AttributeValue{contract.LedgerKey: &ddbtypes.AttributeValueMemberS{Value: id}}
}

func unixAttr(t time.Time) ddbtypes.AttributeValue {
	return &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(t.Unix(), 10)}
}

// claimOutcome is what a claim found.
type claimOutcome int

const (
	claimed          claimOutcome = iota // this delivery handles the event
	settledElsewhere                     // another delivery settled the certificate
	heldElsewhere                        // another delivery is handling it
)

// ledgerClaim is what a claim found and wrote: release puts the entry back as it was.
type ledgerClaim struct {
	outcome claimOutcome
	// until is the lease this delivery wrote (Unix seconds): release and settle touch the item only while it holds.
	until int64
	// prior is the item before the claim, nil when there was none.
	prior map[string]ddbtypes.AttributeValue
	// reregistered says a retirement deleted the certificate after it was handled: the event is about a new
	// registration of it (the device presented it again).
	reregistered bool
}

// claimAttrs are the attributes a claim writes, which release restores.
var claimAttrs = []string{contract.LedgerState, contract.LedgerLeaseUntil, contract.LedgerExpiresAt}

// claim takes the certificate's ledger item for this delivery: it must be absent, an inflight claim whose lease
// ran out, or the mark of a certificate a retirement deleted. One conditional write, so two deliveries never both
// win; a lost race reads the item's state from the refusal itself, a won one what it replaced.
func (h *Handler) claim(ctx context.Context, id string) (ledgerClaim, error) {
	if !h.ledgerOn() {
		return ledgerClaim{outcome: claimed}, nil
	}
	now := h.now()
	c := ledgerClaim{outcome: claimed, until: now.Add(claimLease).Unix()}
	out, err := h.ledger.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(h.cfg.LedgerTable),
		Key:                 ledgerKey(id),
		UpdateExpression:    aws.String("SET #s = :inflight, #u = :until, #x = :expires"),
		ConditionExpression: aws.String("attribute_not_exists(#k) OR (#s = :inflight AND #u < :now) OR #s = :deleted"),
		ExpressionAttributeNames: map[string]string{"#k": contract.LedgerKey, "#s": contract.LedgerState,
			"#u": contract.LedgerLeaseUntil, "#x": contract.LedgerExpiresAt},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{
			":inflight": &ddbtypes.AttributeValueMemberS{Value: contract.LedgerInflight},
			":deleted":  &ddbtypes.AttributeValueMemberS{Value: contract.LedgerDeleted},
			":until":    &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(c.until, 10)}, ":now": unixAttr(now),
			":expires": unixAttr(now.Add(ledgerRetention)),
		},
		ReturnValues:                        ddbtypes.ReturnValueAllOld,
		ReturnValuesOnConditionCheckFailure: ddbtypes.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var failed *ddbtypes.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		if st, ok := failed.Item[contract.LedgerState].(*ddbtypes.AttributeValueMemberS); ok && st.Value == contract.LedgerDone {
			return ledgerClaim{outcome: settledElsewhere}, nil
		}
		return ledgerClaim{outcome: heldElsewhere}, nil
	}
	if err != nil {
		return ledgerClaim{}, fmt.Errorf("claim certificate %s in the ledger: %w", id, err)
	}
	if len(out.Attributes) > 0 {
		c.prior = out.Attributes
		st, _ := c.prior[contract.LedgerState].(*ddbtypes.AttributeValueMemberS)
		c.reregistered = st != nil && st.Value == contract.LedgerDeleted
	}
	return c, nil
}

// release gives a claim up, putting back what the claim replaced (nothing, a lapsed claim with its retirement
// record, a deleted certificate's mark), so the next delivery of the certificate is handled as this one was.
// A claim whose lease ran out and was taken over is left to its new holder.
func (h *Handler) release(ctx context.Context, id string, c ledgerClaim) error {
	if !h.ledgerOn() {
		return nil
	}
	names := map[string]string{"#s": contract.LedgerState, "#u": contract.LedgerLeaseUntil}
	values := map[string]ddbtypes.AttributeValue{
		":inflight": &ddbtypes.AttributeValueMemberS{Value: contract.LedgerInflight},
		":mine":     &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(c.until, 10)},
	}
	mine := aws.String("#s = :inflight AND #u = :mine")
	var err error
	if c.prior == nil {
		_, err = h.ledger.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(h.cfg.LedgerTable), Key: ledgerKey(id),
			ConditionExpression: mine, ExpressionAttributeNames: names, ExpressionAttributeValues: values})
	} else {
		var set, remove []string
		for i, attr := range claimAttrs {
			ref, val := "#a"+strconv.Itoa(i), ":a"+strconv.Itoa(i)
			names[ref] = attr
			if v, ok := c.prior[attr]; ok {
				set = append(set, ref+" = "+val)
				values[val] = v
			} else {
				remove = append(remove, ref)
			}
		}
		update := ""
		if len(set) > 0 {
			update = "SET " + strings.Join(set, ", ")
		}
		if len(remove) > 0 {
			update += " REMOVE " + strings.Join(remove, ", ")
		}
		_, err = h.ledger.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(h.cfg.LedgerTable), Key: ledgerKey(id),
			UpdateExpression: aws.String(strings.TrimSpace(update)), ConditionExpression: mine,
			ExpressionAttributeNames: names, ExpressionAttributeValues: values})
	}
	var failed *ddbtypes.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return nil
	}
	return err
}

// settle marks the certificate handled: later deliveries of its event are duplicates.
func (h *Handler) settle(ctx context.Context, id string) error {
	if !h.ledgerOn() {
		return nil
	}
	_, err := h.ledger.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(h.cfg.LedgerTable),
		Key:                       ledgerKey(id),
		UpdateExpression:          aws.String("SET #s = :done REMOVE #u"),
		ExpressionAttributeNames:  map[string]string{"#s": contract.LedgerState, "#u": contract.LedgerLeaseUntil},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":done": &ddbtypes.AttributeValueMemberS{Value: contract.LedgerDone}},
	})
	return err
}

// markDeleted records that a retirement deleted the certificate. AWS IoT registers it anew if the device presents
// it again, and that event must then be handled (the certificate revoked), not dropped as a duplicate of the
// certificate's earlier settlement. An inflight claim (the certificate's own event, being handled) is left alone.
// The certificate's own retirement request leaves the pending ones: the newer certificate's covers the device.
func (h *Handler) markDeleted(ctx context.Context, id string) error {
	h.recent.remove(id)
	if !h.ledgerOn() {
		return nil
	}
	_, err := h.ledger.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(h.cfg.LedgerTable),
		Key:                       ledgerKey(id),
		UpdateExpression:          aws.String("SET #s = :deleted REMOVE #p"),
		ConditionExpression:       aws.String("#s = :done"),
		ExpressionAttributeNames:  map[string]string{"#s": contract.LedgerState, "#p": contract.LedgerRetirementPending},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":done": &ddbtypes.AttributeValueMemberS{Value: contract.LedgerDone}, ":deleted": &ddbtypes.AttributeValueMemberS{Value: contract.LedgerDeleted}},
	})
	var failed *ddbtypes.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return nil // no settled entry: nothing would drop the certificate's next event
	}
	return err
}

// noteRetirement records in the ledger item of the request's certificate whether its device's older
// certificates are retired yet, with the request, so the reconciler can queue it again. A pending retirement is
// in the ledger's sparse index (contract.LedgerRetirementPending set), a done one leaves it.
func (h *Handler) noteRetirement(ctx context.Context, req contract.RetirementRequest, retired bool) error {
	if !h.ledgerOn() {
		return nil
	}
	body, _ := json.Marshal(req)
	update := "SET #r = :retired, #t = :request, #q = :at, #p = :pending"
	values := map[string]ddbtypes.AttributeValue{
		":retired": &ddbtypes.AttributeValueMemberBOOL{Value: retired},
		":request": &ddbtypes.AttributeValueMemberS{Value: string(body)},
		":at":      unixAttr(h.now()),
		":pending": &ddbtypes.AttributeValueMemberS{Value: contract.LedgerPending},
	}
	if retired {
		update = "SET #r = :retired, #t = :request, #q = :at REMOVE #p"
		delete(values, ":pending")
	}
	_, err := h.ledger.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(h.cfg.LedgerTable),
		Key:                 ledgerKey(req.CertificateID),
		UpdateExpression:    aws.String(update),
		ConditionExpression: aws.String("attribute_exists(#k)"),
		ExpressionAttributeNames: map[string]string{"#k": contract.LedgerKey, "#r": contract.LedgerRetired,
			"#t": contract.LedgerRetirement, "#q": contract.LedgerQueuedAt, "#p": contract.LedgerRetirementPending},
		ExpressionAttributeValues: values,
	})
	var failed *ddbtypes.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return nil // no claim was recorded for this certificate (ledger off when it was handled, or expired)
	}
	return err
}

// HandleRetirements handles a batch from the retirement queue's event source mapping. Activation comes first on
// every API both spend: while registered events wait in the registration queue or are in flight, a retirement
// gives way — put back whole (a batch item failure whose visibility timeout is shortened to its deferral)
// before it starts, or at its next DescribeCertificate or UpdateCertificate if registrations appear while it runs
// (its calls carry giveWayToRegistrations as their admission check). The first receive of a device whose thing its
// activation created (contract.RetirementRequest.NewThing) starts during a backlog too: it lists the thing's
// principals, which no activation slot pays for, and is done when nothing older is attached, or gives way at its
// first DescribeCertificate. A retirement older than retirementGrace still runs during a backlog, one per
// retirementRation in each execution environment, so a backlog that never drains cannot starve it and it cannot
// starve activations. A queue that has just drained (one empty reading) puts the batch back for handBackDelay: it
// may be a moment between two batches of a storm.
func (h *Handler) HandleRetirements(ctx context.Context, batch events.SQSEvent) (events.SQSEventResponse, error) {
	var (
		failed   failures
		wg       sync.WaitGroup
		slots    = make(chan struct{}, batchParallelism)
		deferred atomic.Int32
		outcome  batchOutcome
		room     = h.fits(ctx, retirementCalls)
	)
	busy, _ := h.registrationBacklog(ctx)
	drained := !busy && h.registrationsJustDrained(ctx)
	for _, m := range batch.Records {
		var req contract.RetirementRequest
		if err := json.Unmarshal([]byte(m.Body), &req); err != nil || req.Thing == "" || !isHexID(req.CertificateID) {
			h.log.Warn("retirement request unreadable, dropped", "step", "rotate", "messageId", clip(m.MessageId))
			continue
		}
		if drained {
			// Back in a moment, when a second reading says whether the storm is over.
			deferred.Add(1)
			failed.add(m, handBackDelay)
			continue
		}
		rctx := iotapi.WithAdmission(ctx, h.giveWayToRegistrations)
		if busy {
			switch {
			case h.now().Sub(sentAt(m)) >= retirementGrace && room > 0 && h.ration.take(h.now()):
				// Its ration: it runs to its end, backlog or not.
				rctx = iotapi.WithoutAdmission(ctx)
			case req.NewThing && firstReceive(m) && room > 0:
				// Its list most likely finds nothing older (see above); only at its first receive, so a
				// retirement put back lists no more.
			default:
				deferred.Add(1)
				failed.add(m, h.deferral(m))
				continue
			}
		}
		if room == 0 {
			// Not started: never a retirement cut short between its deactivation and its deletion.
			outcome.handedBack++
			failed.add(m, handBackDelay)
			continue
		}
		room--
		wg.Add(1)
		slots <- struct{}{}
		go func(m events.SQSMessage, req contract.RetirementRequest) {
			defer func() { <-slots; wg.Done() }()
			err := h.Retire(rctx, req)
			switch {
			case errors.Is(err, errGiveWay):
				// Registered events arrived: what is left of it (all of it, or the certificates after the one it
				// finished) waits for them, as a retirement that found a backlog at the start.
				deferred.Add(1)
				failed.add(m, h.deferral(m))
				return
			case err != nil:
				// Back in a few seconds, as a registration: a retirement cut short by the deadline (its paced calls
				// refused for lack of time) is finished by the next delivery, not after the visibility timeout.
				if cutByDeadline(err) {
					outcome.cut.Store(true)
				}
				h.log.Warn("retirement left for a retry", "step", "rotate", "thingName", req.Thing, "error", err.Error())
				failed.add(m, retryDelay)
				return
			}
			if err := h.noteRetirement(ctx, req, true); err != nil {
				h.log.Warn("retirement done, ledger not updated (the reconciler may queue it again; harmless)", "error", err.Error())
			}
		}(m, req)
	}
	wg.Wait()
	h.putBack(ctx, h.cfg.RetirementQueueURL, failed.later)
	h.report(&outcome, map[string]int{contract.MetricRetirementDeferred: int(deferred.Load())})
	return failed.resp, nil
}

// deferral is how long a retirement put back during a registration backlog stays invisible: as long as the
// backlog has lasted (backlogAge), or as the retirement has waited since it was queued if that is longer; at least
// retirementDelay, at most retirementMaxDelay. A storm's backlog lasts about its fleet ÷ the activation rate, and
// a fixed delay put each retirement back once per delay of it: receives, invocations and visibility changes that
// grew with the square of the fleet (10 000 devices at a 1-minute cap: 69 916 put-backs, about seven per device).
// Put back for the backlog's age, a retirement queued at t of a backlog that ends at T comes back at 2t, 4t, …:
// about two put-backs per retirement whatever the fleet, and back by 2T at the latest, spread over (T, 2T], which
// is the quotas' pace for the retirement work (as many retirements as activations, in the same time).
func (h *Handler) deferral(m events.SQSMessage) time.Duration {
	wait := h.backlogAge()
	if sent := sentAt(m); !sent.IsZero() {
		wait = max(wait, h.now().Sub(sent))
	}
	return min(max(wait.Truncate(time.Second), retirementDelay), retirementMaxDelay)
}

// firstReceive reports whether this is the message's first delivery (its ApproximateReceiveCount attribute);
// true when the attribute is absent.
func firstReceive(m events.SQSMessage) bool {
	n, err := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
	return err != nil || n <= 1
}

// sentAt is when SQS received the message (its SentTimestamp attribute, Unix milliseconds); the zero time when
// absent, which counts as old.
func sentAt(m events.SQSMessage) time.Time {
	ms, err := strconv.ParseInt(m.Attributes["SentTimestamp"], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// record starts a metric record of the handler's dimension.
func (h *Handler) record() *metricRecord {
	rec := newMetricRecord(h.cfg.MetricsNamespace)
	rec.dimensions[contract.MetricDimension] = h.cfg.ProvisionedBy
	return rec
}

// recentSet remembers certificates this execution environment found settled or claimed elsewhere, until a
// time, so their duplicates cost not even a ledger read.
type recentSet struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// recentSetLimit bounds the memory of a long-lived execution environment.
const recentSetLimit = 100_000

func newRecentSet() *recentSet { return &recentSet{until: map[string]time.Time{}} }

func (r *recentSet) add(id string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.until) >= recentSetLimit {
		r.until = map[string]time.Time{}
	}
	r.until[id] = until
}

func (r *recentSet) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.until, id)
}

func (r *recentSet) contains(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.until[id]
	return ok && now.Before(u)
}
