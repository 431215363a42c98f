package devicesim

import (
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/sphere-jitr/sphere-jitr/testkit/cheader"
)

// RetryPolicyHeader is where the device app declares its reconnect policy, relative to the repository root.
const RetryPolicyHeader = "device/src/retry_policy.h"

// The #defines of RetryPolicyHeader that DeviceRetryPolicy reads, all in milliseconds but the attempt count.
const (
	defineBase               = "RETRY_BASE_DELAY_MS"
	defineMax                = "RETRY_MAX_DELAY_MS"
	defineMaxAttempts        = "RETRY_MAX_ATTEMPTS"
	defineMaxTotal           = "RETRY_MAX_TOTAL_MS"
	defineStableSession      = "RETRY_STABLE_SESSION_MS"
	defineMinConnectInterval = "RETRY_MIN_CONNECT_INTERVAL_MS"
)

// RetryPolicy is the device app's reconnect policy, as the storm simulator replays it: exponential backoff with
// full jitter from Base up to Max, MaxAttempts retries after the first attempt (then the app exits), the whole
// sequence bounded by MaxTotal, the backoff reset only after a session that lasted StableSession, and never two
// CONNECTs less than MinConnectInterval apart.
type RetryPolicy struct {
	Base, Max                                   time.Duration
	MaxAttempts                                 int
	MaxTotal, StableSession, MinConnectInterval time.Duration
}

// DeviceRetryPolicy reads the device app's policy from the #defines of RetryPolicyHeader under repoRoot, so the
// simulators follow the C app rather than a copy of its figures. Every define must be present and a positive
// integer expression.
func DeviceRetryPolicy(repoRoot string) (RetryPolicy, error) {
	path := filepath.Join(repoRoot, RetryPolicyHeader)
	defines, err := cheader.Read(path)
	if err != nil {
		return RetryPolicy{}, fmt.Errorf("read device retry policy: %w", err)
	}
	values := map[string]int64{}
	for _, name := range []string{defineBase, defineMax, defineMaxAttempts, defineMaxTotal, defineStableSession, defineMinConnectInterval} {
		v, err := defines.Int(name)
		if err != nil {
			return RetryPolicy{}, fmt.Errorf("parse %s: %w", path, err)
		}
		if v <= 0 {
			return RetryPolicy{}, fmt.Errorf("parse %s: #define %s is %d, want > 0", path, name, v)
		}
		values[name] = v
	}
	ms := func(name string) time.Duration { return time.Duration(values[name]) * time.Millisecond }
	p := RetryPolicy{
		Base:               ms(defineBase),
		Max:                ms(defineMax),
		MaxAttempts:        int(values[defineMaxAttempts]),
		MaxTotal:           ms(defineMaxTotal),
		StableSession:      ms(defineStableSession),
		MinConnectInterval: ms(defineMinConnectInterval),
	}
	if p.Base > p.Max {
		return RetryPolicy{}, fmt.Errorf("parse %s: %s %v above %s %v", path, defineBase, p.Base, defineMax, p.Max)
	}
	return p, nil
}

// Scaled returns the policy with every duration divided by k, for a storm run STORM_SCALE times faster: the
// attempt count is unchanged, so ratios hold.
func (p RetryPolicy) Scaled(k float64) RetryPolicy {
	if k <= 0 || k == 1 {
		return p
	}
	div := func(d time.Duration) time.Duration { return time.Duration(math.Round(float64(d) / k)) }
	return RetryPolicy{
		Base:               div(p.Base),
		Max:                div(p.Max),
		MaxAttempts:        p.MaxAttempts,
		MaxTotal:           div(p.MaxTotal),
		StableSession:      div(p.StableSession),
		MinConnectInterval: div(p.MinConnectInterval),
	}
}

// Ceiling is the largest delay before retry number retry (0 for the first retry), as backoffAlgorithm v1.4.1
// computes it (source/backoff_algorithm.c, BackoffAlgorithm_GetNextBackoff; the tag device/CMakeLists.txt pins):
// the ceiling starts at Base and after each retry doubles while it is below Max/2, else becomes Max. That is
// min(Max, Base·2^retry) whenever Max is an even number of the device's backoff units, which retry_policy.h
// asserts. Negative retry numbers count as 0.
func (p RetryPolicy) Ceiling(retry int) time.Duration {
	ceiling := p.Base
	for i := 0; i < retry && ceiling < p.Max; i++ {
		if ceiling < p.Max/2 {
			ceiling += ceiling
		} else {
			ceiling = p.Max
		}
	}
	return ceiling
}

// Delay is the wait before retry number retry (0 for the first retry) with full jitter as backoffAlgorithm draws
// it: uniform in [0, Ceiling(retry)], the library taking randomValue % (ceiling + 1) in its units. rnd returns a
// number in [0, 1), as rand.Float64. The device then raises the delay so two CONNECTs are at least
// MinConnectInterval apart (RetryPolicy_ApplyConnectFloor): that is the caller's, which knows when the previous
// attempt started.
func (p RetryPolicy) Delay(retry int, rnd func() float64) time.Duration {
	ceiling := p.Ceiling(retry)
	d := time.Duration(rnd() * float64(ceiling+1))
	return min(max(d, 0), ceiling)
}
