// Package rules is AWS IoT's rules engine for the deployed topic rules: a message the broker matched to a rule
// goes through the rule's SELECT (emulator/iotcore/rulesql) to its action — an SQS queue in moto, or a function the
// emulator runs, invoked asynchronously.
package rules

import (
	"context"
	"strconv"
	"strings"
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
	sends     chan ruleSend // the SQS deliveries, to the sender (sendMessages)
	done      chan struct{}
	// RegisteredEvents counts the messages delivered to the JITR function or to a queue (the registered events).
	RegisteredEvents atomic.Int64
}

// Start starts the engine's SQS sender; functions are the functions the rules may invoke, by logical id.
func Start(queues *sqs.Client, functions map[string]*lambdaruntime.Function, tl *timeline.Timeline) *Engine {
	e := &Engine{queues: queues, functions: functions, tl: tl, sends: make(chan ruleSend, 1<<14), done: make(chan struct{})}
	go e.sendMessages()
	return e
}

// Stop ends the sender once the deliveries already handed to it are sent; call it after the broker has stopped.
func (e *Engine) Stop() {
	close(e.sends)
	<-e.done
}

// Run is the rules engine's action for a message that matched a rule: an SQS action sends the message to its
// queue; a Lambda action evaluates the rule's SELECT and invokes the function asynchronously.
func (e *Engine) Run(rule deploy.Rule, topic string, payload []byte) {
	if rule.QueueURL != "" {
		// The SQS action: every registered event reaches the queue, duplicates included.
		e.RegisteredEvents.Add(1)
		e.sends <- ruleSend{rule: rule, body: string(payload)}
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

// sendMessages delivers the rules engine's SQS actions in order, up to ten of one queue per SendMessageBatch
// when several wait: how AWS IoT hands messages to SQS is its own affair, and a storm of registered events
// would otherwise cost moto, a single process, one request each.
func (e *Engine) sendMessages() {
	defer close(e.done)
	for first := range e.sends {
		batch := []ruleSend{first}
	more:
		for len(batch) < 10 {
			select {
			case next, ok := <-e.sends:
				if !ok {
					break more
				}
				if next.rule.QueueURL != first.rule.QueueURL {
					e.sendBatch(batch)
					batch = nil
					first = next
				}
				batch = append(batch, next)
			default:
				break more
			}
		}
		e.sendBatch(batch)
	}
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
