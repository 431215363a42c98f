package devicesim

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const repoRoot = "../.."

func TestDeviceRetryPolicyReadsTheHeader(t *testing.T) {
	p, err := DeviceRetryPolicy(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	// The figures retry_policy.h documents for a fleet storm; a change there must be a change here too.
	want := RetryPolicy{
		Base: 2 * time.Second, Max: 30 * time.Second, MaxAttempts: 180,
		MaxTotal: 90 * time.Minute, StableSession: time.Minute, MinConnectInterval: time.Second,
	}
	if p != want {
		t.Fatalf("DeviceRetryPolicy = %+v, want %+v", p, want)
	}
	// The C checks of RetryPolicy_IsValid, on the parsed figures: worst case within MaxTotal, mean at least 30 min.
	var worst time.Duration
	for retry := range p.MaxAttempts {
		worst += p.Ceiling(retry)
	}
	if worst > p.MaxTotal || worst/2 < 30*time.Minute {
		t.Errorf("worst-case total %v: want ≤ %v and a mean (half) ≥ 30m", worst, p.MaxTotal)
	}
}

func TestDeviceRetryPolicyRejectsABrokenHeader(t *testing.T) {
	header, err := os.ReadFile(filepath.Join(repoRoot, RetryPolicyHeader))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		pattern, replace, wantErr string
	}{
		"missing define":  {`(?m)^#define RETRY_MAX_ATTEMPTS .*$`, ``, "#define RETRY_MAX_ATTEMPTS missing"},
		"renamed define":  {`(?m)^#define RETRY_STABLE_SESSION_MS `, `#define RETRY_STABLE_MS `, "#define RETRY_STABLE_SESSION_MS missing"},
		"not a number":    {`(?m)^#define RETRY_MAX_DELAY_MS .*$`, `#define RETRY_MAX_DELAY_MS THIRTY_SECONDS`, "want a decimal integer"},
		"zero":            {`(?m)^#define RETRY_BASE_DELAY_MS .*$`, `#define RETRY_BASE_DELAY_MS 0U`, "want > 0"},
		"base above cap":  {`(?m)^#define RETRY_BASE_DELAY_MS .*$`, `#define RETRY_BASE_DELAY_MS 60000U`, "above RETRY_MAX_DELAY_MS"},
		"unbalanced expr": {`(?m)^#define RETRY_MAX_TOTAL_MS .*$`, `#define RETRY_MAX_TOTAL_MS (90U * 60U`, "missing )"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			broken := regexp.MustCompile(c.pattern).ReplaceAllString(string(header), c.replace)
			if broken == string(header) {
				t.Fatalf("pattern %q changed nothing: the header moved on, fix the test", c.pattern)
			}
			root := t.TempDir()
			path := filepath.Join(root, RetryPolicyHeader)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := DeviceRetryPolicy(root)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("DeviceRetryPolicy on a header with %s: error %v, want one containing %q", name, err, c.wantErr)
			}
		})
	}
	if _, err := DeviceRetryPolicy(t.TempDir()); err == nil {
		t.Error("DeviceRetryPolicy without a header: no error")
	}
}

// backoffUnits replays backoffAlgorithm v1.4.1's BackoffAlgorithm_GetNextBackoff in its own 16-bit units: the
// draw is randomValue % (nextJitterMax + 1), then nextJitterMax doubles while below maxBackoffDelay / 2, else
// becomes maxBackoffDelay.
func backoffUnits(base, maxDelay uint16, retries int, random uint32) (draws, ceilings []uint16) {
	next := base
	for range retries {
		ceilings = append(ceilings, next)
		draws = append(draws, uint16(random%(uint32(next)+1)))
		if next < maxDelay/2 {
			next += next
		} else {
			next = maxDelay
		}
	}
	return draws, ceilings
}

func TestCeilingMatchesBackoffAlgorithm(t *testing.T) {
	const unit = 10 * time.Millisecond // RETRY_BACKOFF_UNIT_MS
	device, err := DeviceRetryPolicy(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []RetryPolicy{
		device,
		{Base: 2 * time.Second, Max: 120 * time.Second, MaxAttempts: 12}, // the policy before the storm work
		{Base: 100 * time.Millisecond, Max: 1 * time.Second, MaxAttempts: 8},
		{Base: 30 * time.Millisecond, Max: 1000 * time.Millisecond, MaxAttempts: 10}, // ceilings not powers of two of the cap
	} {
		_, ceilings := backoffUnits(uint16(p.Base/unit), uint16(p.Max/unit), p.MaxAttempts, 0)
		for retry, c := range ceilings {
			if got := p.Ceiling(retry); got != time.Duration(c)*unit {
				t.Fatalf("%+v: Ceiling(%d) = %v, backoffAlgorithm's %v", p, retry, got, time.Duration(c)*unit)
			}
			// min(Max, Base·2^retry), what retry_policy.c's RetryPolicy_CeilingMs computes.
			if want := min(p.Max, p.Base<<min(retry, 30)); p.Ceiling(retry) != want {
				t.Fatalf("%+v: Ceiling(%d) = %v, min(Max, Base·2^retry) = %v", p, retry, p.Ceiling(retry), want)
			}
		}
	}
	// The device's ceilings: 2, 4, 8, 16 s, then the 30 s cap.
	for retry, want := range []time.Duration{2, 4, 8, 16, 30, 30, 30} {
		if got := device.Ceiling(retry); got != want*time.Second {
			t.Errorf("device Ceiling(%d) = %v, want %v", retry, got, want*time.Second)
		}
	}
}

func TestDelayIsFullJitterUnderTheCeiling(t *testing.T) {
	p, err := DeviceRetryPolicy(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	const almostOne = 1 - 1e-12
	rng := rand.New(rand.NewPCG(13, 2))
	for retry := range p.MaxAttempts {
		ceiling := p.Ceiling(retry)
		if d := p.Delay(retry, func() float64 { return 0 }); d != 0 {
			t.Fatalf("Delay(%d) with rnd 0 = %v, want 0", retry, d)
		}
		if d := p.Delay(retry, func() float64 { return almostOne }); d != ceiling {
			t.Fatalf("Delay(%d) with rnd → 1 = %v, want the ceiling %v", retry, d, ceiling)
		}
		if d := p.Delay(retry, func() float64 { return 0.5 }); d < ceiling/2-time.Nanosecond || d > ceiling/2+time.Nanosecond {
			t.Fatalf("Delay(%d) with rnd 0.5 = %v, want half the ceiling %v", retry, d, ceiling)
		}
		for range 50 {
			if d := p.Delay(retry, rng.Float64); d < 0 || d > ceiling {
				t.Fatalf("Delay(%d) = %v, outside [0, %v]", retry, d, ceiling)
			}
		}
	}
}

func TestScaledDividesEveryDuration(t *testing.T) {
	p, err := DeviceRetryPolicy(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Scaled(10)
	want := RetryPolicy{
		Base: 200 * time.Millisecond, Max: 3 * time.Second, MaxAttempts: p.MaxAttempts,
		MaxTotal: 9 * time.Minute, StableSession: 6 * time.Second, MinConnectInterval: 100 * time.Millisecond,
	}
	if got != want {
		t.Fatalf("Scaled(10) = %+v, want %+v", got, want)
	}
	if p.Scaled(1) != p || p.Scaled(0) != p {
		t.Error("Scaled(1) or Scaled(0) changed the policy")
	}
	if got.Ceiling(4) != p.Ceiling(4)/10 {
		t.Errorf("scaled Ceiling(4) = %v, want %v", got.Ceiling(4), p.Ceiling(4)/10)
	}
}
