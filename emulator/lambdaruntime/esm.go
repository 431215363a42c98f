package lambdaruntime

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// EventSourceMapping polls an SQS queue in moto and invokes the function with batches, as Lambda's event source
// mapping does with the template's settings: at most MaxConcurrency invocations at once, up to BatchSize messages
// gathered for at most the batching window, and, with ReportBatchItemFailures, only the failed messages left on
// the queue (they come back after their visibility timeout; moto applies the redrive policy after
// maxReceiveCount receives). When the invocation itself fails, the whole batch is left on the queue. It polls
// with the function's role, as Lambda does, so IAM judges the receive and the delete against the role's grants.
type EventSourceMapping struct {
	m        deploy.Mapping
	sqs      *sqs.Client
	fn       Invoker
	region   string
	asRole   func(*sqs.Options)
	done     func(record SQSRecord) // sees every record of a batch once the function has run
	inFlight atomic.Int32
	receives atomic.Int64 // ReceiveMessage calls made (what Lambda's polling costs: empty receives included)
	invoked  atomic.Int64 // batches handed to the function
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// SQSRecord is one record of the event Lambda hands a function for an SQS batch.
type SQSRecord struct {
	MessageID      string            `json:"messageId"`
	ReceiptHandle  string            `json:"receiptHandle"`
	Body           string            `json:"body"`
	Attributes     map[string]string `json:"attributes"`
	MD5OfBody      string            `json:"md5OfBody"`
	EventSource    string            `json:"eventSource"`
	EventSourceARN string            `json:"eventSourceARN"`
	AWSRegion      string            `json:"awsRegion"`
}

// StartEventSourceMapping starts the mapping's pollers (MaximumConcurrency of them; two, Lambda's minimum, when
// unset); Stop ends them.
func StartEventSourceMapping(m deploy.Mapping, client *sqs.Client, fn Invoker, region string, asRole func(*sqs.Options), done func(SQSRecord)) *EventSourceMapping {
	ctx, cancel := context.WithCancel(context.Background())
	e := &EventSourceMapping{m: m, sqs: client, fn: fn, region: region, asRole: asRole, cancel: cancel, done: done}
	if e.m.BatchSize <= 0 {
		e.m.BatchSize = 10
	}
	for i := 0; i < max(2, m.MaxConcurrency); i++ {
		e.wg.Add(1)
		go e.poll(ctx)
	}
	return e
}

// Stop ends the pollers and waits for the invocations in progress.
func (e *EventSourceMapping) Stop() {
	e.cancel()
	e.wg.Wait()
}

// Busy reports whether an invocation of this mapping is running.
func (e *EventSourceMapping) Busy() bool { return e.inFlight.Load() > 0 }

func (e *EventSourceMapping) poll(ctx context.Context) {
	defer e.wg.Done()
	for ctx.Err() == nil {
		batch := e.gather(ctx)
		if len(batch) == 0 {
			continue
		}
		e.inFlight.Add(1)
		e.invoked.Add(1)
		e.invoke(ctx, batch)
		e.inFlight.Add(-1)
	}
}

// invoke hands one batch to the function and deletes what it settled.
func (e *EventSourceMapping) invoke(ctx context.Context, batch []sqstypes.Message) {
	records := make([]SQSRecord, 0, len(batch))
	for _, msg := range batch {
		records = append(records, SQSRecord{
			MessageID: aws.ToString(msg.MessageId), ReceiptHandle: aws.ToString(msg.ReceiptHandle), Body: aws.ToString(msg.Body),
			Attributes: msg.Attributes, MD5OfBody: aws.ToString(msg.MD5OfBody), EventSource: "aws:sqs",
			EventSourceARN: e.m.QueueARN, AWSRegion: e.region,
		})
	}
	payload, _ := json.Marshal(map[string]any{"Records": records})
	out, err := e.fn.Invoke(ctx, payload)
	if err == nil {
		failed := map[string]bool{}
		if e.m.ReportFailures {
			var resp struct {
				BatchItemFailures []struct {
					ItemIdentifier string `json:"itemIdentifier"`
				} `json:"batchItemFailures"`
			}
			_ = json.Unmarshal(out, &resp)
			for _, f := range resp.BatchItemFailures {
				failed[f.ItemIdentifier] = true
			}
		}
		var settled []sqstypes.DeleteMessageBatchRequestEntry
		for i, msg := range batch {
			if !failed[aws.ToString(msg.MessageId)] {
				settled = append(settled, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: msg.ReceiptHandle})
			}
		}
		// Ten at a time: SQS refuses a longer DeleteMessageBatch whole (as the moto the emulator runs does).
		for chunk := range slices.Chunk(settled, 10) {
			_, _ = e.sqs.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(e.m.QueueURL), Entries: chunk}, e.asRole)
		}
	}
	if e.done != nil {
		for _, r := range records {
			e.done(r)
		}
	}
}

// longPoll is how long a receive waits for the first message of a batch: Lambda's pollers long-poll, so a message
// is taken as soon as it is sent (testkit/moto/sqsstore.py wakes a long poll by the send; the emulator used to poll
// every 200 ms, five receives a second per idle poller). 2 s, not Lambda's 20: the emulator stops its mappings
// between runs, and moto goes on with a receive whose client has gone: a 20 s poll stopped that way took the next
// run's first messages for the queue's visibility timeout (6 min), its registration queue reading busy all along.
const longPoll = 2

// gather receives up to BatchSize messages, long-polling while none has come and waiting at most the batching
// window once the first one is there (long-polling its whole seconds, then asking every 50 ms).
func (e *EventSourceMapping) gather(ctx context.Context) []sqstypes.Message {
	var batch []sqstypes.Message
	var deadline time.Time
	for ctx.Err() == nil && len(batch) < e.m.BatchSize {
		if len(batch) > 0 && !time.Now().Before(deadline) {
			break
		}
		wait := int32(longPoll)
		if len(batch) > 0 {
			// Within a batching window of seconds (the retirement queue's), long-poll its whole seconds as
			// Lambda's pollers do: a receive per message that arrives, not one every 50 ms while it gathers.
			wait = int32(min(longPoll, time.Until(deadline)/time.Second))
		}
		e.receives.Add(1)
		asked := time.Now()
		out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(e.m.QueueURL), MaxNumberOfMessages: int32(min(10, e.m.BatchSize-len(batch))),
			WaitTimeSeconds:             wait,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		}, e.asRole)
		switch {
		case err != nil:
			if len(batch) > 0 {
				return batch
			}
			sleep(ctx, 200*time.Millisecond)
		case len(out.Messages) == 0:
			if len(batch) > 0 {
				sleep(ctx, min(50*time.Millisecond, time.Until(deadline)))
			} else if time.Since(asked) < time.Second {
				sleep(ctx, 200*time.Millisecond) // answered at once, empty: not a long poll
			}
		default:
			if len(batch) == 0 {
				deadline = time.Now().Add(e.m.BatchWindow)
			}
			batch = append(batch, out.Messages...)
			if e.m.BatchWindow == 0 {
				return batch
			}
		}
	}
	return batch
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// schedule invokes the function every interval with an EventBridge scheduled event, until its context ends; the
// first invocation comes one interval after the start, as with EventBridge.
func schedule(ctx context.Context, wg *sync.WaitGroup, s deploy.Schedule, fn *AsyncInvoker, region, account string) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.Every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				fn.Enqueue(ScheduledEvent(now, s.ARN, region, account))
			}
		}
	}()
}

// ScheduledEvent is the event EventBridge sends a function's target on a schedule.
func ScheduledEvent(now time.Time, ruleARN, region, account string) []byte {
	payload, _ := json.Marshal(map[string]any{
		"version": "0", "id": strconv.FormatInt(now.UnixNano(), 10), "detail-type": contract.ScheduledEventDetailType,
		"source": "aws.events", "account": account, "time": now.UTC().Format(time.RFC3339), "region": region,
		"resources": []string{ruleARN}, "detail": map[string]any{},
	})
	return payload
}
