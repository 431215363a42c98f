package localaws

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// startOthers runs the template's other functions (the presign function) under aws-lambda-rie, each with the
// environment the template gives it, its own credentials, S3 through the emulator's S3 gate and the IoT data
// endpoint the emulator serves (trusted through SSL_CERT_FILE, as the function trusts Amazon's roots in AWS).
func (t *Emulator) startOthers(ctx context.Context, opts Options) error {
	t.others = map[string]*AsyncInvoker{}
	if len(t.Deployment.Others) == 0 {
		return nil
	}
	if opts.PresignBootstrap == "" {
		return errors.New("the template has a presign function: build it (BuildPresignBootstrap) and pass Options.PresignBootstrap")
	}
	dir, err := os.MkdirTemp("", "localaws-functions-")
	if err != nil {
		return err
	}
	t.tmpDir = dir
	caFile := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(caFile, t.ServerCA.CertPEM(), 0o600); err != nil {
		return err
	}
	ids := make([]string, 0, len(t.Deployment.Others))
	for id := range t.Deployment.Others {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		f := t.Deployment.Others[id]
		if _, ok := f.Env[contract.EnvIotDataEndpoint]; !ok {
			return fmt.Errorf("function %s: the emulator runs only the presign function besides JITR", id)
		}
		principal, err := stacktemplate.FunctionPrincipal(opts.Template, t.Deployment.Resolver, id)
		if err != nil {
			return fmt.Errorf("function %s role: %w", id, err)
		}
		pr, err := t.ids.Register(ctx, f.Name, principal, f.RolePolicy)
		if err != nil {
			return err
		}
		env := append(append(t.Moto.Env(), pr.Env()...),
			"AWS_ENDPOINT_URL_S3="+t.S3Gate.URL(), "SSL_CERT_FILE="+caFile,
			"AWS_LAMBDA_FUNCTION_NAME="+f.Name, "PATH="+os.Getenv("PATH"))
		keys := make([]string, 0, len(f.Env))
		for k, v := range f.Env {
			env = append(env, k+"="+v)
			keys = append(keys, k)
		}
		sort.Strings(keys)
		pool, err := StartRIEPool(ctx, RIEOptions{RIE: opts.RIE, Bootstrap: opts.PresignBootstrap, Env: env, Size: opts.Workers, Log: opts.Log})
		if err != nil {
			return err
		}
		t.otherPools = append(t.otherPools, pool)
		t.faults = &faultInvoker{inner: pool}
		// The template gives it no retry (MaximumRetryAttempts 0): the device asks again.
		t.others[id] = newAsyncInvoker(t.faults, opts.Workers, 0, 0, func(res AsyncResult) {
			if res.Err != nil {
				t.tl.Event("presign", "invocation failed, no answer published (the device will ask again): %v", res.Err)
			}
		})
		t.tl.Event("deploy", "presign function %s running under aws-lambda-rie ×%d with its own access key %s…, environment from the template: %s",
			f.Name, opts.Workers, pr.AccessKeyID()[:8], strings.Join(keys, ", "))
	}
	t.tl.Event("deploy", "S3 presigned URLs checked at %s (signature, signed Content-Length, expiry, signer's role); IoT data endpoint %s",
		t.S3Gate.URL(), t.DataPlane.Addr())
	return nil
}

// runRule is the rules engine's action for a message that matched a rule: the JITR rule queues the registered
// event as it is; another rule evaluates its SELECT and invokes its function asynchronously.
func (t *Emulator) runRule(rule DeployedRule, topic string, payload []byte) {
	if inv, ok := t.others[rule.Function]; ok {
		event, err := rule.Statement.Apply(topic, payload)
		if err != nil {
			t.tl.Event("rules", "rule %s on %s: %v", rule.Name, topic, err)
			return
		}
		levels := strings.Split(topic, "/")
		if len(levels) > 1 {
			levels[1] = timeline.Short(levels[1])
		}
		t.tl.Event("rules", "rule %s: request on %s → presign function", rule.Name, strings.Join(levels, "/"))
		if !inv.Enqueue(event) {
			t.tl.Event("rules", "rule %s: emulator stopping, request not delivered", rule.Name)
		}
		return
	}
	t.RuleEvents.Add(1)
	if rule.QueueURL != "" {
		// The SQS action: every registered event reaches the queue, duplicates included.
		t.ruleSends <- ruleSend{rule: rule, body: string(payload)}
		return
	}
	// Every registered event reaches the JITR function, duplicates included; a full queue holds the publisher back.
	if !t.async.Enqueue(payload) {
		t.tl.Event("rules", "rule %s: emulator stopping, event not delivered", rule.Name)
	}
}

// FailPresign makes the next n invocations of the presign function fail as if it were unavailable (tests).
func (t *Emulator) FailPresign(n int) {
	if t.faults != nil {
		t.faults.fail.Store(int32(n))
	}
}

// faultInvoker fails while its counter is positive, then passes invocations through.
type faultInvoker struct {
	inner Invoker
	fail  atomic.Int32
}

func (f *faultInvoker) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	if f.fail.Add(-1) >= 0 {
		return nil, &FunctionError{Type: "Unavailable", Message: "injected by the test: function unavailable"}
	}
	f.fail.Store(0)
	return f.inner.Invoke(ctx, payload)
}

// ruleSend is one message the rules engine's SQS action delivers.
type ruleSend struct {
	rule DeployedRule
	body string
}

// sendRuleMessages delivers the rules engine's SQS actions in order, up to ten of one queue per SendMessageBatch
// when several wait: how AWS IoT hands messages to SQS is its own affair, and a storm of registered events
// would otherwise cost moto, a single process, one request each.
func (t *Emulator) sendRuleMessages() {
	for first := range t.ruleSends {
		batch := []ruleSend{first}
	more:
		for len(batch) < 10 {
			select {
			case next, ok := <-t.ruleSends:
				if !ok {
					break more
				}
				if next.rule.QueueURL != first.rule.QueueURL {
					t.sendBatch(batch)
					batch = nil
					first = next
				}
				batch = append(batch, next)
			default:
				break more
			}
		}
		t.sendBatch(batch)
	}
}

func (t *Emulator) sendBatch(batch []ruleSend) {
	if len(batch) == 0 {
		return
	}
	entries := make([]sqstypes.SendMessageBatchRequestEntry, len(batch))
	for i, m := range batch {
		entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m.body)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := t.Queues.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(batch[0].rule.QueueURL), Entries: entries})
	switch {
	case err != nil:
		t.tl.Event("rules", "rule %s: %d events not delivered to its queue: %v", batch[0].rule.Name, len(batch), err)
	case len(out.Failed) > 0:
		t.tl.Event("rules", "rule %s: %d events not delivered to its queue: %s", batch[0].rule.Name, len(out.Failed), aws.ToString(out.Failed[0].Message))
	}
}
