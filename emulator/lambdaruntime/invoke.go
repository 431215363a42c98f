// Package lambdaruntime runs the template's functions as Lambda does: each deployed function under
// aws-lambda-rie (one execution environment per concurrent invocation), invoked asynchronously with Lambda's
// retries and on-failure destination, by its SQS event source mappings and by its schedules, signing its calls
// with its own identity (emulator/identity).
package lambdaruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// Invoker runs one invocation of the function and waits for its result.
type Invoker interface {
	Invoke(ctx context.Context, payload []byte) ([]byte, error)
}

// FunctionError is an error the function itself returned (or a crash of its runtime), which Lambda's
// asynchronous invocation retries.
type FunctionError struct {
	Type, Message string
}

func (e *FunctionError) Error() string {
	return fmt.Sprintf("function error %s: %s", e.Type, e.Message)
}

// RIEOptions configures a pool of AWS Lambda Runtime Interface Emulator processes.
type RIEOptions struct {
	RIE       string   // the aws-lambda-rie command
	Bootstrap string   // the function, built for the host
	Env       []string // the whole environment of the function (template environment + AWS endpoint/credentials)
	Size      int      // processes; each runs one invocation at a time, as one Lambda execution environment
	// Timeout is how long one invocation may run (the function's Timeout); the emulator gives every function at
	// least a minute, since a shared host runs slower than Lambda.
	Timeout time.Duration
	Log     io.Writer // output of the emulator and the function
}

// RIEPool is a set of warm execution environments, each an aws-lambda-rie process running the bootstrap.
type RIEPool struct {
	free  chan string // invocation URLs of idle environments
	procs []*exec.Cmd
	done  []chan struct{}
	once  sync.Once
	hc    *http.Client
}

// StartRIEPool starts the emulator processes on loopback ports and waits until they accept requests.
func StartRIEPool(ctx context.Context, opts RIEOptions) (*RIEPool, error) {
	if opts.Size <= 0 {
		opts.Size = 2
	}
	timeout := max(opts.Timeout, time.Minute)
	p := &RIEPool{free: make(chan string, opts.Size), hc: &http.Client{Timeout: timeout + time.Minute}}
	for i := 0; i < opts.Size; i++ {
		invokePort, err := motoserver.FreePort()
		if err != nil {
			p.Stop()
			return nil, err
		}
		apiPort, err := motoserver.FreePort()
		if err != nil {
			p.Stop()
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(invokePort)
		cmd := exec.Command(opts.RIE,
			"--runtime-interface-emulator-address", addr,
			"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(apiPort),
			opts.Bootstrap)
		cmd.Env = append(opts.Env, "AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(timeout.Seconds())), "LOG_LEVEL=warn")
		cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			p.Stop()
			return nil, fmt.Errorf("start %s: %w (run 'make demo' or 'make test-emulator' to install it)", opts.RIE, err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		p.procs = append(p.procs, cmd)
		p.done = append(p.done, done)
		if err := waitListening(ctx, addr, done); err != nil {
			p.Stop()
			return nil, fmt.Errorf("lambda emulator on %s: %w", addr, err)
		}
		p.free <- "http://" + addr + "/2015-03-31/functions/function/invocations"
	}
	return p, nil
}

func waitListening(ctx context.Context, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited during start-up")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("did not start listening")
}

// Invoke runs the function in the next idle environment.
func (p *RIEPool) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	var url string
	select {
	case url = <-p.free:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { p.free <- url }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("invoke: read result: %w", err)
	}
	var fe struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	_ = json.Unmarshal(body, &fe)
	if resp.StatusCode != http.StatusOK || fe.ErrorType != "" || fe.ErrorMessage != "" {
		if fe.ErrorType == "" {
			fe.ErrorType = "Runtime.HTTP" + strconv.Itoa(resp.StatusCode)
			fe.ErrorMessage = string(bytes.TrimSpace(body))
		}
		return body, &FunctionError{Type: fe.ErrorType, Message: fe.ErrorMessage}
	}
	return body, nil
}

// Stop ends every emulator process and the functions they run.
func (p *RIEPool) Stop() {
	p.once.Do(func() {
		for i, cmd := range p.procs {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-p.done[i]:
			case <-time.After(3 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-p.done[i]
			}
		}
	})
}

// InvokeFunc adapts a function (an in-process handler in tests) to Invoker.
type InvokeFunc func(ctx context.Context, payload []byte) ([]byte, error)

// Invoke calls f.
func (f InvokeFunc) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return f(ctx, payload)
}

// AsyncResult is the outcome of one asynchronous invocation, after its retries.
type AsyncResult struct {
	Payload  []byte
	Attempts int
	Err      error // nil when an attempt succeeded
}

// AsyncInvoker queues events and invokes the function like Lambda's asynchronous invocation: a bounded number of
// concurrent executions, and up to two retries after a function error. Every event is delivered on its own, as AWS
// IoT delivers the registered event at least once per connection attempt, duplicates included: none is merged with
// another and none is dropped. The queue is bounded; when it is full, Enqueue waits for room, which holds back the
// connection whose attempt published the event (backpressure, where Lambda's concurrency would absorb the storm).
type AsyncInvoker struct {
	invoker    Invoker
	queue      chan []byte
	retries    int
	retryDelay time.Duration
	onResult   func(AsyncResult)
	wg         sync.WaitGroup
	pending    sync.WaitGroup
	ctx        context.Context
	cancel     context.CancelFunc
}

// DefaultQueueSize is the number of events the asynchronous invoker holds before Enqueue waits.
const DefaultQueueSize = 1 << 14

// NewAsyncInvoker starts workers that drain a queue of queueSize events (DefaultQueueSize when not positive),
// retrying a failed invocation retries times as Lambda does for asynchronous invocations (the template's
// MaximumRetryAttempts; Lambda's default is 2); onResult (optional) sees every final outcome.
func NewAsyncInvoker(inv Invoker, workers, queueSize, retries int, onResult func(AsyncResult)) *AsyncInvoker {
	if queueSize <= 0 {
		queueSize = DefaultQueueSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &AsyncInvoker{invoker: inv, queue: make(chan []byte, queueSize), retries: retries, retryDelay: 200 * time.Millisecond, onResult: onResult, ctx: ctx, cancel: cancel}
	for i := 0; i < workers; i++ {
		a.wg.Add(1)
		go a.work(ctx)
	}
	return a
}

// Enqueue accepts an event for invocation, waiting while the queue is full. It reports false only when the
// invoker has been stopped.
func (a *AsyncInvoker) Enqueue(payload []byte) bool {
	a.pending.Add(1)
	select {
	case a.queue <- payload:
		return true
	case <-a.ctx.Done():
		a.pending.Done()
		return false
	}
}

// Drain waits until every queued event has been handled.
func (a *AsyncInvoker) Drain() { a.pending.Wait() }

// Stop abandons queued events and waits for the workers.
func (a *AsyncInvoker) Stop() {
	a.cancel()
	a.wg.Wait()
}

func (a *AsyncInvoker) work(ctx context.Context) {
	defer a.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case payload := <-a.queue:
			res := AsyncResult{Payload: payload}
			for attempt := 0; attempt <= a.retries; attempt++ {
				if attempt > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(a.retryDelay << (attempt - 1)):
					}
				}
				res.Attempts++
				_, res.Err = a.invoker.Invoke(ctx, payload)
				if res.Err == nil || ctx.Err() != nil {
					break
				}
			}
			if a.onResult != nil {
				a.onResult(res)
			}
			a.pending.Done()
		}
	}
}
