package operate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/workplan"
)

// DeleteAPI is what decommissioning adds to IoTAPI: deleting certificates and things.
type DeleteAPI interface {
	IoTAPI
	DeleteCertificate(ctx context.Context, in *iot.DeleteCertificateInput, optFns ...func(*iot.Options)) (*iot.DeleteCertificateOutput, error)
	DeleteThing(ctx context.Context, in *iot.DeleteThingInput, optFns ...func(*iot.Options)) (*iot.DeleteThingOutput, error)
}

// ShadowAPI deletes a thing's classic shadow; a shadow that does not exist is not an error.
type ShadowAPI interface {
	DeleteThingShadow(ctx context.Context, thing string) error
}

// DenyListUpdateAPI writes a decommissioned device's deny-list entry and reads back what earlier runs recorded in it.
type DenyListUpdateAPI interface {
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

var (
	_ DeleteAPI         = (*iot.Client)(nil)
	_ DenyListUpdateAPI = (*dynamodb.Client)(nil)
)

// Deleters are the clients decommissioning deletes with.
type Deleters struct {
	IoT      DeleteAPI // paced like the Fleet's other IoT client (the same client, in fleetctl)
	Shadows  ShadowAPI // the account's IoT data endpoint
	DenyList DenyListUpdateAPI
}

// WithDecommission gives the Fleet what decommissioning deletes with.
func WithDecommission(d Deleters) Option {
	return func(f *Fleet) { f.deleter, f.shadows, f.denyUpdate = d.IoT, d.Shadows, d.DenyList }
}

// DenyListCertificates is the deny-list entry's string set of the certificate ARNs a decommissioning found on the
// device: a run stopped between detaching a certificate and deleting it leaves it on no thing, and the next run
// finds it here. Only fleetctl writes and reads it; the JITR function reads the entry's existence.
const DenyListCertificates = "Certificates"

// DecommissionReason is written to the deny-list entry of a decommissioned device.
const DecommissionReason = "decommissioned"

// Targets say which devices to decommission: the devices named, those not connected for StaleDays (the query
// `fleetctl stale` runs), or every device of the stack (All: then the certificates of the stack's CAs that no
// device holds any more are retired too, so `cdk destroy` finds nothing left to remove).
type Targets struct {
	IDs       []string
	StaleDays int // > 0: the stale devices
	All       bool
}

// Resolve turns the targets into thing names, sorted and without repeats.
func (f *Fleet) Resolve(ctx context.Context, t Targets) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(thing string) {
		if !seen[thing] {
			seen[thing] = true
			out = append(out, thing)
		}
	}
	for _, id := range t.IDs {
		thing, err := thingName(id)
		if err != nil {
			return nil, err
		}
		add(thing)
	}
	if t.StaleDays > 0 {
		stale, err := f.Stale(ctx, t.StaleDays)
		if err != nil {
			return nil, err
		}
		for _, d := range stale {
			add(d.Thing)
		}
	}
	if t.All {
		things, err := f.allThings(ctx)
		if err != nil {
			return nil, err
		}
		for _, th := range things {
			add(th)
		}
	}
	sort.Strings(out)
	return out, nil
}

// allThings lists the stack's things from the fleet index (100 a page), or by ListThings when the account has no
// index.
func (f *Fleet) allThings(ctx context.Context) ([]string, error) {
	var out []string
	if f.index != nil {
		err := f.search(ctx, f.ours(), func(d types.ThingDocument) {
			if d.Attributes[contract.AttrProvisionedBy] == f.stack.Name {
				out = append(out, aws.ToString(d.ThingName))
			}
		})
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, ErrIndexOff) {
			return nil, err
		}
		out = nil
	}
	things, err := f.things(ctx)
	if err != nil {
		return nil, err
	}
	for _, th := range things {
		out = append(out, aws.ToString(th.ThingName))
	}
	return out, nil
}

// Plan is what a decommissioning will do: the devices, the calls by API and the time they take at the rates the
// client is paced to (the slowest API sets the pace: the others run beside it).
type Plan struct {
	Things     []string       `json:"thingNames"`
	Calls      workplan.Calls `json:"callsByApi"`
	TotalCalls int            `json:"totalCalls"`
	Projected  time.Duration  `json:"projectedNanoseconds"`
	Bottleneck string         `json:"bottleneck,omitempty"`
}

// PlanDecommission counts the calls of decommissioning things and projects their time at rates (requests per
// second by API; an API without a rate is not paced: it costs calls, not time).
func PlanDecommission(things []string, rates map[string]float64) Plan {
	p := Plan{Things: things, Calls: workplan.Decommission(len(things))}
	p.TotalCalls = p.Calls.Total()
	p.Projected, p.Bottleneck = p.Calls.Project(rates)
	return p
}

// DecommissionResult is what a decommissioning did.
type DecommissionResult struct {
	Devices      int `json:"devices"`      // decommissioned (or found already gone)
	Certificates int `json:"certificates"` // retired: INACTIVE, detached, deleted
	// LeftoverCertificates are certificates of the stack's CAs no device held, retired by -all.
	LeftoverCertificates int      `json:"leftoverCertificates"`
	Failed               []string `json:"failed,omitempty"` // thing names (or certificate ids) not finished: rerun
}

// DecommissionConcurrency is how many devices are in flight at once: enough that every API's pacer stays busy.
const DecommissionConcurrency = 16

// Decommission retires each device for good. For each thing: first its deny-list entry (the JITR function reads the
// deny-list, so the device's next boot cannot register it again; `allow` undoes it), then every certificate
// attached to the thing is set INACTIVE, detached from the device policy and the thing, and deleted, then its
// shadow and the thing are deleted. Every step accepts work already done, so a run that was stopped is finished by
// running it again. With sweep (decommission -all) the certificates of the stack's CAs that are left afterwards
// (pending, refused, revoked ones no thing holds) are retired too. Progress (n/N, rate, ETA) goes to the progress
// writer.
func (f *Fleet) Decommission(ctx context.Context, things []string, sweep bool) (*DecommissionResult, error) {
	if f.deleter == nil {
		return nil, errors.New("no client to delete with (operate.WithDecommission)")
	}
	res := &DecommissionResult{}
	var (
		mu    sync.Mutex
		next  atomic.Int64
		done  atomic.Int64
		certs atomic.Int64
		wg    sync.WaitGroup
		first error
	)
	prog := newProgress(f, "decommission", len(things), time.Now())
	for range min(DecommissionConcurrency, len(things)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(things) && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				n, err := f.decommissionOne(ctx, things[i])
				certs.Add(int64(n))
				if err != nil {
					mu.Lock()
					res.Failed = append(res.Failed, things[i])
					if first == nil {
						first = err
					}
					mu.Unlock()
					continue
				}
				prog.step(int(done.Add(1)))
			}
		}()
	}
	wg.Wait()
	res.Devices, res.Certificates = int(done.Load()), int(certs.Load())
	prog.finish(res.Devices)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("decommission stopped after %d of %d devices (%w): run it again to finish, every step accepts work already done", res.Devices, len(things), err)
	}
	if first != nil {
		sort.Strings(res.Failed)
		return res, fmt.Errorf("decommission: %d of %d devices not finished (first: %w): run it again to finish", len(res.Failed), len(things), first)
	}
	if sweep {
		n, err := f.retireLeftoverCertificates(ctx)
		res.LeftoverCertificates = n
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// decommissionOne retires one device and returns how many certificates it retired.
func (f *Fleet) decommissionOne(ctx context.Context, thing string) (int, error) {
	principals, exists, err := f.principals(ctx, thing)
	if err != nil {
		return 0, err
	}
	// The deny-list entry before any change: from now on the JITR function refuses the device's new certificates.
	// It records the certificates found, and returns those earlier runs recorded.
	recorded, err := f.denyDecommissioned(ctx, thing, principals)
	if err != nil {
		return 0, err
	}
	retired := 0
	for _, arn := range union(recorded, principals) {
		done, err := f.retireCertificate(ctx, thing, arn)
		if err != nil {
			return retired, err
		}
		if done {
			retired++
		}
	}
	if !exists {
		return retired, nil // the thing is gone: a run before this one finished it
	}
	if err := f.shadows.DeleteThingShadow(ctx, thing); err != nil {
		return retired, fmt.Errorf("delete the shadow of %s: %w", thing, err)
	}
	// A JITR invocation that read the deny-list before the entry existed may have attached a certificate since:
	// DeleteThing then refuses (principals still attached), and they are retired too.
	for attempt := 1; ; attempt++ {
		_, err := f.deleter.DeleteThing(ctx, &iot.DeleteThingInput{ThingName: aws.String(thing)})
		if err == nil || iotapi.IsNotFound(err) {
			return retired, nil
		}
		if !iotapi.HasErrorCode(err, "InvalidRequestException") || attempt == 3 {
			return retired, fmt.Errorf("delete thing %s: %w", thing, err)
		}
		late, _, err := f.principals(ctx, thing)
		if err != nil {
			return retired, err
		}
		for _, arn := range late {
			done, err := f.retireCertificate(ctx, thing, arn)
			if err != nil {
				return retired, err
			}
			if done {
				retired++
			}
		}
	}
}

// principals lists the certificates attached to the thing, and whether the thing exists.
func (f *Fleet) principals(ctx context.Context, thing string) ([]string, bool, error) {
	var out []string
	var next *string
	for {
		page, err := f.deleter.ListThingPrincipals(ctx, &iot.ListThingPrincipalsInput{ThingName: aws.String(thing), NextToken: next})
		if iotapi.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("list principals of thing %s: %w", thing, err)
		}
		out = append(out, page.Principals...)
		if aws.ToString(page.NextToken) == "" {
			return out, true, nil
		}
		next = page.NextToken
	}
}

// denyDecommissioned writes the device's deny-list entry (reason decommissioned), adds certs to the certificates
// it records, and returns all it records.
func (f *Fleet) denyDecommissioned(ctx context.Context, thing string, certs []string) ([]string, error) {
	expr := "SET #at = :at, #by = :by, #reason = :reason"
	names := map[string]string{"#at": contract.DenyListRevokedAt, "#by": contract.DenyListRevokedBy, "#reason": contract.DenyListReason}
	values := map[string]ddbtypes.AttributeValue{
		":at":     &ddbtypes.AttributeValueMemberS{Value: f.now().UTC().Format(time.RFC3339)},
		":by":     &ddbtypes.AttributeValueMemberS{Value: f.actor},
		":reason": &ddbtypes.AttributeValueMemberS{Value: DecommissionReason},
	}
	if len(certs) > 0 {
		expr += " ADD #certs :certs"
		names["#certs"] = DenyListCertificates
		values[":certs"] = &ddbtypes.AttributeValueMemberSS{Value: certs}
	}
	out, err := f.denyUpdate.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(f.stack.DenyListTable),
		Key:              map[string]ddbtypes.AttributeValue{contract.DenyListKey: &ddbtypes.AttributeValueMemberS{Value: thing}},
		UpdateExpression: aws.String(expr), ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		ReturnValues: ddbtypes.ReturnValueAllNew})
	if err != nil {
		return nil, fmt.Errorf("put %s on the deny-list: %w", thing, err)
	}
	if ss, ok := out.Attributes[DenyListCertificates].(*ddbtypes.AttributeValueMemberSS); ok {
		return ss.Value, nil
	}
	return nil, nil
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// retireCertificate sets a certificate INACTIVE, detaches it from the device policy and (thing non-empty) the
// thing, and deletes it; it reports whether it deleted it. A REVOKED certificate keeps its status (AWS IoT refuses
// to change it) and is deleted as it is; one already gone is done.
func (f *Fleet) retireCertificate(ctx context.Context, thing, arn string) (bool, error) {
	id := arn
	if i := strings.LastIndex(arn, "/"); i >= 0 {
		id = arn[i+1:]
	}
	_, err := f.deleter.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: types.CertificateStatusInactive})
	switch {
	case iotapi.IsNotFound(err):
		return false, f.detachThing(ctx, thing, arn, id) // deleted already; a stale attachment may remain
	case err != nil && !iotapi.HasErrorCode(err, "CertificateStateException"): // REVOKED stays REVOKED
		return false, fmt.Errorf("deactivate certificate %s: %w", id, err)
	}
	if _, err := f.deleter.DetachPolicy(ctx, &iot.DetachPolicyInput{PolicyName: aws.String(f.stack.DevicePolicy), Target: aws.String(arn)}); err != nil && !iotapi.IsNotFound(err) {
		return false, fmt.Errorf("detach policy %s from certificate %s: %w", f.stack.DevicePolicy, id, err)
	}
	if err := f.detachThing(ctx, thing, arn, id); err != nil {
		return false, err
	}
	_, err = f.deleter.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String(id)})
	if err != nil && !iotapi.IsNotFound(err) {
		return false, fmt.Errorf("delete certificate %s: %w", id, err)
	}
	return err == nil, nil
}

func (f *Fleet) detachThing(ctx context.Context, thing, arn, id string) error {
	if thing == "" {
		return nil
	}
	if _, err := f.deleter.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String(thing), Principal: aws.String(arn)}); err != nil && !iotapi.IsNotFound(err) {
		return fmt.Errorf("detach certificate %s from thing %s: %w", id, thing, err)
	}
	return nil
}

// retireLeftoverCertificates retires every certificate of the stack's CAs still registered once the devices are
// gone: those no thing holds (pending, refused, revoked). One attached to a thing outside the stack makes its
// DeleteCertificate fail, naming it: nobody else's attachment is taken away.
func (f *Fleet) retireLeftoverCertificates(ctx context.Context) (int, error) {
	n := 0
	for _, ca := range f.stack.CAIDs {
		// Deleting shifts the pages: list from the start again until the first page comes back empty.
		seen := map[string]bool{}
		for {
			res, err := f.deleter.ListCertificatesByCA(ctx, &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(ca), PageSize: aws.Int32(f.pageSize)})
			if iotapi.IsNotFound(err) {
				break
			}
			if err != nil {
				return n, fmt.Errorf("list certificates of CA %s: %w", ca, err)
			}
			if len(res.Certificates) == 0 {
				break
			}
			for _, c := range res.Certificates {
				id := aws.ToString(c.CertificateId)
				if seen[id] {
					return n, fmt.Errorf("certificate %s of CA %s is still listed after its deletion", id, ca)
				}
				seen[id] = true
				done, err := f.retireCertificate(ctx, "", aws.ToString(c.CertificateArn))
				if err != nil {
					return n, err
				}
				if done {
					n++
				}
			}
			f.logf("leftover certificates of CA %s: %d retired", short(ca), n)
		}
	}
	return n, nil
}

// progress prints n/N, the rate and the time left, at most once a second and at the end.
type progress struct {
	mu    sync.Mutex
	f     *Fleet
	what  string
	total int
	start time.Time
	last  time.Time
}

func newProgress(f *Fleet, what string, total int, start time.Time) *progress {
	return &progress{f: f, what: what, total: total, start: start}
}

func (p *progress) step(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < time.Second && n != p.total {
		return
	}
	p.last = now
	p.print(n, now)
}

func (p *progress) print(n int, now time.Time) {
	elapsed := now.Sub(p.start).Seconds()
	rate, eta := 0.0, "-"
	if elapsed > 0 && n > 0 {
		rate = float64(n) / elapsed
		eta = time.Duration(float64(p.total-n) / rate * float64(time.Second)).Round(time.Second).String()
	}
	p.f.logf("%s: %d/%d devices, %.1f/s, ETA %s", p.what, n, p.total, rate, eta)
}

func (p *progress) finish(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n != p.total {
		p.print(n, time.Now())
	}
}
