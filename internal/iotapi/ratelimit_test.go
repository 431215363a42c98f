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
