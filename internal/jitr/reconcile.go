package jitr

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// reconcilePage is how many pending retirements one read of the ledger's index returns at most.
const reconcilePage = 100

// Reconcile is the scheduled reconciler. It finishes what the event path left undone after an outage, a purged
// queue or a dead-letter queue: devices whose older certificates were not retired retirementLostAfter after their
// retirement was queued get it queued again. Its cost grows with that work, not with the fleet: it reads the
// ledger's sparse index of pending retirements (contract.LedgerRetirementIndex), which holds only the certificates
// whose retirement is not done, oldest first. A certificate left PENDING_ACTIVATION needs no reconciler: AWS IoT
// publishes its registered event again at every connection attempt of the device. The work itself runs through
// the retirement queue, at its pace and within the quotas. It does nothing while registered events are queued.
func (h *Handler) Reconcile(ctx context.Context) error {
	rec := h.record()
	defer func() { h.metrics.writeLine(rec.encode(h.now())) }()
	if h.queues == nil || h.cfg.RegistrationQueueURL == "" || h.cfg.RetirementQueueURL == "" {
		return fmt.Errorf("reconcile: the queues are not configured (%s, %s)", contract.EnvRegistrationQueueURL, contract.EnvRetirementQueueURL)
	}
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-deadlineMargin))
		defer cancel()
	}
	busy, err := h.registrationBacklog(ctx)
	if err != nil {
		return err
	}
	if busy {
		h.log.Info("reconciler skipped: registered events are queued", "step", "reconcile", "outcome", "deferred")
		return nil
	}
	retirements, reads, err := h.requeueRetirements(ctx)
	rec.count(contract.MetricRequeued, retirements)
	// reconcileReads is the ledger items this pass read: the work left, never the fleet.
	h.log.Info("reconciled", "step", "reconcile", "retirementsRequeued", retirements, "reconcileReads", reads)
	return err
}

// requeueRetirements queues again the retirements the ledger's index says were queued long ago and are not done,
// and reports how many ledger items it read.
func (h *Handler) requeueRetirements(ctx context.Context) (n, reads int, err error) {
	if !h.ledgerOn() {
		return 0, 0, nil
	}
	in := &dynamodb.QueryInput{
		TableName:              aws.String(h.cfg.LedgerTable),
		IndexName:              aws.String(contract.LedgerRetirementIndex),
		KeyConditionExpression: aws.String("#p = :pending AND #q < :before"),
		ExpressionAttributeNames: map[string]string{"#p": contract.LedgerRetirementPending, "#q": contract.LedgerQueuedAt,
			"#t": contract.LedgerRetirement},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{
			":pending": &ddbtypes.AttributeValueMemberS{Value: contract.LedgerPending}, ":before": unixAttr(h.now().Add(-retirementLostAfter)),
		},
		ProjectionExpression: aws.String("#t"),
		Limit:                aws.Int32(reconcilePage),
	}
	for pages := dynamodb.NewQueryPaginator(h.ledger, in); pages.HasMorePages(); {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return n, reads, fmt.Errorf("read the ledger's pending retirements: %w", err)
		}
		reads += int(page.ScannedCount)
		for _, item := range page.Items {
			s, ok := item[contract.LedgerRetirement].(*ddbtypes.AttributeValueMemberS)
			var req contract.RetirementRequest
			if !ok || json.Unmarshal([]byte(s.Value), &req) != nil || req.Thing == "" {
				continue
			}
			if err := h.retirements.QueueRetirement(ctx, req); err != nil {
				return n, reads, fmt.Errorf("queue the retirement of thing %s again: %w", req.Thing, err)
			}
			if err := h.noteRetirement(ctx, req, false); err != nil {
				return n, reads, fmt.Errorf("note the retirement of thing %s: %w", req.Thing, err)
			}
			h.log.Info("unfinished retirement queued again", "step", "reconcile", "thingName", req.Thing,
				"certificateId", req.CertificateID, "queuedAt", strconv.FormatInt(h.now().Unix(), 10))
			n++
		}
	}
	return n, reads, nil
}
