package lambdaruntime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// FunctionOptions configures StartFunction.
type FunctionOptions struct {
	Bootstrap string   // the function's code built for the host
	RIE       string   // the aws-lambda-rie command
	Env       []string // what every function's environment starts with (endpoints, trust anchors), credentials excepted
	Workers   int      // concurrent asynchronous invocations
	Log       io.Writer
	// Invoker replaces the function's code under aws-lambda-rie (tests: a slow or failing function).
	Invoker Invoker
	Queues  *sqs.Client // moto's SQS: event source mappings, on-failure destination
	Region  string
	Account string
	// OnResult sees the final outcome of every asynchronous invocation, OnRecord every record of a mapped batch
	// once the function has run (both optional: the emulator's timeline).
	OnResult func(AsyncResult)
	OnRecord func(SQSRecord)
	Timeline *timeline.Timeline
}

// Function is a deployed function running: its code under aws-lambda-rie, its identity, its asynchronous
// invoker (what rules and schedules invoke), its event source mappings and its schedules. Every function of the
// template runs through this one type.
type Function struct {
	Deployed *deploy.Function
	Identity *identity.Identity

	opts          FunctionOptions
	pool          *RIEPool
	faults        *faultInvoker
	async         *AsyncInvoker
	mappings      []*EventSourceMapping
	stopSchedules context.CancelFunc
	schedules     sync.WaitGroup
}

// StartFunction runs f as id: its code under aws-lambda-rie with one execution environment per concurrent
// invocation the template allows (each mapping's maximum concurrency, and Workers for the rest), its mappings
// polling their queues and its schedules ticking.
func StartFunction(ctx context.Context, f *deploy.Function, id *identity.Identity, opts FunctionOptions) (*Function, error) {
	fn := &Function{Deployed: f, Identity: id, opts: opts}
	inv := opts.Invoker
	if inv == nil {
		size := max(opts.Workers, f.Concurrency()+1)
		env, keys := fn.environment()
		pool, err := StartRIEPool(ctx, RIEOptions{RIE: opts.RIE, Bootstrap: opts.Bootstrap, Env: env, Size: size, Log: opts.Log, Timeout: f.Timeout})
		if err != nil {
			return nil, fmt.Errorf("function %s: %w", f.Name, err)
		}
		fn.pool, inv = pool, pool
		opts.Timeline.Event("deploy", "%s function %s running under aws-lambda-rie ×%d as role %s (%d policy document(s) from the template, access key %s…), environment from the template: %s",
			f.Kind, f.Name, size, id.Principal.RoleName(), len(id.Principal.Policies), id.AccessKeyID()[:8], strings.Join(keys, ", "))
	}
	fn.faults = &faultInvoker{inner: inv}
	fn.async = NewAsyncInvoker(fn.faults, opts.Workers, 0, f.Retries, fn.result)
	// Lambda's event source mappings poll with the function's role.
	asRole := func(o *sqs.Options) { o.Credentials = id.Credentials() }
	for _, m := range f.Mappings {
		fn.mappings = append(fn.mappings, StartEventSourceMapping(m, opts.Queues, fn.faults, opts.Region, asRole, opts.OnRecord))
		opts.Timeline.Event("deploy", "event source mapping: queue %s → function %s, batch %d, window %s, maximum concurrency %d, partial batch failures %v",
			queueName(m.QueueURL), f.Name, m.BatchSize, m.BatchWindow, max(2, m.MaxConcurrency), m.ReportFailures)
	}
	var schedCtx context.Context
	schedCtx, fn.stopSchedules = context.WithCancel(context.Background())
	for _, sc := range f.Schedules {
		schedule(schedCtx, &fn.schedules, sc, fn.async, opts.Region, opts.Account)
		opts.Timeline.Event("deploy", "schedule %s: function %s runs every %s", sc.LogicalID, f.Name, sc.Every)
	}
	return fn, nil
}

// environment is the function's process environment: the shared part without credentials, its own identity, its
// name, and the environment the template gives it (keys returns those names, sorted, for the timeline).
func (fn *Function) environment() (env, keys []string) {
	for _, kv := range fn.opts.Env {
		if !strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") && !strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY=") && !strings.HasPrefix(kv, "AWS_SESSION_TOKEN=") {
			env = append(env, kv)
		}
	}
	env = append(env, fn.Identity.Env()...)
	env = append(env, "AWS_LAMBDA_FUNCTION_NAME="+fn.Deployed.Name, "PATH="+os.Getenv("PATH"))
	for k, v := range fn.Deployed.Env {
		env = append(env, k+"="+v)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return env, keys
}

// Enqueue invokes the function asynchronously with payload (a rule's Lambda action); it reports false only when
// the function is stopping.
func (fn *Function) Enqueue(payload []byte) bool { return fn.async.Enqueue(payload) }

// Invoke runs one invocation synchronously (RequestResponse), as CloudFormation invokes a custom resource's
// function.
func (fn *Function) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return fn.faults.Invoke(ctx, payload)
}

// FailNext makes the next n invocations fail as if the function were unavailable (tests).
func (fn *Function) FailNext(n int) { fn.faults.fail.Store(int32(n)) }

// Drain waits until every asynchronous invocation queued so far has been handled.
func (fn *Function) Drain() { fn.async.Drain() }

// MappingsIdle reports whether every queue the function's mappings poll is empty (nothing visible, nothing in
// flight, nothing delayed) and no mapping is invoking the function.
func (fn *Function) MappingsIdle(ctx context.Context) bool {
	for _, m := range fn.mappings {
		if m.Busy() {
			return false
		}
		out, err := fn.opts.Queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(m.m.QueueURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
		if err != nil {
			return false
		}
		for _, v := range out.Attributes {
			if v != "0" {
				return false
			}
		}
	}
	return true
}

// Stop ends the schedules, the mappings, the invoker and the execution environments, in that order.
func (fn *Function) Stop() {
	if fn.stopSchedules != nil {
		fn.stopSchedules()
		fn.schedules.Wait()
	}
	for _, m := range fn.mappings {
		m.Stop()
	}
	if fn.async != nil {
		fn.async.Stop()
	}
	if fn.pool != nil {
		fn.pool.Stop()
	}
}

// result reports an invocation's outcome and sends an event that failed every attempt to the function's
// on-failure destination.
func (fn *Function) result(res AsyncResult) {
	if fn.opts.OnResult != nil {
		fn.opts.OnResult(res)
	}
	if res.Err != nil {
		fn.deadLetter(res)
	}
}

// deadLetter sends the invocation record of an event that failed every attempt to the function's on-failure
// destination, as Lambda does (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html):
// Lambda sends it with the function's execution role, so the send is authorized against the role too.
func (fn *Function) deadLetter(res AsyncResult) {
	f := fn.Deployed
	if f.DeadLetterQueueURL == "" {
		return
	}
	errorType, message := "Unhandled", res.Err.Error()
	var fe *FunctionError
	if errors.As(res.Err, &fe) {
		errorType, message = fe.Type, fe.Message
	}
	record := map[string]any{
		"version":   "1.0",
		"timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"requestContext": map[string]any{
			"requestId": fmt.Sprintf("emulator-%d", time.Now().UnixNano()), "functionArn": f.ARN + ":$LATEST",
			"condition": "RetriesExhausted", "approximateInvokeCount": res.Attempts,
		},
		"requestPayload":  json.RawMessage(res.Payload),
		"responseContext": map[string]any{"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
		"responsePayload": map[string]any{"errorType": errorType, "errorMessage": message},
	}
	body, _ := json.Marshal(record)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	asRole := func(o *sqs.Options) { o.Credentials = fn.Identity.Credentials() }
	if _, err := fn.opts.Queues.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(f.DeadLetterQueueURL), MessageBody: aws.String(string(body))}, asRole); err != nil {
		fn.opts.Timeline.Event(string(f.Kind), "dead-letter queue: the invocation record could not be delivered: %v", err)
		return
	}
	fn.opts.Timeline.Event(string(f.Kind), "invocation record sent to the dead-letter queue after %d attempts", res.Attempts)
}

// DeadLetters returns the invocation records waiting in the function's on-failure destination (up to ten).
func (fn *Function) DeadLetters(ctx context.Context) ([]string, error) {
	if fn.Deployed.DeadLetterQueueURL == "" {
		return nil, fmt.Errorf("the template gives function %s no on-failure destination", fn.Deployed.Name)
	}
	out, err := fn.opts.Queues.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(fn.Deployed.DeadLetterQueueURL), MaxNumberOfMessages: 10})
	if err != nil {
		return nil, fmt.Errorf("receive dead letters: %w", err)
	}
	bodies := make([]string, 0, len(out.Messages))
	for _, m := range out.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	return bodies, nil
}

// Costs are what the function's running has cost since it started: its invocations (every delivery, retries
// included) and its event source mappings' ReceiveMessage calls (empty receives included, as Lambda bills them).
type Costs struct {
	Invocations int64
	Receives    int64
	// ByQueue are each event source mapping's batches and receives, by its queue's name.
	ByQueue map[string]MappingCosts
}

// MappingCosts are one event source mapping's invocations (batches handed to the function) and ReceiveMessage calls.
type MappingCosts struct{ Invocations, Receives int64 }

// Costs returns the function's costs so far.
func (fn *Function) Costs() Costs {
	c := Costs{Invocations: fn.faults.calls.Load(), ByQueue: map[string]MappingCosts{}}
	for _, m := range fn.mappings {
		r := m.receives.Load()
		c.Receives += r
		name := queueName(m.m.QueueURL)
		q := c.ByQueue[name]
		q.Invocations += m.invoked.Load()
		q.Receives += r
		c.ByQueue[name] = q
	}
	return c
}

// queueName is the name of the queue a URL names (its last path segment).
func queueName(url string) string { return url[strings.LastIndex(url, "/")+1:] }

// Processes are the process group ids of the function's execution environments (aws-lambda-rie and the function
// it runs), none when its code is replaced (FunctionOptions.Invoker).
func (fn *Function) Processes() []int {
	if fn.pool == nil {
		return nil
	}
	var ids []int
	for _, cmd := range fn.pool.procs {
		ids = append(ids, cmd.Process.Pid)
	}
	return ids
}

// faultInvoker fails while its counter is positive, then passes invocations through; it counts every invocation.
type faultInvoker struct {
	inner Invoker
	fail  atomic.Int32
	calls atomic.Int64
}

func (f *faultInvoker) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return nil, &FunctionError{Type: "Unavailable", Message: "injected by the test: function unavailable"}
	}
	f.fail.Store(0)
	return f.inner.Invoke(ctx, payload)
}
