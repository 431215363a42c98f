// Package jitr provisions Azure Sphere devices on AWS IoT Core just in time: for each certificate AWS IoT
// auto-registers under one of the stack's CAs it checks the certificate, creates the device's thing, attaches
// the device policy and the thing, activates the certificate and retires the device's older certificates.
// Every step is idempotent and ordered so that a retry after a failure at any point completes the work and no
// certificate is ever ACTIVE without its thing and policy. The Lambda in lambda/jitr only wires it up; the
// local emulator and the teardown tests call it directly.
package jitr

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

// IoTAPI is the part of the AWS IoT control plane the handler uses, with the SDK's exact signatures.
type IoTAPI interface {
	DescribeCertificate(ctx context.Context, in *iot.DescribeCertificateInput, optFns ...func(*iot.Options)) (*iot.DescribeCertificateOutput, error)
	UpdateCertificate(ctx context.Context, in *iot.UpdateCertificateInput, optFns ...func(*iot.Options)) (*iot.UpdateCertificateOutput, error)
	DeleteCertificate(ctx context.Context, in *iot.DeleteCertificateInput, optFns ...func(*iot.Options)) (*iot.DeleteCertificateOutput, error)
	CreateThing(ctx context.Context, in *iot.CreateThingInput, optFns ...func(*iot.Options)) (*iot.CreateThingOutput, error)
	AttachPolicy(ctx context.Context, in *iot.AttachPolicyInput, optFns ...func(*iot.Options)) (*iot.AttachPolicyOutput, error)
	DetachPolicy(ctx context.Context, in *iot.DetachPolicyInput, optFns ...func(*iot.Options)) (*iot.DetachPolicyOutput, error)
	AttachThingPrincipal(ctx context.Context, in *iot.AttachThingPrincipalInput, optFns ...func(*iot.Options)) (*iot.AttachThingPrincipalOutput, error)
	DetachThingPrincipal(ctx context.Context, in *iot.DetachThingPrincipalInput, optFns ...func(*iot.Options)) (*iot.DetachThingPrincipalOutput, error)
	ListThingPrincipals(ctx context.Context, in *iot.ListThingPrincipalsInput, optFns ...func(*iot.Options)) (*iot.ListThingPrincipalsOutput, error)
}

var _ IoTAPI = (*iot.Client)(nil)

// DenyListAPI is the DynamoDB call the handler makes: one GetItem on the deny-list table per event.
type DenyListAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}

var _ DenyListAPI = (*dynamodb.Client)(nil)

// deadlineMargin is kept free before the Lambda deadline so the handler returns its own error (and the async
// retry applies) instead of being cut off in the middle of an API call.
const deadlineMargin = 500 * time.Millisecond

// RetirementQueue takes the deferred retirement of a device's older certificates (the retirement queue, whose
// event source mapping calls Retire).
type RetirementQueue interface {
	QueueRetirement(ctx context.Context, req contract.RetirementRequest) error
}

// Handler handles certificate-registered events. It is safe for concurrent use.
type Handler struct {
	api         IoTAPI
	deny        DenyListAPI
	retirements RetirementQueue
	ledger      LedgerAPI
	queues      QueueAPI
	recent      *recentSet
	cfg         Config
	log         *slog.Logger
	metrics     *lockedWriter
	now         func() time.Time
	pacing      QuotaShares
	depth       depthWatch
	depthTTL    time.Duration
	ticker      func(time.Duration) (<-chan time.Time, func())
	ration      rationing
	mix         batchMix
}

// Option customises a Handler.
type Option func(*Handler)

// WithLogger sets the structured logger (default: JSON to stdout).
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// WithMetricsOutput sets where the embedded-metric-format records go (default: stdout, which Lambda ships to
// CloudWatch Logs, where they become metrics).
func WithMetricsOutput(w io.Writer) Option {
	return func(h *Handler) { h.metrics = &lockedWriter{w: w} }
}

// WithDenyList sets the client of the deny-list table Config.DenyListTable names. Without it (or without a table
// name) no device is denied: the Lambda always wires both.
func WithDenyList(api DenyListAPI) Option { return func(h *Handler) { h.deny = api } }

// WithRetirementQueue defers retirements to q: Handle returns once the certificate is active and q holds the
// retirement of the device's older certificates. Without it Handle retires them itself, right after the
// activation (one call does the whole rotation).
func WithRetirementQueue(q RetirementQueue) Option { return func(h *Handler) { h.retirements = q } }

// WithClock sets the clock used for certificate validity and the provisionedAt attribute.
func WithClock(now func() time.Time) Option { return func(h *Handler) { h.now = now } }

// NewHandler returns a handler that provisions through api as cfg describes.
func NewHandler(api IoTAPI, cfg Config, opts ...Option) *Handler {
	h := &Handler{
		api:      api,
		cfg:      cfg,
		log:      slog.New(slog.NewJSONHandler(os.Stdout, nil)),
		metrics:  &lockedWriter{w: os.Stdout},
		now:      time.Now,
		recent:   newRecentSet(),
		ticker:   realTicker,
		depthTTL: depthTTL,
	}
	if h.cfg.MetricsNamespace == "" {
		h.cfg.MetricsNamespace = contract.MetricsNamespace
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Handle provisions the certificate the event names. It returns nil when the event is settled (provisioned,
// refused, ignored) and an error only when a retry can help (throttling that outlasted the retryer, 5xx, a
// deadline): the asynchronous invocation retries it and then sends it to the dead-letter queue.
func (h *Handler) Handle(ctx context.Context, e Event) error {
	_, err := h.handle(ctx, e, false)
	return err
}

// handle is Handle, also reporting whether the event did nothing to the certificate (left PENDING for a later
// event, or ignored). reregistered says the ledger knows the certificate was deleted by a retirement after it was
// handled: the device presented it again and AWS IoT registered it anew.
func (h *Handler) handle(ctx context.Context, e Event, reregistered bool) (untouched bool, err error) {
	start := h.now()
	// Ids reach log lines and metric properties only in their checked form: an event field is attacker-sized
	// until validated.
	certID, caID := loggableID(e.CertificateID), loggableID(e.CACertificateID)
	run := &provisioning{
		h:            h,
		e:            e,
		rec:          newMetricRecord(h.cfg.MetricsNamespace),
		log:          h.log.With("certificateId", certID, "caCertificateId", caID),
		reregistered: reregistered,
	}
	run.rec.dimensions[contract.MetricDimension] = h.cfg.ProvisionedBy
	run.rec.properties["certificateId"] = certID
	defer func() {
		run.rec.duration("Handler", h.now().Sub(start))
		h.metrics.writeLine(run.rec.encode(h.now()))
	}()

	if err := e.Validate(); err != nil {
		run.log.Warn("event refused", "step", "validate", "reason", err.Error())
		run.rec.count(contract.MetricRefused, 1)
		return true, nil
	}
	ca, ok := h.cfg.CAs[e.CACertificateID]
	if !ok {
		run.log.Info("event ignored", "step", "validate", "reason", "the CA is not one this stack registered")
		run.rec.count(contract.MetricIgnored, 1)
		return true, nil
	}
	run.ca = ca
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-deadlineMargin))
		defer cancel()
	}
	err = run.provision(ctx)
	return run.untouched, err
}

// provisioning is the state of one Handle call.
type provisioning struct {
	h   *Handler
	e   Event
	ca  *x509.Certificate
	rec *metricRecord
	log *slog.Logger

	arn       string // of the event's certificate
	status    types.CertificateStatus
	notBefore time.Time
	thing     string
	// untouched says the event did nothing to the certificate: left PENDING for a later event (not valid yet, CA
	// mismatch) or ignored (another account, gone, REVOKED). The event is settled, but its ledger entry is put
	// back as it was, so a later event of the same certificate is not a duplicate.
	untouched bool
	// reregistered says a retirement deleted the certificate after it was handled and AWS IoT registered it anew:
	// it is checked against the device's newer certificates before it is activated.
	reregistered bool
	// newThing says attachThing created the device's thing (contract.RetirementRequest.NewThing).
	newThing bool
}

// attached is another certificate attached to the device's thing.
type attached struct {
	id, arn   string
	status    types.CertificateStatus
	notBefore time.Time
}

// step times fn under the step's name.
func (p *provisioning) step(name string, fn func() error) error {
	start := p.h.now()
	err := fn()
	p.rec.duration(name, p.h.now().Sub(start))
	return err
}

// provision runs the steps for a well-formed event of one of the stack's CAs, activation first:
//
//	DescribeCertificate → check → deny-list → AttachThingPrincipal (CreateThing + again if the thing is missing)
//	→ AttachPolicy → UpdateCertificate ACTIVE → the retirement of older certificates (queued, or Retire)
//
// The device is usable after one DescribeCertificate and one UpdateCertificate, the two calls with the scarcest
// quotas (10 per second per account by default); Retire spends its own later. Failure anywhere before the
// activation leaves at most a PENDING certificate attached (never ACTIVE). After it, the retry (status ACTIVE)
// queues the retirement again. Two certificates of one device may both be activated; Retire, which lists the thing
// after the attachment, retires the older.
func (p *provisioning) provision(ctx context.Context) error {
	desc, err := p.describe(ctx)
	if desc == nil {
		return err
	}
	if settled, err := p.check(ctx, desc); settled {
		return err
	}
	p.log = p.log.With("thingName", p.thing)
	p.rec.properties["thingName"] = p.thing
	if p.status == types.CertificateStatusInactive {
		p.log.Info("certificate being retired: its retirement is finished", "step", "describe", "outcome", "retiring")
		return p.handOffRetirement(ctx)
	}

	// The deny-list is read before anything is attached or activated: a revoked device's new certificate never
	// becomes usable, not even for a moment.
	var denied bool
	if err := p.step("DenyList", func() error {
		var err error
		denied, err = p.onDenyList(ctx)
		return err
	}); err != nil {
		return err
	}
	if denied {
		return p.deny(ctx)
	}

	if err := p.step("AttachThing", func() error { return p.attachThing(ctx) }); err != nil {
		return err
	}
	if p.reregistered && p.status == types.CertificateStatusPendingActivation {
		if superseded, err := p.supersede(ctx); superseded || err != nil {
			return err
		}
	}
	if p.status != types.CertificateStatusActive {
		var gone bool
		if err := p.step("Activate", func() error {
			var err error
			gone, err = p.activate(ctx)
			return err
		}); err != nil {
			return err
		}
		if gone {
			return p.ignore("activate", "the certificate was deleted while it was being provisioned (a newer certificate of the device won)")
		}
		p.rec.count(contract.MetricProvisioned, 1)
		p.log.Info("certificate provisioned", "step", "activate", "outcome", "provisioned")
	} else {
		p.log.Info("certificate already active", "step", "activate", "outcome", "already-active")
	}
	return p.handOffRetirement(ctx)
}

// supersede revokes a certificate registered again after a retirement deleted it, when the device has a newer
// live certificate: it is an older certificate of the device, never to be activated again (REVOKED, AWS IoT
// neither registers it anew nor publishes its event at the device's next attempts). Without a newer one it is
// provisioned as any other. Only such certificates pay this listing before their activation.
func (p *provisioning) supersede(ctx context.Context) (superseded bool, err error) {
	var others []attached
	if err := p.step("ListThing", func() error {
		var err error
		others, _, err = p.otherCertificates(ctx)
		return err
	}); err != nil {
		return false, err
	}
	self := attached{id: p.e.CertificateID, arn: p.arn, status: p.status, notBefore: p.notBefore}
	for _, o := range others {
		live := o.status == types.CertificateStatusActive || o.status == types.CertificateStatusPendingActivation
		if !live || !newer(o, self) {
			continue
		}
		if err := p.step("Supersede", func() error { return p.detachAndRevoke(ctx, "superseded") }); err != nil {
			return false, err
		}
		p.rec.count(contract.MetricRevoked, 1)
		p.log.Warn("certificate revoked: presented again after its retirement, and the device has a newer certificate",
			"step", "supersede", "outcome", "superseded", "newerCertificateId", o.id)
		return true, nil
	}
	return false, nil
}

// describe reads the certificate and answers nil (with the outcome) when the event ends there: the certificate is
// gone, of another account, REVOKED, or registered under another CA than the event names.
func (p *provisioning) describe(ctx context.Context) (desc *types.CertificateDescription, err error) {
	api, id := p.h.api, p.e.CertificateID
	err = p.step("Describe", func() error {
		out, err := api.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
		if err != nil {
			return err
		}
		desc = out.CertificateDescription
		return nil
	})
	if iotapi.IsNotFound(err) {
		return nil, p.ignore("describe", "the certificate no longer exists (deleted by a newer certificate's rotation or by teardown)")
	}
	if err != nil {
		return nil, fmt.Errorf("describe certificate %s: %w", id, err)
	}
	if desc == nil || desc.CertificateArn == nil {
		return nil, fmt.Errorf("describe certificate %s: response has no certificate description", id)
	}
	p.arn, p.status = *desc.CertificateArn, desc.Status
	// The certificate's ARN names the account whose registry this function's credentials act on, its own: an
	// event naming another account did not come from this account's AWS IoT.
	if account := accountOfARN(p.arn); account != p.e.AWSAccountID {
		p.rec.count(contract.MetricOtherAccount, 1)
		return nil, p.ignore("describe", "the event names account "+p.e.AWSAccountID+", this function runs in account "+clip(account))
	}
	switch p.status {
	case types.CertificateStatusPendingActivation, types.CertificateStatusActive, types.CertificateStatusInactive:
		// INACTIVE: a retirement deactivated it and was interrupted; it is never activated again, but its
		// retirement is finished below.
	default:
		// REVOKED: refused or denied (detached before it was revoked, so nothing is left attached).
		return nil, p.ignore("describe", "the certificate is "+string(p.status))
	}
	// AWS IoT says which CA the certificate was registered under. An event naming another CA (even another of
	// this stack's) is not this certificate's own event: a refusal on its word could revoke a genuine
	// certificate for good, so the certificate is left PENDING for its own event.
	reported := aws.ToString(desc.CaCertificateId)
	if reported != "" && reported != p.e.CACertificateID {
		return nil, p.caMismatch(reported)
	}
	return desc, nil
}

// check verifies the certificate as an Azure Sphere device certificate of the event's CA and sets the thing name;
// settled says the event ended there (deferred, refused, CA mismatch, or an error).
func (p *provisioning) check(ctx context.Context, desc *types.CertificateDescription) (settled bool, err error) {
	reported := aws.ToString(desc.CaCertificateId)
	var refusal *azsphere.RefusalError
	var notYet *azsphere.NotYetValidError
	err = p.step("Check", func() error {
		cert, err := azsphere.ParseCertificate([]byte(aws.ToString(desc.CertificatePem)))
		if err != nil {
			return &azsphere.RefusalError{Reason: "certificate PEM unreadable: " + err.Error()}
		}
		if err := azsphere.SignedBy(cert, p.ca); err != nil && reported == "" {
			if other := p.h.signingCA(cert); other != "" {
				return &caMismatchError{reported: other}
			}
		}
		p.notBefore = cert.NotBefore
		p.thing, err = azsphere.CheckDeviceCertificate(cert, p.ca, p.h.now(), p.h.cfg.ClockSkew)
		return err
	})
	var mismatch *caMismatchError
	switch {
	case errors.As(err, &mismatch):
		return true, p.caMismatch(mismatch.reported)
	case errors.As(err, &notYet):
		p.rec.count(contract.MetricDeferred, 1)
		p.untouched = true
		p.log.Info("certificate left pending: not valid yet", "step", "check", "outcome", "deferred",
			"notBefore", notYet.NotBefore.UTC().Format(time.RFC3339), "clockSkewTolerance", p.h.cfg.ClockSkew.String(),
			"reason", "NotBefore is ahead of this function's clock by more than the tolerated skew; the registered event AWS IoT publishes at the device's next connection provisions it")
		return true, nil
	case errors.As(err, &refusal):
		return true, p.refuse(ctx, refusal.Reason)
	case err != nil:
		return true, fmt.Errorf("check certificate %s: %w", p.e.CertificateID, err)
	}
	return false, nil
}

// handOffRetirement queues the retirement of the device's older certificates (or runs it, without a queue). The
// device is usable already: retiring costs as many calls of the scarcest quotas as the activation did, so it is
// deferred, and done once registrations leave quota to spare.
func (p *provisioning) handOffRetirement(ctx context.Context) error {
	req := contract.RetirementRequest{Thing: p.thing, CertificateID: p.e.CertificateID, CertificateARN: p.arn,
		NotBefore: p.notBefore.Unix(), NewThing: p.newThing}
	if p.h.retirements == nil {
		return p.retireOlder(ctx, req)
	}
	return p.step("QueueRetirement", func() error {
		if err := p.h.retirements.QueueRetirement(ctx, req); err != nil {
			return fmt.Errorf("queue the retirement of the older certificates of thing %s: %w", p.thing, err)
		}
		if err := p.h.noteRetirement(ctx, req, false); err != nil {
			p.log.Warn("retirement queued, ledger not updated (the reconciler cannot re-queue it)", "error", err.Error())
		}
		return nil
	})
}

// Retire retires the older certificates of the request's thing, after its certificate was activated: it lists
// the thing's principals (after that certificate's attachment, so of two certificates of one device activated at
// the same time, the later list sees both) and describes each other certificate. Every certificate of the
// stack's CAs for this device older than the newest live one (ACTIVE or PENDING_ACTIVATION) is deactivated,
// detached and deleted, the request's own certificate included when a newer one is attached. It is idempotent:
// a retry, or a second request for the same thing, finds less to do. Certificates of other issuers or devices are
// left alone.
func (h *Handler) Retire(ctx context.Context, req contract.RetirementRequest) error {
	p := &provisioning{
		h: h, e: Event{CertificateID: req.CertificateID}, rec: h.record(),
		log: h.log.With("certificateId", loggableID(req.CertificateID), "thingName", req.Thing),
	}
	p.rec.properties["thingName"] = req.Thing
	start := h.now()
	defer func() {
		p.rec.duration("Retire", h.now().Sub(start))
		h.metrics.writeLine(p.rec.encode(h.now()))
	}()
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-deadlineMargin))
		defer cancel()
	}
	return p.retireOlder(ctx, req)
}

// retireOlder is Retire within a provisioning (its metric record and log).
func (p *provisioning) retireOlder(ctx context.Context, req contract.RetirementRequest) error {
	p.arn, p.thing, p.notBefore = req.CertificateARN, req.Thing, time.Unix(req.NotBefore, 0)
	var others []attached
	selfAttached := false
	if err := p.step("ListThing", func() error {
		var err error
		others, selfAttached, err = p.otherCertificates(ctx)
		return err
	}); err != nil {
		return err
	}
	// The newest live certificate of the device stays; everything older goes. The request's certificate counts as
	// live unless this provisioning found it INACTIVE (an interrupted retirement of its own).
	selfStatus := types.CertificateStatusActive
	if p.status == types.CertificateStatusInactive {
		selfStatus = types.CertificateStatusInactive
	}
	newest := attached{id: req.CertificateID, arn: req.CertificateARN, status: selfStatus, notBefore: p.notBefore}
	haveNewest := selfAttached && selfStatus == types.CertificateStatusActive
	for _, o := range others {
		live := o.status == types.CertificateStatusActive || o.status == types.CertificateStatusPendingActivation
		if live && (!haveNewest || newer(o, newest)) {
			newest, haveNewest = o, true
		}
	}
	var older []attached
	for _, o := range others {
		if o.id != newest.id && (!haveNewest || newer(newest, o)) {
			older = append(older, o)
		}
	}
	if selfAttached && (!haveNewest || newest.id != req.CertificateID) {
		older = append(older, attached{id: req.CertificateID, arn: req.CertificateARN, status: selfStatus, notBefore: p.notBefore})
	}
	for _, o := range older {
		if err := p.step("Rotate", func() error { return p.retire(ctx, o) }); err != nil {
			return err
		}
		if o.id == req.CertificateID {
			p.rec.count(contract.MetricRevoked, 1)
			p.log.Info("certificate retired: a newer certificate of the device is attached", "step", "rotate",
				"outcome", "superseded", "newerCertificateId", newest.id)
			continue
		}
		p.rec.count(contract.MetricRotated, 1)
		p.log.Info("older certificate retired", "step", "rotate", "outcome", "rotated", "retiredCertificateId", o.id)
	}
	return nil
}

// newer reports whether a supersedes b: a later NotBefore, or the same NotBefore and a greater certificate id, so
// that two retirements comparing the same pair always agree on the winner.
func newer(a, b attached) bool {
	if !a.notBefore.Equal(b.notBefore) {
		return a.notBefore.After(b.notBefore)
	}
	return a.id > b.id
}

// attachThing attaches the certificate to the device's thing, creating the thing when the attachment reports it
// missing. Attaching first costs no call on a device that already has its thing (every rotation), and does not
// depend on CreateThing failing for an existing thing (moto overwrites it instead).
func (p *provisioning) attachThing(ctx context.Context) error {
	attach := func() error {
		_, err := p.h.api.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{
			ThingName:          aws.String(p.thing),
			Principal:          aws.String(p.arn),
			ThingPrincipalType: types.ThingPrincipalTypeExclusiveThing,
		})
		return err
	}
	err := attach()
	if !iotapi.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("attach certificate %s to thing %s: %w", p.e.CertificateID, p.thing, err)
		}
		return nil
	}
	_, err = p.h.api.CreateThing(ctx, &iot.CreateThingInput{
		ThingName: aws.String(p.thing),
		AttributePayload: &types.AttributePayload{Attributes: map[string]string{
			contract.AttrProvisionedBy: p.h.cfg.ProvisionedBy,
			contract.AttrProvisionedAt: p.h.now().UTC().Format(time.RFC3339),
		}},
	})
	if err != nil && !iotapi.HasErrorCode(err, "ResourceAlreadyExistsException") {
		return fmt.Errorf("create thing %s: %w", p.thing, err)
	}
	p.newThing = true
	if err := attach(); err != nil {
		return fmt.Errorf("attach certificate %s to thing %s: %w", p.e.CertificateID, p.thing, err)
	}
	return nil
}

// otherCertificates lists the thing's principals after this certificate was attached, so that of two events
// of one device handled at the same time at least one sees the other, and describes the other certificates.
func (p *provisioning) otherCertificates(ctx context.Context) (others []attached, selfAttached bool, err error) {
	pages := iot.NewListThingPrincipalsPaginator(p.h.api, &iot.ListThingPrincipalsInput{ThingName: aws.String(p.thing)})
	for pages.HasMorePages() {
		// The list never gives way to registrations (a retirement's admission check): activation does not call
		// ListThingPrincipals, and a first boot's retirements are done with it alone during a backlog.
		page, err := pages.NextPage(iotapi.WithoutAdmission(ctx))
		if iotapi.IsNotFound(err) {
			return nil, false, nil // no thing: nothing is attached to it, nothing to retire
		}
		if err != nil {
			return nil, false, fmt.Errorf("list principals of thing %s: %w", p.thing, err)
		}
		for _, arn := range page.Principals {
			certID, isCert := certificateIDFromARN(arn)
			if arn == p.arn {
				selfAttached = true
				continue
			}
			if !isCert {
				continue // Cognito identities
			}
			out, err := p.h.api.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(certID)})
			if iotapi.IsNotFound(err) {
				continue // retired meanwhile by another event
			}
			if err != nil {
				return nil, false, fmt.Errorf("describe certificate %s attached to thing %s: %w", certID, p.thing, err)
			}
			d := out.CertificateDescription
			if d == nil {
				return nil, false, fmt.Errorf("describe certificate %s attached to thing %s: response has no certificate description", certID, p.thing)
			}
			o := attached{id: certID, arn: arn, status: d.Status}
			if reason := p.foreign(d); reason != "" {
				// Not a certificate of this stack's CAs for this device: rotation neither deletes it nor lets it
				// supersede the device's own certificate.
				p.rec.count(contract.MetricForeignAttached, 1)
				p.log.Warn("attached certificate left alone", "step", "list", "otherCertificateId", certID, "reason", reason)
				continue
			}
			cert, _ := azsphere.ParseCertificate([]byte(aws.ToString(d.CertificatePem)))
			o.notBefore = cert.NotBefore
			others = append(others, o)
		}
	}
	return others, selfAttached, nil
}

// activate attaches the device policy and then activates the certificate, in that order, so an ACTIVE
// certificate always has its thing (attached before) and its policy. gone reports that the certificate was
// deleted meanwhile.
func (p *provisioning) activate(ctx context.Context) (gone bool, err error) {
	api, id := p.h.api, p.e.CertificateID
	if _, err := api.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(p.h.cfg.PolicyName), Target: aws.String(p.arn)}); err != nil {
		if iotapi.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("attach policy %s to %s: %w", p.h.cfg.PolicyName, id, err)
	}
	_, err = api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: types.CertificateStatusActive})
	if iotapi.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("activate certificate %s: %w", id, err)
	}
	return false, nil
}

// retire deactivates an older certificate of the device, detaches it from the thing and deletes it (the delete
// removes its policy attachment: forceDelete). Deactivating first means a failure part-way never leaves an
// ACTIVE certificate without its thing; a retry finds it still attached and finishes. Its steps run all or none:
// the deactivation is the last call an admission check (a retirement giving way to registrations) may refuse, and
// once the certificate is INACTIVE the rest runs without it.
func (p *provisioning) retire(ctx context.Context, o attached) error {
	api := p.h.api
	deactivate := func(ctx context.Context) (gone bool, err error) {
		_, err = api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(o.id), NewStatus: types.CertificateStatusInactive})
		if iotapi.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("deactivate older certificate %s: %w", o.id, err)
		}
		return false, nil
	}
	if o.status != types.CertificateStatusInactive && o.status != types.CertificateStatusRevoked {
		if gone, err := deactivate(ctx); gone || err != nil {
			return err
		}
	}
	ctx = iotapi.WithoutAdmission(ctx)
	_, err := api.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String(p.thing), Principal: aws.String(o.arn)})
	if err != nil && !iotapi.IsNotFound(err) {
		// The detachment may have happened with only its response lost: re-attach, as after a failed delete.
		return fmt.Errorf("detach older certificate %s from thing %s%s: %w", o.id, p.thing, p.reattach(ctx, o), err)
	}
	// AWS IoT propagates a detachment asynchronously: a delete right after it may see the thing still
	// attached, so the retryer also backs off on DeleteConflictException for this call.
	conflictRetry := func(o *iot.Options) { o.Retryer = retry.AddWithErrorCodes(o.Retryer, "DeleteConflictException") }
	for attempt := 1; ; attempt++ {
		_, err = api.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String(o.id), ForceDelete: true}, conflictRetry)
		switch {
		case err == nil || iotapi.IsNotFound(err):
			if err := p.h.markDeleted(ctx, o.id); err != nil {
				// Its ledger entry then expires in ledgerRetention; until then, presenting it again stays PENDING.
				p.log.Warn("older certificate deleted, ledger not updated", "step", "rotate", "retiredCertificateId", o.id, "error", err.Error())
			}
			return nil
		case iotapi.HasErrorCode(err, "CertificateStateException") && attempt < 3:
			// The older certificate's own event, running concurrently, activated it after it was deactivated
			// here; that event activates once, so deactivating again settles it.
			if gone, err := deactivate(ctx); gone || err != nil {
				return err
			}
		default:
			// Detached, the certificate is invisible to the retry, which finds older certificates through the
			// thing: attach it again (best effort, within the deadline margin) so the retry finishes the job.
			return fmt.Errorf("delete older certificate %s%s: %w", o.id, p.reattach(ctx, o), err)
		}
	}
}

// reattach attaches a deactivated older certificate to the thing again after its detachment or deletion
// failed, and describes the outcome for the error message.
func (p *provisioning) reattach(ctx context.Context, o attached) string {
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), deadlineMargin*4/5)
		defer cancel()
	}
	_, err := p.h.api.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{
		ThingName:          aws.String(p.thing),
		Principal:          aws.String(o.arn),
		ThingPrincipalType: types.ThingPrincipalTypeExclusiveThing,
	})
	if err != nil {
		return fmt.Sprintf(" (left detached and INACTIVE: re-attaching it to thing %s failed: %v)", p.thing, err)
	}
	return " (re-attached to thing " + p.thing + " for the retry)"
}

// onDenyList reports whether the device is on the deny-list, with one strongly consistent GetItem (an entry
// `fleetctl revoke` has just written must be seen). An error is returned for a retry: without an answer the
// certificate is not provisioned.
func (p *provisioning) onDenyList(ctx context.Context) (bool, error) {
	if p.h.deny == nil || p.h.cfg.DenyListTable == "" {
		return false, nil
	}
	out, err := p.h.deny.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:            aws.String(p.h.cfg.DenyListTable),
		Key:                  map[string]ddbtypes.AttributeValue{contract.DenyListKey: &ddbtypes.AttributeValueMemberS{Value: p.thing}},
		ConsistentRead:       aws.Bool(true),
		ProjectionExpression: aws.String(contract.DenyListKey),
	})
	if err != nil {
		return false, fmt.Errorf("read deny-list entry of %s: %w", p.thing, err)
	}
	return len(out.Item) > 0, nil
}

// deny refuses the certificate of a device on the deny-list: detached from the thing and the policy (in case an
// earlier, interrupted event attached it), then REVOKED, so it can neither connect nor fire the registered event
// again. The order converges like supersede's: until the revocation the certificate is PENDING or ACTIVE and the
// retry denies it again.
func (p *provisioning) deny(ctx context.Context) error {
	if err := p.step("Deny", func() error { return p.detachAndRevoke(ctx, "denied") }); err != nil {
		return err
	}
	p.rec.count(contract.MetricDenied, 1)
	p.log.Warn("certificate refused and revoked: the device is on the deny-list", "step", "deny", "outcome", "denied",
		"reason", "'fleetctl revoke' put the device on the deny-list; 'fleetctl allow' takes it off")
	return nil
}

// detachAndRevoke detaches this certificate from the thing and the policy, then revokes it; what describes the
// certificate in error messages ("superseded", "denied").
func (p *provisioning) detachAndRevoke(ctx context.Context, what string) error {
	api, id := p.h.api, p.e.CertificateID
	_, err := api.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String(p.thing), Principal: aws.String(p.arn)})
	if err != nil && !iotapi.IsNotFound(err) {
		return fmt.Errorf("detach %s certificate %s from thing %s: %w", what, id, p.thing, err)
	}
	_, err = api.DetachPolicy(ctx, &iot.DetachPolicyInput{PolicyName: aws.String(p.h.cfg.PolicyName), Target: aws.String(p.arn)})
	if err != nil && !iotapi.IsNotFound(err) {
		return fmt.Errorf("detach policy %s from %s certificate %s: %w", p.h.cfg.PolicyName, what, id, err)
	}
	_, err = api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: types.CertificateStatusRevoked})
	if err != nil && !iotapi.IsNotFound(err) {
		return fmt.Errorf("revoke %s certificate %s: %w", what, id, err)
	}
	return nil
}

// refuse revokes a PENDING certificate that failed a check nothing can undo (not signed by the stack's CA,
// malformed identity, CA certificate, expired). The refusal is final, so Handle returns nil. An ACTIVE
// certificate is not revoked here: it is attached to its thing, and revoking it would leave a REVOKED
// certificate attached; the device's next rotation retires it.
func (p *provisioning) refuse(ctx context.Context, reason string) error {
	if p.status != types.CertificateStatusPendingActivation {
		p.rec.count(contract.MetricRefused, 1)
		p.log.Warn("active certificate fails the checks; left to the device's next rotation", "step", "check", "outcome", "refused", "reason", reason)
		return nil
	}
	err := p.step("Refuse", func() error {
		_, err := p.h.api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(p.e.CertificateID), NewStatus: types.CertificateStatusRevoked})
		if err != nil && !iotapi.IsNotFound(err) {
			return fmt.Errorf("revoke refused certificate %s: %w", p.e.CertificateID, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.rec.count(contract.MetricRefused, 1)
	p.log.Warn("certificate refused and revoked", "step", "check", "outcome", "refused", "reason", reason)
	return nil
}

// caMismatchError says that the certificate was issued by another CA than the event names.
type caMismatchError struct{ reported string }

func (e *caMismatchError) Error() string { return "the certificate was issued by CA " + e.reported }

// caMismatch leaves the certificate PENDING: the event names another CA than the one AWS IoT reports for the
// certificate (or than the one whose signature it carries). Logged and counted; an alarm watches the count.
func (p *provisioning) caMismatch(reported string) error {
	p.rec.count(contract.MetricCAMismatch, 1)
	p.rec.count(contract.MetricDeferred, 1)
	p.untouched = true
	p.log.Warn("certificate left pending: the event names another CA than the certificate's", "step", "check",
		"outcome", "deferred", "reportedCaCertificateId", loggableID(reported),
		"reason", "an event for another CA than the issuer's is not this certificate's own event; the certificate is not revoked on its word")
	return nil
}

// foreign says why a certificate attached to the device's thing is not one rotation may touch, or "": it must be
// signed by one of the stack's CAs (and, when AWS IoT reports its CA, registered under one of them) and name
// the same device.
func (p *provisioning) foreign(d *types.CertificateDescription) string {
	if ca := aws.ToString(d.CaCertificateId); ca != "" {
		if _, ours := p.h.cfg.CAs[ca]; !ours {
			return "registered under CA " + loggableID(ca) + ", not one of this stack's"
		}
	}
	cert, err := azsphere.ParseCertificate([]byte(aws.ToString(d.CertificatePem)))
	if err != nil {
		return "certificate unreadable: " + err.Error()
	}
	if p.h.signingCA(cert) == "" {
		return "not signed by any of this stack's CAs"
	}
	thing, err := azsphere.DeviceIdentity(cert)
	if err != nil {
		return "not a device certificate: " + err.Error()
	}
	if thing != p.thing {
		return "names another device"
	}
	return ""
}

// signingCA returns the id of the stack's CA whose key signed cert, or "".
func (h *Handler) signingCA(cert *x509.Certificate) string {
	for id, ca := range h.cfg.CAs {
		if ca != nil && azsphere.SignedBy(cert, ca) == nil {
			return id
		}
	}
	return ""
}

func (p *provisioning) ignore(step, reason string) error {
	p.untouched = true
	p.rec.count(contract.MetricIgnored, 1)
	p.log.Info("event ignored", "step", step, "outcome", "ignored", "reason", reason)
	return nil
}

// accountOfARN returns the account field of an ARN (arn:partition:service:region:account:resource).
func accountOfARN(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}

// certificateIDFromARN returns the id in arn:aws:iot:region:account:cert/<id>.
func certificateIDFromARN(arn string) (string, bool) {
	i := strings.LastIndex(arn, ":cert/")
	if i < 0 {
		return "", false
	}
	return arn[i+len(":cert/"):], true
}
