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
	p := &pacer{interval: time.Second}
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	deadline := t0.Add(2500 * time.Millisecond)
	for i := range 3 {
		slot, err := p.reserve(t0, deadline, true)
		if want := t0.Add(time.Duration(i) * time.Second); err != nil || !slot.Equal(want) {
			t.Fatalf("reservation %d = %v, %v; want %v", i+1, slot, err, want)
		}
	}
	for range 2 {
		if slot, err := p.reserve(t0, deadline, true); !errors.Is(err, ErrNoTimeLeft) {
			t.Fatalf("a 4th reservation before a deadline 2.5 s away = %v, %v; want ErrNoTimeLeft", slot, err)
		}
	}
	// A slot exactly at the deadline is refused too: the call could not complete.
	if _, err := p.reserve(t0, t0.Add(3*time.Second), true); !errors.Is(err, ErrNoTimeLeft) {
		t.Errorf("a slot at the deadline: %v, want ErrNoTimeLeft", err)
	}
	if slot, err := p.reserve(t0, t0.Add(time.Minute), true); err != nil || !slot.Equal(t0.Add(3*time.Second)) {
		t.Errorf("after the refusals, the next caller got %v, %v; want the slot at 3 s (refusals reserve nothing)", slot, err)
	}
	if slot, err := p.reserve(t0.Add(time.Hour), time.Time{}, false); err != nil || !slot.Equal(t0.Add(time.Hour)) {
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
	without := &pacers{byOp: map[string]*pacer{"DescribeCertificate": newPacer(10)}}
	if p := without.of("ListThings"); p != nil {
		t.Errorf("without PaceUnlisted, ListThings is paced every %s; want not paced", p.interval)
	}
	with := &pacers{byOp: map[string]*pacer{"DescribeCertificate": newPacer(10)}}
	PaceUnlisted(4)(with)
	list, describe := with.of("ListThings"), with.of("DescribeThing")
	switch {
	case list == nil || list.interval != 250*time.Millisecond:
		t.Errorf("with PaceUnlisted(4), ListThings has pacer %v; want one every 250ms", list)
	case with.of("ListThings") != list:
		t.Error("a second ListThings call got another pacer; want the first one's")
	case describe == list:
		t.Error("DescribeThing shares ListThings' pacer; want one per operation (AWS IoT's quotas are per operation)")
	case with.of("DescribeCertificate").interval != 100*time.Millisecond:
		t.Errorf("the listed DescribeCertificate is paced every %s, want its own 100ms", with.of("DescribeCertificate").interval)
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
