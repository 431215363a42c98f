package teardown

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
	"github.com/sphere-jitr/sphere-jitr/internal/workplan"
)

// CloudFormation's and Lambda's limits the teardown works within.
const (
	// CustomResourceTimeout is the longest CloudFormation waits for a custom resource's response (the
	// resource's ServiceTimeout: 1 to 3600 seconds, default 3600; AWS::CloudFormation::CustomResource). The CDK
	// provider framework's waiter cannot outlast it either, and changing the resource's ServiceToken to one is
	// refused ("Updates aren't supported"), so the function continues itself within it instead.
	CustomResourceTimeout = time.Hour
	// LambdaTimeout is the longest one invocation of a Lambda function may run; the teardown function has it.
	LambdaTimeout = 15 * time.Minute
	// DefaultBudget is the work the teardown takes on: the custom resource's timeout less a margin for the
	// estimate's own listing, throttling retries and the continuations' start-up.
	DefaultBudget = CustomResourceTimeout - 10*time.Minute
)

// ThingIndex is the fleet index of things, the one registry indexing fills.
const ThingIndex = "AWS_Things"

// IndexAPI counts the stack's things in the fleet index (the stack turns registry indexing on).
type IndexAPI interface {
	GetStatistics(ctx context.Context, in *iot.GetStatisticsInput, optFns ...func(*iot.Options)) (*iot.GetStatisticsOutput, error)
}

var _ IndexAPI = (*iot.Client)(nil)

// Estimate is the teardown's work, counted before anything is deleted, and its time at the rates it is paced to.
type Estimate struct {
	Things             int            `json:"things"`
	ThingsCountedBy    string         `json:"thingsCountedBy"` // "fleet index" or "ListThings"
	Certificates       int            `json:"certificates"`
	ActiveCertificates int            `json:"activeCertificates"`
	Calls              workplan.Calls `json:"calls"`
	Duration           time.Duration  `json:"durationNanoseconds"`
	Bottleneck         string         `json:"bottleneck"`
	Rates              map[string]float64
}

// Estimate counts what the scope holds — the certificates of the CAs (ListCertificatesByCA, a call per 250), the
// things (the fleet index's GetStatistics when there is one, else ListThings, a call per 250) — and projects the
// time of removing them at the teardown's rates: the certificates first, then the things, each phase as long as
// its slowest operation.
func (t *Teardown) Estimate(ctx context.Context, s Scope) (Estimate, error) {
	e := Estimate{Rates: t.rates}
	for _, ca := range s.CACertificateIDs {
		certs, err := t.certificatesOf(ctx, ca)
		if err != nil {
			return e, err
		}
		e.Certificates += len(certs)
		for _, c := range certs {
			if c.Status == types.CertificateStatusActive {
				e.ActiveCertificates++
			}
		}
	}
	if s.ProvisionedBy != "" {
		n, by, err := t.countThings(ctx, s.ProvisionedBy)
		if err != nil {
			return e, err
		}
		e.Things, e.ThingsCountedBy = n, by
	}
	certs := workplan.Calls{"ListCertificatesByCA": pages(e.Certificates)}
	certs.Add(e.Certificates, "ListPrincipalThings", "DetachPolicy", "DeleteCertificate")
	certs.Add(min(e.Certificates, e.Things), "DetachThingPrincipal")
	certs.Add(e.ActiveCertificates, "UpdateCertificate")
	things := workplan.Calls{"ListThings": pages(e.Things)}
	things.Add(e.Things, "ListThingPrincipals", "DeleteThing")
	d1, b1 := certs.Project(t.rates)
	d2, b2 := things.Project(t.rates)
	e.Duration, e.Bottleneck = d1+d2, b1
	if d2 > d1 {
		e.Bottleneck = b2
	}
	e.Calls = workplan.Calls{}
	for _, c := range []workplan.Calls{certs, things} {
		for op, n := range c {
			e.Calls[op] += n
		}
	}
	return e, nil
}

func pages(n int) int { return (n + 249) / 250 }

// countThings counts the things the stack provisioned: one GetStatistics call on the fleet index, or a ListThings
// walk when the account has no index.
func (t *Teardown) countThings(ctx context.Context, stack string) (int, string, error) {
	if t.index != nil {
		// The index named, as the grant names it (index/AWS_Things), though AWS_Things is the default.
		out, err := t.index.GetStatistics(ctx, &iot.GetStatisticsInput{IndexName: aws.String(ThingIndex),
			QueryString: aws.String(contract.ThingAttributeField(contract.AttrProvisionedBy) + ":" + stack)})
		var nf *types.ResourceNotFoundException
		switch {
		case err == nil && out.Statistics != nil:
			return int(out.Statistics.Count), "fleet index", nil
		case err == nil, errors.As(err, &nf), iotapi.HasErrorCode(err, "IndexNotReadyException"):
			// no index (fleet indexing off), or not ready yet: walk instead
		default:
			return 0, "", fmt.Errorf("count the things of %s in the fleet index: %w", stack, err)
		}
	}
	things, err := t.thingsProvisionedBy(ctx, stack)
	return len(things), "ListThings", err
}

// DefaultRates are the rates the teardown paces its calls to: AWS IoT's default quotas (iotquota), an operation
// the table does not list at the lowest of them. Auto-registration is disabled before anything is removed, so the
// JITR function no longer competes for them.
func DefaultRates() map[string]float64 {
	rates := iotquota.Defaults()
	for _, op := range []string{"ListPrincipalThings", "ListThings", "DeleteThing", "UpdateCACertificate", "GetStatistics"} {
		if _, ok := rates[op]; !ok {
			rates[op] = iotquota.Unlisted
		}
	}
	return rates
}

// TooLargeError refuses a teardown whose estimate exceeds the budget: nothing was deleted.
type TooLargeError struct {
	Estimate Estimate
	Budget   time.Duration
	Stack    string
}

func (e *TooLargeError) Error() string {
	est := e.Estimate
	decom := workplan.Decommission(est.Things)
	half, full := map[string]float64{}, map[string]float64{}
	for op, r := range DefaultRates() {
		half[op], full[op] = r*0.5, r
	}
	atHalf, _ := decom.Project(half)
	atFull, _ := decom.Project(full)
	return fmt.Sprintf("registry teardown refused, nothing deleted: %d things (counted by %s) and %d certificates of the stack's CAs "+
		"take about %s to remove at the AWS IoT rates of this account (slowest: %s at %g/s), more than the %s a custom resource may take "+
		"(CloudFormation waits at most %s for its response). Run 'fleetctl decommission -all -stack %s -yes' first: about %s at its "+
		"default -rate-share 0.5, %s with -rate-share 1; it is resumable, and prints its plan with -dry-run. Then run 'cdk destroy' again: "+
		"it removes what is left",
		est.Things, est.ThingsCountedBy, est.Certificates, Round(est.Duration), est.Bottleneck, est.Rates[est.Bottleneck],
		e.Budget, CustomResourceTimeout, e.Stack, Round(atHalf), Round(atFull))
}

// Round is d to the minute from an hour up, else to the second.
func Round(d time.Duration) time.Duration {
	if d >= time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
