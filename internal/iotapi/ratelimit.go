package iotapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

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

// pacer spaces calls of one operation 1/rate apart: a caller reserves the next free slot and waits for it. It
// allows no burst, so N clients each paced at quota÷N never exceed the quota together.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

// reserve gives the caller the next free slot at or after now, or ErrNoTimeLeft (and reserves nothing) when that
// slot is not before the deadline.
func (p *pacer) reserve(now, deadline time.Time, hasDeadline bool) (time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slot := p.next
	if slot.Before(now) {
		slot = now
	}
	if hasDeadline && !slot.Before(deadline) {
		return time.Time{}, ErrNoTimeLeft
	}
	p.next = slot.Add(p.interval)
	return slot, nil
}

func (p *pacer) wait(ctx context.Context) error {
	deadline, hasDeadline := ctx.Deadline()
	slot, err := p.reserve(time.Now(), deadline, hasDeadline)
	if err != nil {
		return err
	}
	if d := time.Until(slot); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
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

// PaceOption tunes WithRateLimits.
type PaceOption func(*pacers)

// PaceUnlisted paces every operation without an entry in the limits to rate, each operation on its own like the
// listed ones (AWS IoT's quotas are per operation). Without it, unlisted operations are not paced.
func PaceUnlisted(rate float64) PaceOption {
	return func(p *pacers) { p.unlisted = rate }
}

// pacers holds a client's pacer of each operation, created on first use for unlisted operations.
type pacers struct {
	mu       sync.Mutex
	byOp     map[string]*pacer
	unlisted float64 // rate of an operation not in the limits; 0: not paced
}

func newPacer(rate float64) *pacer {
	return &pacer{interval: time.Duration(float64(time.Second) / rate)}
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
	pc := newPacer(p.unlisted)
	p.byOp[op] = pc
	return pc
}

// WithRateLimits returns an API option that paces every attempt (retries included) of each limited operation to
// its rate, so the client keeps its own calls under the share of the account's quota it was given instead of
// learning the quota from ThrottlingExceptions. Use it as a client's APIOptions entry; the pacers live as long as
// the option, so every call of the client shares them.
func WithRateLimits(limits RateLimits, opts ...PaceOption) func(*middleware.Stack) error {
	p := &pacers{byOp: make(map[string]*pacer, len(limits))}
	for api, rate := range limits {
		p.byOp[api] = newPacer(rate)
	}
	for _, opt := range opts {
		opt(p)
	}
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("SphereRateLimit",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				op := middleware.GetOperationName(ctx)
				if pc := p.of(op); pc != nil {
					if err := pc.wait(ctx); err != nil {
						return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("wait for the %s rate limit: %w", op, err)
					}
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
}
