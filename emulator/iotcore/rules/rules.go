// Package rules is AWS IoT's rules engine for the deployed topic rules: a message the broker matched to a rule
// goes through the rule's SELECT (emulator/iotcore/rulesql) to its action — an SQS queue in moto, or a function the
// emulator runs, invoked asynchronously.
package rules

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/lambdaruntime"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// Engine runs the actions of the deployed topic rules.
type Engine struct {
	queues    *sqs.Client
	functions map[string]*lambdaruntime.Function // by logical id
	tl        *timeline.Timeline
	mu        sync.Mutex
	more      *sync.Cond
	pending   []ruleSend // the SQS deliveries no sender has taken yet
	closed    bool
	senders   sync.WaitGroup
	// RegisteredEvents counts the messages delivered to the JITR function or to a queue (the registered events).
	RegisteredEvents atomic.Int64
}

// ruleSenders is how many SQS deliveries are in flight at once. AWS IoT's rules engine sends in parallel and
// never holds a publisher back; one sender, behind a bounded buffer, held every CONNECT of a pending certificate
// (whose registered event it publishes) once a 10 000-device storm's events came faster than one sender's
// round trips to moto, and the broker stopped admitting anyone.
const ruleSenders = 8

// Start starts the engine's SQS senders; functions are the functions the rules may invoke, by logical id.
func Start(queues *sqs.Client, functions map[string]*lambdaruntime.Function, tl *timeline.Timeline) *Engine {
	e := &Engine{queues: queues, functions: functions, tl: tl}
	e.more = sync.NewCond(&e.mu)
	for range ruleSenders {
		e.senders.Add(1)
		go e.sendMessages()
	}
	return e
}

// Stop ends the senders once the deliveries already handed to them are sent; call it after the broker has stopped.
func (e *Engine) Stop() {
	e.mu.Lock()
	e.closed = true
	e.more.Broadcast()
	e.mu.Unlock()
	e.senders.Wait()
}

// Run is the rules engine's action for a message that matched a rule: an SQS action sends the message to its
// queue; a Lambda action evaluates the rule's SELECT and invokes the function asynchronously.
func (e *Engine) Run(rule deploy.Rule, topic string, payload []byte) {
	if rule.QueueURL != "" {
		// The SQS action: every registered event reaches the queue, duplicates included.
		e.RegisteredEvents.Add(1)
		e.mu.Lock()
		e.pending = append(e.pending, ruleSend{rule: rule, body: string(payload)})
		e.more.Signal()
		e.mu.Unlock()
		return
	}
	fn, ok := e.functions[rule.Function]
	if !ok {
		e.tl.Event("rules", "rule %s: its function %s is not one the emulator runs", rule.Name, rule.Function)
		return
	}
	event, err := rule.Statement.Apply(topic, payload)
	if err != nil {
		e.tl.Event("rules", "rule %s on %s: %v", rule.Name, topic, err)
		return
	}
	if fn.Deployed.Kind == deploy.KindJITR {
		e.RegisteredEvents.Add(1)
	} else {
		levels := strings.Split(topic, "/")
		if len(levels) > 1 {
			levels[1] = timeline.Short(levels[1])
		}
		e.tl.Event("rules", "rule %s: request on %s → %s function", rule.Name, strings.Join(levels, "/"), fn.Deployed.Kind)
	}
	// Every event reaches the function, duplicates included; a full queue holds the publisher back.
	if !fn.Enqueue(event) {
		e.tl.Event("rules", "rule %s: emulator stopping, event not delivered", rule.Name)
	}
}

// ruleSend is one message the rules engine's SQS action delivers.
type ruleSend struct {
	rule deploy.Rule
	body string
}

// sendMessages is one sender: it delivers the rules engine's SQS actions as they come, up to ten of one queue per
// SendMessageBatch when several wait (how AWS IoT hands messages to SQS is its own affair, and a storm of registered
// events would otherwise cost moto one request each), until Stop and nothing is left.
func (e *Engine) sendMessages() {
	defer e.senders.Done()
	for {
		batch := e.take()
		if batch == nil {
			return
		}
		e.sendBatch(batch)
	}
}

// take waits for deliveries and takes the oldest, with up to nine more of the same queue after it; nil once the
// engine is stopped and every delivery taken.
func (e *Engine) take() []ruleSend {
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.pending) == 0 && !e.closed {
		e.more.Wait()
	}
	if len(e.pending) == 0 {
		return nil
	}
	n := 1
	for n < len(e.pending) && n < 10 && e.pending[n].rule.QueueURL == e.pending[0].rule.QueueURL {
		n++
	}
	batch := append([]ruleSend(nil), e.pending[:n]...)
	e.pending = e.pending[n:]
	if len(e.pending) == 0 {
		e.pending = nil
	}
	return batch
}

func (e *Engine) sendBatch(batch []ruleSend) {
	if len(batch) == 0 {
		return
	}
	entries := make([]sqstypes.SendMessageBatchRequestEntry, len(batch))
	for i, m := range batch {
		entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m.body)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.queues.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(batch[0].rule.QueueURL), Entries: entries})
	switch {
	case err != nil:
		e.tl.Event("rules", "rule %s: %d events not delivered to its queue: %v", batch[0].rule.Name, len(batch), err)
	case len(out.Failed) > 0:
		e.tl.Event("rules", "rule %s: %d events not delivered to its queue: %s", batch[0].rule.Name, len(out.Failed), aws.ToString(out.Failed[0].Message))
	}
}
