// Package teardown empties the AWS IoT registry of what just-in-time registration created, so `cdk destroy`
// leaves nothing behind: every certificate signed by the stack's tenant CAs (detached from its things and the
// device policy, deactivated, deleted) and every thing the JITR handler created (recognised by its provisionedBy
// attribute, so nobody else's thing is ever touched). Every step tolerates work already done, so a teardown that
// stopped half-way finishes when it runs again.
package teardown

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

// IoTAPI is the part of the AWS IoT control plane teardown uses, with the SDK's exact signatures.
type IoTAPI interface {
	UpdateCACertificate(ctx context.Context, in *iot.UpdateCACertificateInput, optFns ...func(*iot.Options)) (*iot.UpdateCACertificateOutput, error)
	ListCertificatesByCA(ctx context.Context, in *iot.ListCertificatesByCAInput, optFns ...func(*iot.Options)) (*iot.ListCertificatesByCAOutput, error)
	ListPrincipalThings(ctx context.Context, in *iot.ListPrincipalThingsInput, optFns ...func(*iot.Options)) (*iot.ListPrincipalThingsOutput, error)
	DetachThingPrincipal(ctx context.Context, in *iot.DetachThingPrincipalInput, optFns ...func(*iot.Options)) (*iot.DetachThingPrincipalOutput, error)
	DetachPolicy(ctx context.Context, in *iot.DetachPolicyInput, optFns ...func(*iot.Options)) (*iot.DetachPolicyOutput, error)
	UpdateCertificate(ctx context.Context, in *iot.UpdateCertificateInput, optFns ...func(*iot.Options)) (*iot.UpdateCertificateOutput, error)
	DeleteCertificate(ctx context.Context, in *iot.DeleteCertificateInput, optFns ...func(*iot.Options)) (*iot.DeleteCertificateOutput, error)
	ListThings(ctx context.Context, in *iot.ListThingsInput, optFns ...func(*iot.Options)) (*iot.ListThingsOutput, error)
	ListThingPrincipals(ctx context.Context, in *iot.ListThingPrincipalsInput, optFns ...func(*iot.Options)) (*iot.ListThingPrincipalsOutput, error)
	DeleteThing(ctx context.Context, in *iot.DeleteThingInput, optFns ...func(*iot.Options)) (*iot.DeleteThingOutput, error)
}

var _ IoTAPI = (*iot.Client)(nil)

// Scope says what to remove.
type Scope struct {
	CACertificateIDs []string // remove every certificate these CAs signed
	PolicyName       string   // the device policy to detach from them
	ProvisionedBy    string   // remove things whose provisionedBy attribute is this; empty: no things
}

// Result counts what a run removed.
type Result struct {
	Certificates int
	Things       int
}

// Teardown removes JITR-created registry entries.
type Teardown struct {
	api         IoTAPI
	log         *slog.Logger
	concurrency int
	index       IndexAPI // counts the things for the estimate (WithIndex)
	rates       map[string]float64
	budget      time.Duration
	continuer   Continuer
	respond     func(context.Context, *cfn.Response) error
	now         func() time.Time
}

// New returns a Teardown over api. Pacing is the client's (iotapi.WithRateLimits at the rates given WithRates) and
// so is throttling (iotapi.NewRetryer); concurrency bounds the calls in flight.
func New(api IoTAPI, log *slog.Logger, concurrency int, opts ...Option) *Teardown {
	if concurrency < 1 {
		concurrency = 1
	}
	t := &Teardown{api: api, log: log, concurrency: concurrency, rates: DefaultRates(), budget: DefaultBudget, respond: sendResponse, now: time.Now}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Run removes everything in scope. It goes on past individual failures and returns an error that says what is
// left, so the caller can report it and a second run finishes the job.
func (t *Teardown) Run(ctx context.Context, s Scope) (Result, error) {
	var res Result
	var failures failureList

	// First stop new registrations, so no device provisions itself while its siblings are being removed.
	for _, ca := range s.CACertificateIDs {
		_, err := t.api.UpdateCACertificate(ctx, &iot.UpdateCACertificateInput{
			CertificateId:             aws.String(ca),
			NewAutoRegistrationStatus: types.AutoRegistrationStatusDisable,
		})
		if err != nil && !iotapi.IsNotFound(err) {
			failures.add("CA "+ca, fmt.Errorf("disable auto-registration: %w", err))
		}
	}

	for _, ca := range s.CACertificateIDs {
		certs, err := t.certificatesOf(ctx, ca)
		if err != nil {
			failures.add("CA "+ca, err)
			continue
		}
		n := t.each(ctx, "certificates", len(certs), func(i int) error { return t.removeCertificate(ctx, certs[i], s.PolicyName) }, &failures,
			func(i int) string { return "certificate " + aws.ToString(certs[i].CertificateId) })
		res.Certificates += n
		t.log.Info("certificates removed", "step", "certificates", "caCertificateId", ca, "removed", n, "found", len(certs))
	}

	if s.ProvisionedBy != "" {
		things, err := t.thingsProvisionedBy(ctx, s.ProvisionedBy)
		if err != nil {
			failures.add("things", err)
		} else {
			n := t.each(ctx, "things", len(things), func(i int) error { return t.removeThing(ctx, things[i]) }, &failures,
				func(i int) string { return "thing " + things[i] })
			res.Things += n
			t.log.Info("things removed", "step", "things", "removed", n, "found", len(things))
		}
	}
	return res, failures.err()
}

// each runs fn for 0..n-1 with bounded concurrency and returns how many succeeded; it logs its progress every
// progressEvery items, so a long invocation shows in its log how far it got.
func (t *Teardown) each(ctx context.Context, step string, n int, fn func(int) error, failures *failureList, name func(int) string) int {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
		sem  = make(chan struct{}, t.concurrency)
	)
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			failures.add(name(i), ctx.Err())
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				failures.add(name(i), err)
				return
			}
			mu.Lock()
			done++
			if done%progressEvery == 0 {
				t.log.Info("registry teardown progress", "step", step, "removed", done, "of", n)
			}
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	return done
}

func (t *Teardown) certificatesOf(ctx context.Context, ca string) ([]types.Certificate, error) {
	var out []types.Certificate
	var marker *string
	for {
		page, err := t.api.ListCertificatesByCA(ctx, &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(ca), Marker: marker, PageSize: aws.Int32(250)})
		if iotapi.IsNotFound(err) {
			return out, nil // the CA is gone already, and its certificates with it
		}
		if err != nil {
			return nil, fmt.Errorf("list certificates of CA %s: %w", ca, err)
		}
		out = append(out, page.Certificates...)
		if aws.ToString(page.NextMarker) == "" {
			return out, nil
		}
		marker = page.NextMarker
	}
}

// removeCertificate detaches the certificate from its things and the device policy, deactivates it and deletes it.
func (t *Teardown) removeCertificate(ctx context.Context, c types.Certificate, policy string) error {
	arn, id := aws.ToString(c.CertificateArn), aws.ToString(c.CertificateId)
	var next *string
	for {
		page, err := t.api.ListPrincipalThings(ctx, &iot.ListPrincipalThingsInput{Principal: aws.String(arn), NextToken: next})
		if iotapi.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list things of certificate %s: %w", id, err)
		}
		for _, thing := range page.Things {
			if _, err := t.api.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String(thing), Principal: aws.String(arn)}); err != nil && !iotapi.IsNotFound(err) {
				return fmt.Errorf("detach certificate %s from thing %s: %w", id, thing, err)
			}
		}
		if aws.ToString(page.NextToken) == "" {
			break
		}
		next = page.NextToken
	}
	if policy != "" {
		if _, err := t.api.DetachPolicy(ctx, &iot.DetachPolicyInput{PolicyName: aws.String(policy), Target: aws.String(arn)}); err != nil && !iotapi.IsNotFound(err) {
			return fmt.Errorf("detach policy %s from certificate %s: %w", policy, id, err)
		}
	}
	if c.Status == types.CertificateStatusActive {
		if _, err := t.api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: types.CertificateStatusInactive}); err != nil {
			if iotapi.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("deactivate certificate %s: %w", id, err)
		}
	}
	// No forceDelete: a policy someone else attached makes the delete fail with a reason that names it, rather
	// than silently taking their attachment away.
	if _, err := t.api.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String(id)}); err != nil && !iotapi.IsNotFound(err) {
		return fmt.Errorf("delete certificate %s: %w", id, err)
	}
	return nil
}

func (t *Teardown) thingsProvisionedBy(ctx context.Context, stack string) ([]string, error) {
	var out []string
	var next *string
	for {
		page, err := t.api.ListThings(ctx, &iot.ListThingsInput{
			AttributeName: aws.String(contract.AttrProvisionedBy), AttributeValue: aws.String(stack), NextToken: next, MaxResults: aws.Int32(250),
		})
		if err != nil {
			return nil, fmt.Errorf("list things provisioned by %s: %w", stack, err)
		}
		for _, th := range page.Things {
			// The filter is the service's; check again, so a thing of anyone else is never deleted.
			if th.Attributes[contract.AttrProvisionedBy] == stack {
				out = append(out, aws.ToString(th.ThingName))
			}
		}
		if aws.ToString(page.NextToken) == "" {
			return out, nil
		}
		next = page.NextToken
	}
}

// removeThing detaches whatever principals are left on the thing and deletes it: one listing (the certificates
// went first, so it is usually empty), and another only when DeleteThing finds a principal attached since.
func (t *Teardown) removeThing(ctx context.Context, thing string) error {
	for attempt := 1; ; attempt++ {
		page, err := t.api.ListThingPrincipals(ctx, &iot.ListThingPrincipalsInput{ThingName: aws.String(thing)})
		if iotapi.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list principals of thing %s: %w", thing, err)
		}
		for _, p := range page.Principals {
			if _, err := t.api.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String(thing), Principal: aws.String(p)}); err != nil && !iotapi.IsNotFound(err) {
				return fmt.Errorf("detach %s from thing %s: %w", p, thing, err)
			}
		}
		_, err = t.api.DeleteThing(ctx, &iot.DeleteThingInput{ThingName: aws.String(thing)})
		if err == nil || iotapi.IsNotFound(err) {
			return nil
		}
		if !iotapi.HasErrorCode(err, "InvalidRequestException") || attempt == 3 {
			return fmt.Errorf("delete thing %s: %w", thing, err)
		}
	}
}

// failureList collects what could not be removed; its error names what is left and how to finish.
type failureList struct {
	mu    sync.Mutex
	items []string
	first error
}

func (f *failureList) add(what string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items = append(f.items, what)
	if f.first == nil {
		f.first = err
	}
}

func (f *failureList) err() error {
	if len(f.items) == 0 {
		return nil
	}
	sort.Strings(f.items)
	shown := f.items
	if len(shown) > 5 {
		shown = append(shown[:5:5], fmt.Sprintf("and %d more", len(f.items)-5))
	}
	return &IncompleteError{Left: len(f.items), Summary: strings.Join(shown, ", "), Cause: f.first}
}

// IncompleteError says that a run left registry entries behind.
type IncompleteError struct {
	Left    int
	Summary string
	Cause   error
}

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("registry teardown incomplete: %d left (%s); first error: %v. Run 'cdk destroy' again to finish (it resumes where this stopped)",
		e.Left, e.Summary, e.Cause)
}

func (e *IncompleteError) Unwrap() error { return e.Cause }

// progressEvery is how often each logs its progress, in items.
const progressEvery = 1000

// DeadlineMargin is kept free before a deadline, so a run stops and reports instead of being cut off.
const DeadlineMargin = 20 * time.Second
