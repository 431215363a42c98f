package jitr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// CAListAPI is the AWS IoT call the reconciler adds to the handler's: the certificates of one CA, a page at a
// time.
type CAListAPI interface {
	ListCertificatesByCA(ctx context.Context, in *iot.ListCertificatesByCAInput, optFns ...func(*iot.Options)) (*iot.ListCertificatesByCAOutput, error)
}

// Reconcile is the scheduled reconciler. It finishes what the event path left undone after an outage, a purged
// queue or a dead-letter queue: certificates of the stack's CAs still PENDING_ACTIVATION reconcileAfter after
// their registration get their registered event queued again, and devices whose older certificates were not
// retired reconcileAfter after their retirement was queued get it queued again. The work itself runs through the
// queues, at their pace and within the quotas; the reconciler spends one ListCertificatesByCA per 250
// certificates (paced by the same client) and a ledger scan. It does nothing while registered events are queued.
func (h *Handler) Reconcile(ctx context.Context, api CAListAPI) error {
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
	pending, err := h.requeuePending(ctx, api)
	rec.count(contract.MetricRequeued, pending)
	if err != nil {
		return err
	}
	retirements, err := h.requeueRetirements(ctx)
	rec.count(contract.MetricRequeued, retirements)
	h.log.Info("reconciled", "step", "reconcile", "pendingRequeued", pending, "retirementsRequeued", retirements)
	return err
}

// requeuePending queues a registered event for each certificate of the stack's CAs left PENDING_ACTIVATION.
func (h *Handler) requeuePending(ctx context.Context, api CAListAPI) (int, error) {
	n := 0
	for caID := range h.cfg.CAs {
		pages := iot.NewListCertificatesByCAPaginator(api, &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(caID), PageSize: aws.Int32(250)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return n, fmt.Errorf("list the certificates of CA %s: %w", caID, err)
			}
			for _, c := range page.Certificates {
				if c.Status != types.CertificateStatusPendingActivation || c.CreationDate == nil || h.now().Sub(*c.CreationDate) < reconcileAfter {
					continue
				}
				id := aws.ToString(c.CertificateId)
				// A settled certificate is a duplicate to the registration path: forget it so the event is
				// handled again (its claim is taken anew; an inflight claim still wins).
				if err := h.forgetSettled(ctx, id); err != nil {
					return n, err
				}
				body, _ := json.Marshal(contract.RegisteredEvent{
					CertificateID: id, CACertificateID: caID, Timestamp: contract.EpochMillis(h.now().UnixMilli()),
					CertificateStatus: string(c.Status), AWSAccountID: accountOfARN(aws.ToString(c.CertificateArn)),
				})
				if _, err := h.queues.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(h.cfg.RegistrationQueueURL), MessageBody: aws.String(string(body))}); err != nil {
					return n, fmt.Errorf("queue the registered event of pending certificate %s: %w", id, err)
				}
				h.log.Info("pending certificate's event queued again", "step", "reconcile", "certificateId", id)
				n++
			}
		}
	}
	return n, nil
}

// forgetSettled deletes a certificate's ledger item unless it is an inflight claim.
func (h *Handler) forgetSettled(ctx context.Context, id string) error {
	if !h.ledgerOn() {
		return nil
	}
	_, err := h.ledger.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(h.cfg.LedgerTable), Key: ledgerKey(id),
		ConditionExpression:       aws.String("attribute_not_exists(#k) OR #s = :done"),
		ExpressionAttributeNames:  map[string]string{"#k": contract.LedgerKey, "#s": contract.LedgerState},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":done": &ddbtypes.AttributeValueMemberS{Value: contract.LedgerDone}},
	})
	var failed *ddbtypes.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &failed) {
		return fmt.Errorf("forget settled certificate %s in the ledger: %w", id, err)
	}
	return nil
}

// requeueRetirements queues again the retirements the ledger says were queued long ago and never finished.
func (h *Handler) requeueRetirements(ctx context.Context) (int, error) {
	if !h.ledgerOn() {
		return 0, nil
	}
	n := 0
	in := &dynamodb.ScanInput{
		TableName:        aws.String(h.cfg.LedgerTable),
		FilterExpression: aws.String("#r = :false AND #q < :before"),
		ExpressionAttributeNames: map[string]string{"#r": contract.LedgerRetired, "#q": contract.LedgerQueuedAt,
			"#t": contract.LedgerRetirement},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{
			":false": &ddbtypes.AttributeValueMemberBOOL{Value: false}, ":before": unixAttr(h.now().Add(-reconcileAfter)),
		},
		ProjectionExpression: aws.String("#t"),
	}
	for pages := dynamodb.NewScanPaginator(h.ledger, in); pages.HasMorePages(); {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("scan the ledger for unfinished retirements: %w", err)
		}
		for _, item := range page.Items {
			s, ok := item[contract.LedgerRetirement].(*ddbtypes.AttributeValueMemberS)
			var req contract.RetirementRequest
			if !ok || json.Unmarshal([]byte(s.Value), &req) != nil || req.Thing == "" {
				continue
			}
			if err := h.retirements.QueueRetirement(ctx, req); err != nil {
				return n, fmt.Errorf("queue the retirement of thing %s again: %w", req.Thing, err)
			}
			if err := h.noteRetirement(ctx, req, false); err != nil {
				return n, fmt.Errorf("note the retirement of thing %s: %w", req.Thing, err)
			}
			h.log.Info("unfinished retirement queued again", "step", "reconcile", "thingName", req.Thing,
				"certificateId", req.CertificateID, "queuedAt", strconv.FormatInt(h.now().Unix(), 10))
			n++
		}
	}
	return n, nil
}
