package moto_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// TestSQSBatchActionsTakeAtMostTenEntries: DeleteMessageBatch and ChangeMessageVisibilityBatch with 11 entries fail
// whole with TooManyEntriesInBatchRequest, as in SQS (sqsfidelity.py), and with 10 they succeed.
func TestSQSBatchActionsTakeAtMostTenEntries(t *testing.T) {
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := motoserver.AWSConfig(moto.URL)
	cfg.Retryer = motoserver.LostAnswerRetryer
	api := sqs.NewFromConfig(cfg)
	q, err := api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("batch-limit")})
	if err != nil {
		t.Fatal(err)
	}
	url := q.QueueUrl
	receive := func(n int) []string {
		t.Helper()
		for i := range n {
			if _, err := api.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		var handles []string
		for tries := 0; len(handles) < n && tries < 20; tries++ {
			out, err := api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range out.Messages {
				handles = append(handles, aws.ToString(m.ReceiptHandle))
			}
		}
		if len(handles) != n {
			t.Fatalf("received %d of %d messages", len(handles), n)
		}
		return handles
	}
	tooMany := func(action string, err error) {
		t.Helper()
		var tooMany *sqstypes.TooManyEntriesInBatchRequest
		if !errors.As(err, &tooMany) {
			t.Errorf("%s with 11 entries: %v, want TooManyEntriesInBatchRequest", action, err)
		}
	}
	for _, n := range []int{11, 10} {
		handles := receive(n)
		var vis []sqstypes.ChangeMessageVisibilityBatchRequestEntry
		var del []sqstypes.DeleteMessageBatchRequestEntry
		for i, h := range handles {
			vis = append(vis, sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(h), VisibilityTimeout: 0})
			del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(h)})
		}
		_, errVis := api.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: url, Entries: vis})
		_, errDel := api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: del})
		if n > 10 {
			tooMany("ChangeMessageVisibilityBatch", errVis)
			tooMany("DeleteMessageBatch", errDel)
			// What the refused calls left: the 11 messages, deleted 10 and 1 at a time.
			if _, err := api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: del[:10]}); err != nil {
				t.Fatal(err)
			}
			if _, err := api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: del[10:]}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if errVis != nil || errDel != nil {
			t.Errorf("with 10 entries: ChangeMessageVisibilityBatch %v, DeleteMessageBatch %v; want both to succeed", errVis, errDel)
		}
	}
}

// TestConcurrentReceivesLoseNoMessage: 24 consumers receive and delete 2000 messages of one queue at once, as an
// event source mapping's pollers and a busy function do: no receive fails, and every message is received and
// deleted, none left in flight by a receive that failed after marking it received (sqsfidelity.py; without its
// lock, two runs in three of 3000 messages saw an HTTP 500: a race, so not every run).
func TestConcurrentReceivesLoseNoMessage(t *testing.T) {
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := motoserver.AWSConfig(moto.ServiceURL("sqs"))
	cfg.Retryer = motoserver.LostAnswerRetryer
	api := sqs.NewFromConfig(cfg)
	q, err := api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("concurrent"), Attributes: map[string]string{"VisibilityTimeout": "360"}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := 0; i < n; i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j := range 10 {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(strconv.Itoa(i + j))})
		}
		if _, err := api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: entries}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu       sync.Mutex
		received = map[string]int{}
		failures []error
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(90 * time.Second)
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				mu.Lock()
				done := len(received) == n
				mu.Unlock()
				if done {
					return
				}
				out, err := api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10})
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					continue
				}
				var del []sqstypes.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					mu.Lock()
					received[aws.ToString(m.Body)]++
					mu.Unlock()
					del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if len(del) > 0 {
					if _, err := api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: q.QueueUrl, Entries: del}); err != nil {
						mu.Lock()
						failures = append(failures, err)
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d receives or deletes failed, first: %v", len(failures), failures[0])
	}
	if len(received) != n {
		attrs, _ := api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		var inFlight string
		if attrs != nil {
			inFlight = attrs.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)]
		}
		t.Errorf("%d of %d messages received in 90 s; %s in flight, received by nobody", len(received), n, inFlight)
	}
}
