// Package caexpiry judges the stack's tenant CAs against time: days left before each expires, whether a successor
// is registered, and how many days remain before no registered CA can provision a device. Azure Sphere issues the
// next tenant CA about 90 days before the current one expires and nobody registers it on AWS IoT for the operator,
// so the scheduled check (lambda/cacheck) publishes these figures as metrics and `fleetctl cas` prints them.
package caexpiry

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/emf"
)

// CA is what AWS IoT says about one registered CA certificate.
type CA struct {
	ID               string    `json:"caCertificateId"`
	Subject          string    `json:"subject,omitempty"`
	Status           string    `json:"status"` // ACTIVE or INACTIVE
	AutoRegistration bool      `json:"autoRegistration"`
	NotBefore        time.Time `json:"notBefore"`
	NotAfter         time.Time `json:"notAfter"`
}

// Provisions reports whether AWS IoT auto-registers device certificates of this CA at t: ACTIVE, auto-registration
// enabled, within its validity.
func (c CA) Provisions(t time.Time) bool {
	return c.Status == string(types.CACertificateStatusActive) && c.AutoRegistration && !t.Before(c.NotBefore) && t.Before(c.NotAfter)
}

// Assessment is one CA judged at a time.
type Assessment struct {
	CA
	DaysLeft int `json:"daysLeft"` // whole days until NotAfter, negative once expired
	// Successor is the id of another of the stack's CAs that provisions and expires later, or "".
	Successor string `json:"successor,omitempty"`
}

// Report is every CA of the stack judged at one time.
type Report struct {
	At  time.Time    `json:"at"`
	CAs []Assessment `json:"cas"`
	// DaysLeftWithoutSuccessor is the number of whole days until the last CA that provisions expires: the days left
	// of a CA that has no successor. Zero when no CA provisions now.
	DaysLeftWithoutSuccessor int `json:"daysLeftWithoutSuccessor"`
}

// Assess judges cas at now. A successor of a CA is another CA of the stack that provisions now and expires later:
// only the stack's CAs have a topic rule and are trusted by the JITR function, so a CA registered outside the stack
// provisions nothing and is not a successor.
func Assess(cas []CA, now time.Time) Report {
	r := Report{At: now.UTC()}
	for _, c := range cas {
		a := Assessment{CA: c, DaysLeft: daysUntil(now, c.NotAfter)}
		var best *CA
		for i := range cas {
			o := &cas[i]
			if o.ID == c.ID || !o.Provisions(now) || !o.NotAfter.After(c.NotAfter) {
				continue
			}
			if best == nil || o.NotAfter.After(best.NotAfter) {
				best = o
			}
		}
		if best != nil {
			a.Successor = best.ID
		}
		if c.Provisions(now) && a.DaysLeft > r.DaysLeftWithoutSuccessor {
			r.DaysLeftWithoutSuccessor = a.DaysLeft
		}
		r.CAs = append(r.CAs, a)
	}
	sort.SliceStable(r.CAs, func(i, j int) bool { return r.CAs[i].NotAfter.Before(r.CAs[j].NotAfter) })
	return r
}

func daysUntil(now, t time.Time) int {
	return int(math.Floor(t.Sub(now).Hours() / 24))
}

// DescribeAPI is the IoT call that reads a registered CA.
type DescribeAPI interface {
	DescribeCACertificate(ctx context.Context, in *iot.DescribeCACertificateInput, optFns ...func(*iot.Options)) (*iot.DescribeCACertificateOutput, error)
}

var _ DescribeAPI = (*iot.Client)(nil)

// Describe reads the CAs with the given ids, in order.
func Describe(ctx context.Context, api DescribeAPI, ids []string) ([]CA, error) {
	cas := make([]CA, 0, len(ids))
	for _, id := range ids {
		out, err := api.DescribeCACertificate(ctx, &iot.DescribeCACertificateInput{CertificateId: aws.String(id)})
		if err != nil {
			return nil, fmt.Errorf("describe CA certificate %s: %w", id, err)
		}
		d := out.CertificateDescription
		if d == nil {
			return nil, fmt.Errorf("describe CA certificate %s: response has no certificate description", id)
		}
		c := CA{ID: id, Status: string(d.Status), AutoRegistration: d.AutoRegistrationStatus == types.AutoRegistrationStatusEnable}
		// The certificate itself is the authority on its validity; the response's validity is the fallback.
		if cert, err := parsePEM(aws.ToString(d.CertificatePem)); err == nil {
			c.Subject, c.NotBefore, c.NotAfter = cert.Subject.CommonName, cert.NotBefore, cert.NotAfter
		} else if d.Validity != nil {
			c.NotBefore, c.NotAfter = aws.ToTime(d.Validity.NotBefore), aws.ToTime(d.Validity.NotAfter)
		}
		if c.NotAfter.IsZero() {
			return nil, fmt.Errorf("describe CA certificate %s: neither the validity nor a readable certificate in the response", id)
		}
		cas = append(cas, c)
	}
	return cas, nil
}

// EMF renders the report as CloudWatch embedded-metric-format lines, one per CA (MetricTenantCADaysLeft with the
// CA id as a dimension) and one for the stack (MetricDaysLeftWithoutSuccessor), under namespace with the
// MetricDimension value stack.
func (r Report) EMF(namespace, stack string) [][]byte {
	var out [][]byte
	for _, a := range r.CAs {
		out = append(out, emf.Line(namespace, r.At,
			[]emf.Dimension{{Name: contract.MetricDimension, Value: stack}, {Name: contract.MetricCADimension, Value: a.ID}},
			[]emf.Metric{{Name: contract.MetricTenantCADaysLeft, Unit: emf.Count, Value: float64(a.DaysLeft)}},
			map[string]any{"successor": a.Successor, "status": a.Status, "notAfter": a.NotAfter.UTC().Format(time.RFC3339)}))
	}
	out = append(out, emf.Line(namespace, r.At, []emf.Dimension{{Name: contract.MetricDimension, Value: stack}},
		[]emf.Metric{{Name: contract.MetricDaysLeftWithoutSuccessor, Unit: emf.Count, Value: float64(r.DaysLeftWithoutSuccessor)}}, nil))
	return out
}
