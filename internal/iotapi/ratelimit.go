package iotapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// RateLimits are requests per second per API operation name (DescribeCertificate, ...), for one client.
type RateLimits map[string]float64

// ParseRateLimits reads limits written as a JSON object, e.g. {"DescribeCertificate":5,"UpdateCertificate":5}.
// Empty text means no limits.
func ParseRateLimits(text string) (RateLimits, error) {
	limits := RateLimits{}
	if text == "" {
		return limits, nil
	}
	if err := json.Unmarshal([]byte(text), &limits); err != nil {
		return nil, fmt.Errorf("parse rate limits: %w", err)
	}
	for api, rate := range limits {
		if rate <= 0 {
			return nil, fmt.Errorf("parse rate limits: %s has rate %v, want a positive number", api, rate)
		}
	}
	return limits, nil
}

// ErrNoTimeLeft is returned, without waiting, by a call whose turn under its rate limit would come at or after the
// caller's deadline: the call could not complete, and waiting for the turn would only keep the slot from a call
// that can (the next invocation of the same execution environment).
var ErrNoTimeLeft = errors.New("the rate limit's next free slot is past the deadline")

// pacer spaces calls of one operation 1/rate apart. It allows no burst, so N clients each paced at quota÷N never
// exceed the quota together. One waiter at a time holds the turn, from its reservation until its slot, so a change
// of the rate applies from the next slot on and nobody holds a slot further ahead than one interval.
//
// The rate adapts as the SDK's adaptive retry mode does, between the client's share of the quota (base) and a
// ceiling its owner sets (SetShares, at most maxShares shares: the whole quota, while the other clients sharing
// it are idle): it grows by one share per second of calls answered without throttling and halves, never below
// the share, on a ThrottlingException, after which it holds for throttleHold before it grows again, so a client
// whose neighbours are busy after all probes the quota rarely.
type pacer struct {
	turn chan struct{}

	mu        sync.Mutex
	base      float64 // the client's share of the quota
	maxShares float64 // the ceiling's limit, in shares
	ceiling   float64 // the rate the owner allows now: base × shares
	rate      float64
	last      time.Time // the last slot given out; zero before the first
	heldUntil time.Time // no growth before it: the last throttle + throttleHold
}

// throttleHold is how long a pacer's rate stays put after a ThrottlingException before it grows again.
const throttleHold = 5 * time.Second

func newPacer(rate, maxShares, shares float64) *pacer {
	p := &pacer{turn: make(chan struct{}, 1), base: rate, maxShares: max(1, maxShares), rate: rate}
	p.setShares(shares)
	return p
}

func (p *pacer) interval() time.Duration { return time.Duration(float64(time.Second) / p.rate) }

// reserve gives the caller the next free slot at or after now, or ErrNoTimeLeft (and reserves nothing) when that
// slot is not before the deadline; prev is what unreserve puts back.
func (p *pacer) reserve(now, deadline time.Time, hasDeadline bool) (slot, prev time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slot = now
	if !p.last.IsZero() {
		if next := p.last.Add(p.interval()); next.After(now) {
			slot = next
		}
	}
	if hasDeadline && !slot.Before(deadline) {
		return time.Time{}, time.Time{}, ErrNoTimeLeft
	}
	prev, p.last = p.last, slot
	return slot, prev, nil
}

// unreserve gives back the slot reserve gave out last, for a call that was not sent after all.
func (p *pacer) unreserve(prev time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = prev
}

// wait holds the turn until the caller's slot, then runs the call's admission check (WithAdmission): a call it
// refuses gives its slot back and is not sent.
func (p *pacer) wait(ctx context.Context) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.turn }()
	deadline, hasDeadline := ctx.Deadline()
	slot, prev, err := p.reserve(time.Now(), deadline, hasDeadline)
	if err != nil {
		return err
	}
	if d := time.Until(slot); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			p.unreserve(prev)
			return ctx.Err()
		case <-t.C:
		}
	}
	if err := Admit(ctx); err != nil {
		p.unreserve(prev)
		return err
	}
	return nil
}

// succeeded grows the rate after a call the quota admitted at now: by base÷rate a call, one share per second of
// calls, up to the ceiling; not within throttleHold of a throttle.
func (p *pacer) succeeded(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.heldUntil) {
		return
	}
	p.rate = min(p.ceiling, p.rate+p.base/p.rate)
}

// throttled halves the rate after a ThrottlingException at now, never below the share, and holds it there for
// throttleHold.
func (p *pacer) throttled(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = max(p.base, p.rate/2)
	p.heldUntil = now.Add(throttleHold)
}

// setShares sets the ceiling to shares × base (between 1 and maxShares shares); a lower ceiling applies at once.
func (p *pacer) setShares(shares float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ceiling = p.base * min(max(shares, 1), p.maxShares)
	p.rate = min(p.rate, p.ceiling)
}

func (p *pacer) currentRate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

// admissionKey is the context key of a call's admission check.
type admissionKey struct{}

// WithAdmission returns ctx carrying an admission check for the AWS IoT calls made with it: a paced call runs it
// when its slot comes (an unpaced one before it is sent), and a call it refuses is not sent and fails with the
// check's error, its slot given back. A caller that may have to give way (a retirement, to activations) checks
// whether it still may at the last moment, not when it joined the queue of its operation's pacer.
func WithAdmission(ctx context.Context, check func(context.Context) error) context.Context {
	return context.WithValue(ctx, admissionKey{}, check)
}

// WithoutAdmission returns ctx with no admission check: calls that must run once their work has started (the
// rest of a certificate's retirement after its deactivation).
func WithoutAdmission(ctx context.Context) context.Context {
	return context.WithValue(ctx, admissionKey{}, (func(context.Context) error)(nil))
}

// Admit runs the admission check ctx carries, if any. The pacing middleware calls it; a stand-in for a paced
// client (a test's fake) calls it first thing.
func Admit(ctx context.Context) error {
	if check, _ := ctx.Value(admissionKey{}).(func(context.Context) error); check != nil {
		return check(ctx)
	}
	return nil
}

// Share returns every rate of l times share: a client's part of quotas it shares with other clients (fleetctl
// takes -rate-share of each AWS IoT quota and leaves the rest to the JITR function).
func (l RateLimits) Share(share float64) RateLimits {
	out := make(RateLimits, len(l))
	for api, rate := range l {
		out[api] = rate * share
	}
	return out
}

// PaceOption tunes NewPacing and WithRateLimits.
type PaceOption func(*pacers)

// PaceUnlisted paces every operation without an entry in the limits to rate, each operation on its own like the
// listed ones (AWS IoT's quotas are per operation). Without it, unlisted operations are not paced.
func PaceUnlisted(rate float64) PaceOption {
	return func(p *pacers) { p.unlisted = rate }
}

// MaxShares lets SetShares raise every rate up to n times its limit: the limits are one of n equal shares of the
// account's quotas, and a client may take the whole quota while the others are idle. Without it, SetShares
// changes nothing.
func MaxShares(n float64) PaceOption {
	return func(p *pacers) { p.maxShares = n }
}

// pacers holds a client's pacer of each operation, created on first use for unlisted operations.
type pacers struct {
	mu        sync.Mutex
	byOp      map[string]*pacer
	unlisted  float64 // rate of an operation not in the limits; 0: not paced
	maxShares float64
	shares    float64 // what SetShares set last
}

// of is the pacer of operation op, or nil when op is not paced.
func (p *pacers) of(op string) *pacer {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc, ok := p.byOp[op]; ok {
		return pc
	}
	if p.unlisted <= 0 {
		return nil
	}
	pc := newPacer(p.unlisted, p.maxShares, p.shares)
	p.byOp[op] = pc
	return pc
}

// Pacing paces a client's AWS IoT calls to its share of the account's quotas (see WithRateLimits), and lets its
// owner raise the pace to the whole quota while the other clients sharing it are idle (SetShares).
type Pacing struct{ p *pacers }

// NewPacing returns the pacing of a client: limits are its share of each operation's quota.
func NewPacing(limits RateLimits, opts ...PaceOption) *Pacing {
	p := &pacers{byOp: make(map[string]*pacer, len(limits)), maxShares: 1, shares: 1}
	for _, opt := range opts {
		opt(p)
	}
	for api, rate := range limits {
		p.byOp[api] = newPacer(rate, p.maxShares, p.shares)
	}
	return &Pacing{p: p}
}

// SetShares lets every operation's rate rise to shares times its limit (between 1 and MaxShares): the owner
// knows the clients it shares the quotas with are idle. The rate gets there by the adaptive growth, and halves
// back toward its limit if AWS IoT throttles. SetShares(1) takes every rate back to its limit at once.
func (g *Pacing) SetShares(shares float64) {
	g.p.mu.Lock()
	defer g.p.mu.Unlock()
	g.p.shares = shares
	for _, pc := range g.p.byOp {
		pc.setShares(shares)
	}
}

// Rate is the rate op is paced to now, 0 when op is not paced.
func (g *Pacing) Rate(op string) float64 {
	if pc := g.p.of(op); pc != nil {
		return pc.currentRate()
	}
	return 0
}

// throttles recognises a throttled answer as the SDK's retryers do.
var throttles = retry.IsErrorThrottles(retry.DefaultThrottles)

// Middleware is the API option of the pacing: use it as a client's APIOptions entry; every call of the client
// shares the pacers. It paces every attempt (retries included) of each limited operation, runs the call's
// admission check (WithAdmission), and adapts the operation's rate to the answer: a ThrottlingException halves
// it (and holds it for throttleHold), any other answer of AWS IoT grows it toward the ceiling.
func (g *Pacing) Middleware() func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("SphereRateLimit",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				op := middleware.GetOperationName(ctx)
				pc := g.p.of(op)
				if pc != nil {
					if err := pc.wait(ctx); err != nil {
						return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("wait for the %s rate limit: %w", op, err)
					}
				} else if err := Admit(ctx); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("admit %s: %w", op, err)
				}
				out, md, err := next.HandleFinalize(ctx, in)
				var apiErr smithy.APIError
				switch {
				case pc == nil:
				case throttles.IsErrorThrottle(err) == aws.TrueTernary:
					pc.throttled(time.Now())
				case err == nil || errors.As(err, &apiErr):
					pc.succeeded(time.Now())
				}
				return out, md, err
			}), middleware.After)
	}
}

// WithRateLimits returns an API option that paces every attempt (retries included) of each limited operation to
// its rate, so the client keeps its own calls under the share of the account's quota it was given instead of
// learning the quota from ThrottlingExceptions. Use it as a client's APIOptions entry; the pacers live as long as
// the option, so every call of the client shares them. It is NewPacing(limits, opts...).Middleware().
func WithRateLimits(limits RateLimits, opts ...PaceOption) func(*middleware.Stack) error {
	return NewPacing(limits, opts...).Middleware()
}
