package localaws

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// runRule is the rules engine's action for a message that matched a rule: an SQS action sends the message to its
// queue; a Lambda action evaluates the rule's SELECT and invokes the function asynchronously.
func (t *Emulator) runRule(rule deploy.Rule, topic string, payload []byte) {
	if rule.QueueURL != "" {
		// The SQS action: every registered event reaches the queue, duplicates included.
		t.RuleEvents.Add(1)
		t.ruleSends <- ruleSend{rule: rule, body: string(payload)}
		return
	}
	fn, ok := t.Functions[rule.Function]
	if !ok {
		t.tl.Event("rules", "rule %s: its function %s is not one the emulator runs", rule.Name, rule.Function)
		return
	}
	event, err := rule.Statement.Apply(topic, payload)
	if err != nil {
		t.tl.Event("rules", "rule %s on %s: %v", rule.Name, topic, err)
		return
	}
	if fn.Deployed.Kind == deploy.KindJITR {
		t.RuleEvents.Add(1)
	} else {
		levels := strings.Split(topic, "/")
		if len(levels) > 1 {
			levels[1] = timeline.Short(levels[1])
		}
		t.tl.Event("rules", "rule %s: request on %s → %s function", rule.Name, strings.Join(levels, "/"), fn.Deployed.Kind)
	}
	// Every event reaches the function, duplicates included; a full queue holds the publisher back.
	if !fn.Enqueue(event) {
		t.tl.Event("rules", "rule %s: emulator stopping, event not delivered", rule.Name)
	}
}

// ruleSend is one message the rules engine's SQS action delivers.
type ruleSend struct {
	rule deploy.Rule
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
