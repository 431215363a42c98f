package localaws

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
	}), 1, func(r AsyncResult) { mu.Lock(); results = append(results, r); mu.Unlock() })
	a.retryDelay = 0
	defer a.Stop()
	a.Enqueue("c1", []byte(`{}`))
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
	}), 1, nil)
	a.retryDelay = 0
	defer a.Stop()
	a.Enqueue("", []byte(`{}`))
	a.Drain()
	if calls.Load() != 2 {
		t.Errorf("calls = %d, want 2 (one failure, one success)", calls.Load())
	}
}

func TestAsyncInvokerCoalescesQueuedDuplicates(t *testing.T) {
	release := make(chan struct{})
	started := make(chan string, 10)
	a := NewAsyncInvoker(InvokeFunc(func(_ context.Context, p []byte) ([]byte, error) {
		started <- string(p)
		<-release
		return nil, nil
	}), 1, nil)
	defer a.Stop()
	a.Enqueue("c1", []byte("first"))
	if got := <-started; got != "first" {
		t.Fatalf("started %q", got)
	}
	// c1 is running, not waiting: a re-fired event queues again. Further copies while it waits coalesce.
	a.Enqueue("c1", []byte("refire"))
	a.Enqueue("c1", []byte("refire-dup"))
	a.Enqueue("c2", []byte("other"))
	close(release)
	a.Drain()
	close(started)
	var ran []string
	for p := range started {
		ran = append(ran, p)
	}
	if len(ran) != 2 || ran[0] != "refire" || ran[1] != "other" {
		t.Errorf("ran %v after first, want [refire other]", ran)
	}
}
