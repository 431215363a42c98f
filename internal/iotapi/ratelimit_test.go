package iotapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/smithy-go/middleware"
)

func TestParseRateLimits(t *testing.T) {
	limits, err := ParseRateLimits(`{"DescribeCertificate":5,"AttachPolicy":7.5}`)
	if err != nil || limits["DescribeCertificate"] != 5 || limits["AttachPolicy"] != 7.5 || len(limits) != 2 {
		t.Errorf("ParseRateLimits = %v, %v; want DescribeCertificate 5, AttachPolicy 7.5", limits, err)
	}
	if limits, err := ParseRateLimits(""); err != nil || len(limits) != 0 {
		t.Errorf(`ParseRateLimits("") = %v, %v; want no limits`, limits, err)
	}
	for _, bad := range []string{`{"DescribeCertificate":0}`, `{"DescribeCertificate":-1}`, `[5]`, `{"DescribeCertificate":"5"}`} {
		if _, err := ParseRateLimits(bad); err == nil {
			t.Errorf("ParseRateLimits(%s) accepted", bad)
		}
	}
}

// A pacer at 1/s hands out the slots 0 s, 1 s, 2 s to callers whose deadline is 2.5 s away and refuses the next
// without reserving it: the refused call does not push later callers back.
func TestPacerReservesNoSlotPastTheDeadline(t *testing.T) {
	p := newPacer(1, 1, 1)
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	deadline := t0.Add(2500 * time.Millisecond)
	for i := range 3 {
		slot, _, err := p.reserve(t0, deadline, true)
		if want := t0.Add(time.Duration(i) * time.Second); err != nil || !slot.Equal(want) {
			t.Fatalf("reservation %d = %v, %v; want %v", i+1, slot, err, want)
		}
	}
	for range 2 {
		if slot, _, err := p.reserve(t0, deadline, true); !errors.Is(err, ErrNoTimeLeft) {
			t.Fatalf("a 4th reservation before a deadline 2.5 s away = %v, %v; want ErrNoTimeLeft", slot, err)
		}
	}
	// A slot exactly at the deadline is refused too: the call could not complete.
	if _, _, err := p.reserve(t0, t0.Add(3*time.Second), true); !errors.Is(err, ErrNoTimeLeft) {
		t.Errorf("a slot at the deadline: %v, want ErrNoTimeLeft", err)
	}
	if slot, _, err := p.reserve(t0, t0.Add(time.Minute), true); err != nil || !slot.Equal(t0.Add(3*time.Second)) {
		t.Errorf("after the refusals, the next caller got %v, %v; want the slot at 3 s (refusals reserve nothing)", slot, err)
	}
	if slot, _, err := p.reserve(t0.Add(time.Hour), time.Time{}, false); err != nil || !slot.Equal(t0.Add(time.Hour)) {
		t.Errorf("a caller without a deadline after an idle hour got %v, %v; want now", slot, err)
	}
}

// Through the SDK: 8 concurrent calls paced at 1/s under a deadline 2.5 s away. Three reach AWS (slots 0, 1, 2 s);
// the other five fail at once with ErrNoTimeLeft, never sent.
func TestRateLimitedCallsPastTheDeadlineAreNotSent(t *testing.T) {
	var sent atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"certificateDescription":{"certificateId":"ab","status":"ACTIVE"}}`))
	}))
	defer srv.Close()
	client := iot.New(iot.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		APIOptions:  []func(*middleware.Stack) error{WithRateLimits(RateLimits{"DescribeCertificate": 1})},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	var (
		wg                sync.WaitGroup
		ok, noTime, other atomic.Int32
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String("ab")})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrNoTimeLeft):
				noTime.Add(1)
			default:
				other.Add(1)
				t.Logf("call failed otherwise: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 3 || noTime.Load() != 5 || other.Load() != 0 || sent.Load() != 3 {
		t.Errorf("answered %d, refused for lack of time %d, failed otherwise %d, requests sent %d; want 3, 5, 0, 3",
			ok.Load(), noTime.Load(), other.Load(), sent.Load())
	}
}

func TestRateLimitsShare(t *testing.T) {
	quotas := RateLimits{"DescribeCertificate": 10, "AttachPolicy": 15}
	got := quotas.Share(0.5)
	if len(got) != 2 || got["DescribeCertificate"] != 5 || got["AttachPolicy"] != 7.5 {
		t.Errorf("Share(0.5) = %v, want DescribeCertificate 5, AttachPolicy 7.5", got)
	}
	if quotas["DescribeCertificate"] != 10 {
		t.Errorf("Share changed the quotas it was given: %v", quotas)
	}
}

// An operation without a limit is paced only with PaceUnlisted, by a pacer of its own that every later call of the
// operation shares.
func TestUnlistedOperationsArePacedOnlyWithADefault(t *testing.T) {
	without := &pacers{byOp: map[string]*pacer{"DescribeCertificate": newPacer(10, 1, 1)}}
	if p := without.of("ListThings"); p != nil {
		t.Errorf("without PaceUnlisted, ListThings is paced every %s; want not paced", p.interval())
	}
	with := &pacers{byOp: map[string]*pacer{"DescribeCertificate": newPacer(10, 1, 1)}}
	PaceUnlisted(4)(with)
	list, describe := with.of("ListThings"), with.of("DescribeThing")
	switch {
	case list == nil || list.interval() != 250*time.Millisecond:
		t.Errorf("with PaceUnlisted(4), ListThings has pacer %v; want one every 250ms", list)
	case with.of("ListThings") != list:
		t.Error("a second ListThings call got another pacer; want the first one's")
	case describe == list:
		t.Error("DescribeThing shares ListThings' pacer; want one per operation (AWS IoT's quotas are per operation)")
	case with.of("DescribeCertificate").interval() != 100*time.Millisecond:
		t.Errorf("the listed DescribeCertificate is paced every %s, want its own 100ms", with.of("DescribeCertificate").interval())
	}
}

// Through the SDK, fleetctl's case: half of a 2/s quota for DescribeCertificate and 1/s for the operations not in
// the table, under a deadline 2.5 s away. Each of the three operations gets the slots 0, 1 and 2 s of its own pacer:
// three calls of each reach AWS and the fourth fails at once with ErrNoTimeLeft. Had the share been ignored,
// DescribeCertificate would have had slots every 0.5 s and sent all four; had the unlisted operations gone
// unpaced, they would have sent all four; had they shared one pacer, three calls between them.
func TestSharedQuotaAndUnlistedDefaultThroughTheSDK(t *testing.T) {
	var mu sync.Mutex
	sent := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent[r.Method+" "+r.URL.Path]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"certificateDescription":{"certificateId":"ab","status":"ACTIVE"},"things":[],"thingName":"t"}`))
	}))
	defer srv.Close()
	client := iot.New(iot.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		APIOptions: []func(*middleware.Stack) error{
			WithRateLimits(RateLimits{"DescribeCertificate": 2}.Share(0.5), PaceUnlisted(1)),
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	calls := map[string]func() error{
		"DescribeCertificate": func() error {
			_, err := client.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String("ab")})
			return err
		},
		"ListThings": func() error {
			_, err := client.ListThings(ctx, &iot.ListThingsInput{})
			return err
		},
		"DescribeThing": func() error {
			_, err := client.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String("t")})
			return err
		},
	}
	var wg sync.WaitGroup
	ok, noTime := map[string]*atomic.Int32{}, map[string]*atomic.Int32{}
	for op, call := range calls {
		ok[op], noTime[op] = &atomic.Int32{}, &atomic.Int32{}
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch err := call(); {
				case err == nil:
					ok[op].Add(1)
				case errors.Is(err, ErrNoTimeLeft):
					noTime[op].Add(1)
				default:
					t.Errorf("%s failed otherwise: %v", op, err)
				}
			}()
		}
	}
	wg.Wait()
	for op := range calls {
		if ok[op].Load() != 3 || noTime[op].Load() != 1 {
			t.Errorf("%s: answered %d, refused for lack of time %d; want 3, 1", op, ok[op].Load(), noTime[op].Load())
		}
	}
	total := 0
	for _, n := range sent {
		total += n
	}
	if total != 9 {
		t.Errorf("requests sent %v (%d in all); want 9, three per operation", sent, total)
	}
}

// The limiter's rate over a sequence of outcomes (a call every 0.1 s): it stays at the share until its owner
// raises the ceiling, then grows by one share per second of calls (base÷rate a call: 5 → 6 → 6.83 → …, at the
// whole quota after eight calls), never above the ceiling; a ThrottlingException halves it, never below the
// share, and holds it for throttleHold; lowering the ceiling applies at once.
func TestLimiterRateOverOutcomes(t *testing.T) {
	p := newPacer(5, 2, 1)
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	now := t0
	tick := func() { now = now.Add(100 * time.Millisecond) }
	succeeded := func() { tick(); p.succeeded(now) }
	throttled := func() { tick(); p.throttled(now) }
	step := func(what string, outcome func(), want float64) {
		t.Helper()
		outcome()
		if got := p.currentRate(); got < want-1e-9 || got > want+1e-9 {
			t.Fatalf("after %s: rate %.4f, want %.4f", what, got, want)
		}
	}
	step("a success at one share", succeeded, 5)
	step("raising the ceiling to 3 shares (2 at most)", func() { p.setShares(3) }, 5)
	step("1 success", succeeded, 6)
	step("2 successes", succeeded, 6+5.0/6)
	for range 5 {
		succeeded()
	}
	if got := p.currentRate(); got <= 9 || got >= 10 {
		t.Fatalf("after 7 successes: rate %.4f, want between 9 and 10", got)
	}
	step("8 successes", succeeded, 10)
	step("9 successes (the whole quota is the ceiling)", succeeded, 10)
	step("a throttle", throttled, 5)
	step("a success 0.1 s after it (held)", succeeded, 5)
	now = now.Add(throttleHold)
	step("a success after the hold", succeeded, 6)
	step("a second throttle (3 would be below the share)", throttled, 5)
	now = now.Add(throttleHold)
	for range 8 {
		succeeded()
	}
	step("lowering the ceiling to one share", func() { p.setShares(1) }, 5)
	step("a success at one share again", succeeded, 5)
	step("a throttle at the share", throttled, 5)
}

// Through the SDK: the pacing's rate grows on answered calls once SetShares allows it, halves on AWS IoT's
// ThrottlingException (400, x-amzn-ErrorType), and stays at the share without SetShares.
func TestPacingAdaptsToThrottlingThroughTheSDK(t *testing.T) {
	var throttle atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if throttle.Load() {
			w.Header().Set("x-amzn-ErrorType", "ThrottlingException")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"message":"Rate exceeded"}`))
			return
		}
		_, _ = w.Write([]byte(`{"certificateDescription":{"certificateId":"ab","status":"ACTIVE"}}`))
	}))
	defer srv.Close()
	pacing := NewPacing(RateLimits{"DescribeCertificate": 1000}, MaxShares(2))
	client := iot.New(iot.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		APIOptions:  []func(*middleware.Stack) error{pacing.Middleware()},
	})
	describe := func() error {
		_, err := client.DescribeCertificate(context.Background(), &iot.DescribeCertificateInput{CertificateId: aws.String("ab")})
		return err
	}
	for range 20 {
		if err := describe(); err != nil {
			t.Fatal(err)
		}
	}
	if got := pacing.Rate("DescribeCertificate"); got != 1000 {
		t.Fatalf("after 20 answered calls at one share: rate %v, want 1000", got)
	}
	pacing.SetShares(2)
	for range 20 {
		if err := describe(); err != nil {
			t.Fatal(err)
		}
	}
	grown := pacing.Rate("DescribeCertificate")
	if grown <= 1010 || grown > 2000 {
		t.Fatalf("after 20 answered calls with 2 shares allowed: rate %v, want above 1010 and at most 2000", grown)
	}
	throttle.Store(true)
	if err := describe(); !HasErrorCode(err, "ThrottlingException") {
		t.Fatalf("throttled call: %v, want ThrottlingException", err)
	}
	if got, want := pacing.Rate("DescribeCertificate"), max(1000, grown/2); got != want {
		t.Errorf("after a ThrottlingException: rate %v, want %v (half of %v, not below the share)", got, want, grown)
	}
	if got := pacing.Rate("ListThings"); got != 0 {
		t.Errorf("unlisted ListThings: rate %v, want 0 (not paced)", got)
	}
}

var errGiveWay = errors.New("give way")

// Through the SDK with the standard retryer: a call whose admission check refuses it when its slot comes is not
// sent and not retried, and fails with the check's error; a context without the check sends it.
func TestRefusedAdmissionIsNotSent(t *testing.T) {
	var sent atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"certificateDescription":{"certificateId":"ab","status":"ACTIVE"},"principals":[]}`))
	}))
	defer srv.Close()
	client := iot.New(iot.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Retryer: NewRetryer(DefaultRetryPolicy),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		APIOptions:  []func(*middleware.Stack) error{WithRateLimits(RateLimits{"DescribeCertificate": 1000})},
	})
	var checks atomic.Int32
	refuse := WithAdmission(context.Background(), func(context.Context) error { checks.Add(1); return errGiveWay })
	_, err := client.DescribeCertificate(refuse, &iot.DescribeCertificateInput{CertificateId: aws.String("ab")})
	if !errors.Is(err, errGiveWay) || sent.Load() != 0 || checks.Load() != 1 {
		t.Errorf("paced call refused admission: error %v, %d sent, %d checks; want errGiveWay, 0 sent, 1 check (no retry)", err, sent.Load(), checks.Load())
	}
	_, err = client.ListThingPrincipals(refuse, &iot.ListThingPrincipalsInput{ThingName: aws.String("t")})
	if !errors.Is(err, errGiveWay) || sent.Load() != 0 {
		t.Errorf("unpaced call refused admission: error %v, %d sent; want errGiveWay, 0 sent", err, sent.Load())
	}
	if _, err := client.DescribeCertificate(WithoutAdmission(refuse), &iot.DescribeCertificateInput{CertificateId: aws.String("ab")}); err != nil || sent.Load() != 1 {
		t.Errorf("call without admission check: error %v, %d sent; want nil, 1", err, sent.Load())
	}
}

// A change of the rate applies from the next slot on: after a slot at 0 s at 1 a second, the rate grown to 2 a
// second gives the next caller the slot at 0.5 s, not the 1 s the old rate would have reserved.
func TestRateChangeAppliesToTheNextSlot(t *testing.T) {
	p := newPacer(1, 2, 2)
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	if slot, _, err := p.reserve(t0, time.Time{}, false); err != nil || !slot.Equal(t0) {
		t.Fatalf("first slot %v, %v; want %v", slot, err, t0)
	}
	p.succeeded(t0) // 1 → 2 a second
	if slot, _, err := p.reserve(t0, time.Time{}, false); err != nil || !slot.Equal(t0.Add(500*time.Millisecond)) {
		t.Errorf("slot after the rate doubled: %v, %v; want %v", slot, err, t0.Add(500*time.Millisecond))
	}
	// A slot given back (a call refused admission) is the next caller's.
	slot, prev, _ := p.reserve(t0, time.Time{}, false)
	p.unreserve(prev)
	if again, _, _ := p.reserve(t0, time.Time{}, false); !again.Equal(slot) {
		t.Errorf("after a slot was given back the next caller got %v, want that slot %v", again, slot)
	}
}
