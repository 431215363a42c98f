package moto_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// TestSQSBatchActionsTakeAtMostTenEntries: DeleteMessageBatch and ChangeMessageVisibilityBatch with 11 entries fail
// whole with TooManyEntriesInBatchRequest, as in SQS (sqsbatch.py), and with 10 they succeed.
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
