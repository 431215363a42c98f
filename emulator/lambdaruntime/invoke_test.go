package lambdaruntime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestAsyncInvokerRetriesFunctionErrorsTwice(t *testing.T) {
	var calls atomic.Int32
	var results []AsyncResult
	var mu sync.Mutex
	a := NewAsyncInvoker(InvokeFunc(func(context.Context, []byte) ([]byte, error) {
		calls.Add(1)
		return nil, &FunctionError{Type: "Throttled", Message: "try again"}
	}), 1, 0, 2, func(r AsyncResult) { mu.Lock(); results = append(results, r); mu.Unlock() })
	a.retryDelay = 0
	defer a.Stop()
	a.Enqueue([]byte(`{}`))
	a.Drain()
	var fe *FunctionError
	if calls.Load() != 3 || len(results) != 1 || results[0].Attempts != 3 || !errors.As(results[0].Err, &fe) {
		t.Errorf("calls %d, results %+v: want 3 attempts (1 + 2 retries) ending in the function error", calls.Load(), results)
	}
}

func TestAsyncInvokerStopsRetryingOnSuccess(t *testing.T) {
	var calls atomic.Int32
	a := NewAsyncInvoker(InvokeFunc(func(context.Context, []byte) ([]byte, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("transient")
		}
		return nil, nil
	}), 1, 0, 2, nil)
	a.retryDelay = 0
	defer a.Stop()
	a.Enqueue([]byte(`{}`))
	a.Drain()
	if calls.Load() != 2 {
		t.Errorf("calls = %d, want 2 (one failure, one success)", calls.Load())
	}
}

// AWS IoT publishes the registered event on every connection attempt of a PENDING_ACTIVATION certificate: each
// copy, identical or not, reaches the function, even while earlier copies wait in a full queue.
func TestAsyncInvokerDeliversEveryEventEvenWhenTheQueueIsFull(t *testing.T) {
	release := make(chan struct{})
	started := make(chan string, 10)
	a := NewAsyncInvoker(InvokeFunc(func(_ context.Context, p []byte) ([]byte, error) {
		started <- string(p)
		<-release
		return nil, nil
	}), 1, 1, 2, nil)
	defer a.Stop()
	if !a.Enqueue([]byte("c1")) {
		t.Fatal("first event refused")
	}
	if got := <-started; got != "c1" {
		t.Fatalf("started %q", got)
	}
	// The worker is busy with c1 and the queue holds one event: the copies after it wait for room, none is
	// dropped or merged.
	accepted := make(chan bool, 3)
	go func() {
		for _, p := range []string{"c1", "c1", "c2"} {
			accepted <- a.Enqueue([]byte(p))
		}
		close(accepted)
	}()
	close(release)
	for ok := range accepted {
		if !ok {
			t.Error("an event was refused")
		}
	}
	a.Drain()
	close(started)
	var ran []string
	for p := range started {
		ran = append(ran, p)
	}
	if len(ran) != 3 || ran[0] != "c1" || ran[1] != "c1" || ran[2] != "c2" {
		t.Errorf("ran %v after the first c1, want [c1 c1 c2]: every copy, in the order published", ran)
	}
}
