package devicesim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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
	f, err := os.Open(path)
	if err != nil {
		return RetryPolicy{}, fmt.Errorf("read device retry policy: %w", err)
	}
	defer f.Close()
	defines, err := parseDefines(f)
	if err != nil {
		return RetryPolicy{}, fmt.Errorf("parse %s: %w", path, err)
	}
	values := map[string]int64{}
	for _, name := range []string{defineBase, defineMax, defineMaxAttempts, defineMaxTotal, defineStableSession, defineMinConnectInterval} {
		expr, ok := defines[name]
		if !ok {
			return RetryPolicy{}, fmt.Errorf("parse %s: #define %s missing", path, name)
		}
		v, err := evalIntExpr(expr)
		if err != nil {
			return RetryPolicy{}, fmt.Errorf("parse %s: #define %s %s: %w", path, name, expr, err)
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

// parseDefines returns the value text of every object-like #define, comments stripped.
func parseDefines(r io.Reader) (map[string]string, error) {
	defines := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(strings.TrimSpace(strings.TrimPrefix(line, "#")))
		if len(fields) < 3 || fields[0] != "define" || strings.Contains(fields[1], "(") {
			continue
		}
		value := strings.Join(fields[2:], " ")
		if i := strings.Index(value, "/*"); i >= 0 {
			value = value[:i]
		}
		if i := strings.Index(value, "//"); i >= 0 {
			value = value[:i]
		}
		defines[fields[1]] = strings.TrimSpace(value)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	return defines, nil
}

// evalIntExpr evaluates what the policy's #defines hold: decimal integers with optional U/L suffixes, + - * /
// and parentheses.
func evalIntExpr(expr string) (int64, error) {
	e := &intExpr{s: strings.ReplaceAll(expr, " ", "")}
	v, err := e.sum()
	if err != nil {
		return 0, err
	}
	if e.i != len(e.s) {
		return 0, fmt.Errorf("unexpected %q", e.s[e.i:])
	}
	return v, nil
}

type intExpr struct {
	s string
	i int
}

func (e *intExpr) sum() (int64, error) {
	v, err := e.product()
	for err == nil && e.i < len(e.s) && (e.s[e.i] == '+' || e.s[e.i] == '-') {
		op := e.s[e.i]
		e.i++
		var w int64
		if w, err = e.product(); err == nil {
			if op == '+' {
				v += w
			} else {
				v -= w
			}
		}
	}
	return v, err
}

func (e *intExpr) product() (int64, error) {
	v, err := e.operand()
	for err == nil && e.i < len(e.s) && (e.s[e.i] == '*' || e.s[e.i] == '/') {
		op := e.s[e.i]
		e.i++
		var w int64
		if w, err = e.operand(); err == nil {
			switch {
			case op == '*':
				v *= w
			case w == 0:
				err = errors.New("division by zero")
			default:
				v /= w
			}
		}
	}
	return v, err
}

func (e *intExpr) operand() (int64, error) {
	if e.i < len(e.s) && e.s[e.i] == '(' {
		e.i++
		v, err := e.sum()
		if err != nil {
			return 0, err
		}
		if e.i >= len(e.s) || e.s[e.i] != ')' {
			return 0, errors.New("missing )")
		}
		e.i++
		return v, nil
	}
	start := e.i
	for e.i < len(e.s) && e.s[e.i] >= '0' && e.s[e.i] <= '9' {
		e.i++
	}
	if start == e.i {
		return 0, fmt.Errorf("want a decimal integer at %q", e.s[start:])
	}
	v, err := strconv.ParseInt(e.s[start:e.i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse integer: %w", err)
	}
	for e.i < len(e.s) && strings.ContainsRune("uUlL", rune(e.s[e.i])) {
		e.i++
	}
	return v, nil
}
