package moto_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// The tests below hold for moto's own queues as for the index sqsstore.py keeps (MOTO_SQS_STORE=0 runs them on
// moto's): the index changes what an operation costs, never what it answers.

func sqsClient(t *testing.T) *sqs.Client {
	t.Helper()
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	cfg := motoserver.AWSConfig(moto.ServiceURL("sqs"))
	cfg.Retryer = motoserver.LostAnswerRetryer
	return sqs.NewFromConfig(cfg)
}

func createQueue(t *testing.T, api *sqs.Client, name string, attrs map[string]string) string {
	t.Helper()
	out, err := api.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

func send(t *testing.T, api *sqs.Client, url string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if _, err := api.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
}

// receiveAll is one ReceiveMessage of up to 10 messages with the given visibility timeout: their bodies and handles.
func receiveAll(t *testing.T, api *sqs.Client, url string, visibility int32) map[string]string {
	t.Helper()
	out, err := api.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: visibility})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range out.Messages {
		if _, twice := got[aws.ToString(m.Body)]; twice {
			t.Errorf("one receive returned %q twice", aws.ToString(m.Body))
		}
		got[aws.ToString(m.Body)] = aws.ToString(m.ReceiptHandle)
	}
	return got
}

// counts is (visible, in flight, delayed) as GetQueueAttributes says them.
func counts(t *testing.T, api *sqs.Client, url string) [3]int {
	t.Helper()
	out, err := api.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	var c [3]int
	for i, name := range []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed} {
		n, err := strconv.Atoi(out.Attributes[string(name)])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c[i] = n
	}
	return c
}

func wantCounts(t *testing.T, api *sqs.Client, url string, what string, want [3]int) {
	t.Helper()
	if got := counts(t, api, url); got != want {
		t.Errorf("%s: (visible, in flight, delayed) = %v, want %v", what, got, want)
	}
}

// TestSQSMessageLifecycle: receive, visibility timeout, ChangeMessageVisibility, delete by any handle a message has
// had, delay, and the approximate counts through each.
func TestSQSMessageLifecycle(t *testing.T) {
	api := sqsClient(t)
	ctx := context.Background()
	url := createQueue(t, api, "lifecycle", map[string]string{"VisibilityTimeout": "30"})
	send(t, api, url, "a", "b", "c")
	wantCounts(t, api, url, "after three sends", [3]int{3, 0, 0})

	first := receiveAll(t, api, url, 2)
	if len(first) != 3 {
		t.Fatalf("first receive: %v, want a, b and c", first)
	}
	wantCounts(t, api, url, "all three in flight", [3]int{0, 3, 0})
	if again := receiveAll(t, api, url, 2); len(again) != 0 {
		t.Errorf("a receive while all are in flight returned %v", again)
	}

	// a made visible again at once; b deleted; c left to its 2 s visibility timeout.
	if _, err := api.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String(first["a"]), VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String(first["b"])}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String(first["b"])}); err != nil {
		t.Errorf("deleting b again: %v, want success (a handle of a deleted message)", err)
	}
	_, err := api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String("not-a-handle")})
	var invalid *sqstypes.ReceiptHandleIsInvalid
	if !errors.As(err, &invalid) {
		t.Errorf("DeleteMessage with an unknown handle: %v, want ReceiptHandleIsInvalid", err)
	}
	wantCounts(t, api, url, "a visible, c in flight", [3]int{1, 1, 0})
	second := receiveAll(t, api, url, 30)
	if len(second) != 1 || second["a"] == "" {
		t.Fatalf("receive after a's visibility change: %v, want a alone", second)
	}
	if second["a"] == first["a"] {
		t.Error("a's second receive kept its first receipt handle")
	}

	time.Sleep(2500 * time.Millisecond) // c's visibility timeout passes
	wantCounts(t, api, url, "c visible again, a in flight", [3]int{1, 1, 0})
	third := receiveAll(t, api, url, 30)
	if len(third) != 1 || third["c"] == "" {
		t.Fatalf("receive after c's visibility timeout: %v, want c alone", third)
	}
	// a deleted by its first (older) handle, c by its newest.
	for _, h := range []string{first["a"], third["c"]} {
		if _, err := api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String(h)}); err != nil {
			t.Fatal(err)
		}
	}
	wantCounts(t, api, url, "all deleted", [3]int{0, 0, 0})

	if _, err := api.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("late"), DelaySeconds: 1}); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, api, url, "a delayed message", [3]int{0, 0, 1})
	if got := receiveAll(t, api, url, 30); len(got) != 0 {
		t.Errorf("a delayed message was received before its delay: %v", got)
	}
	time.Sleep(1500 * time.Millisecond)
	if got := receiveAll(t, api, url, 30); got["late"] == "" {
		t.Errorf("after its delay: %v, want late", got)
	}
}

// TestSQSReceiveWithoutVisibilityReturnsEachMessageOnce: a receive with visibility timeout 0 leaves its messages
// visible, and still returns each at most once, however many it asks for.
func TestSQSReceiveWithoutVisibilityReturnsEachMessageOnce(t *testing.T) {
	api := sqsClient(t)
	url := createQueue(t, api, "no-visibility", map[string]string{"VisibilityTimeout": "0"}) // the SDK omits a 0 in the call
	send(t, api, url, "x", "y")
	for range 3 {
		if got := receiveAll(t, api, url, 0); len(got) != 2 {
			t.Errorf("receive with visibility 0: %v, want x and y", got)
		}
	}
	wantCounts(t, api, url, "received with visibility 0", [3]int{2, 0, 0})
}

// TestSQSRedriveToDeadLetterQueue: a message received maxReceiveCount times moves to the dead-letter queue on the
// next receive, and is received there.
func TestSQSRedriveToDeadLetterQueue(t *testing.T) {
	api := sqsClient(t)
	ctx := context.Background()
	dlq := createQueue(t, api, "redrive-dlq", nil)
	attrs, err := api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(dlq), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	src := createQueue(t, api, "redrive-src", map[string]string{"VisibilityTimeout": "0",
		"RedrivePolicy": `{"deadLetterTargetArn":"` + attrs.Attributes["QueueArn"] + `","maxReceiveCount":2}`})
	send(t, api, src, "poison")
	for i := range 2 {
		if got := receiveAll(t, api, src, 0); got["poison"] == "" {
			t.Fatalf("receive %d of the source queue: %v, want poison", i+1, got)
		}
	}
	if got := receiveAll(t, api, src, 0); len(got) != 0 {
		t.Errorf("third receive of the source queue: %v, want nothing (moved to the dead-letter queue)", got)
	}
	wantCounts(t, api, src, "source after the redrive", [3]int{0, 0, 0})
	if got := receiveAll(t, api, dlq, 30); got["poison"] == "" {
		t.Errorf("dead-letter queue: %v, want poison", got)
	}
}

// TestSQSLongPollReturnsAMessageSentWhileItWaits: a ReceiveMessage waiting 10 s returns a message sent 300 ms into
// its wait.
func TestSQSLongPollReturnsAMessageSentWhileItWaits(t *testing.T) {
	api := sqsClient(t)
	url := createQueue(t, api, "long-poll", nil)
	got := make(chan []sqstypes.Message, 1)
	go func() {
		out, err := api.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 10})
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		got <- out.Messages
	}()
	time.Sleep(300 * time.Millisecond)
	send(t, api, url, "awaited")
	if m := <-got; len(m) != 1 || aws.ToString(m[0].Body) != "awaited" {
		t.Errorf("long poll returned %d messages, want the one sent while it waited", len(m))
	}
}

// TestSQSDeepQueueDeliversEveryMessageOnce: 3000 messages sent, then received and deleted ten at a time while more
// arrive: every message received exactly once, the queue empty after.
func TestSQSDeepQueueDeliversEveryMessageOnce(t *testing.T) {
	api := sqsClient(t)
	ctx := context.Background()
	url := createQueue(t, api, "deep", map[string]string{"VisibilityTimeout": "300"})
	sendBatch := func(from int) {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j := range 10 {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(strconv.Itoa(from + j))})
		}
		if _, err := api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries}); err != nil {
			t.Fatal(err)
		}
	}
	const n, more = 3000, 500
	for i := 0; i < n; i += 10 {
		sendBatch(i)
	}
	received := map[string]int{}
	for tries := 0; len(received) < n+more && tries < 2*(n+more); tries++ {
		if sent := n + 10*tries; sent < n+more {
			sendBatch(sent)
		}
		out, err := api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		var del []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			received[aws.ToString(m.Body)]++
			del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if len(del) > 0 {
			if _, err := api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: del}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(received) != n+more {
		t.Errorf("received %d distinct messages of %d", len(received), n+more)
	}
	for body, times := range received {
		if times != 1 {
			t.Errorf("message %s received %d times", body, times)
		}
	}
	wantCounts(t, api, url, "all received and deleted", [3]int{0, 0, 0})
}

// TestSQSMessagePutBackVisibleComesFirst: a message put back visible (ChangeMessageVisibility 0, as the function
// hands back what its batch cannot start) is received before the messages sent after it, as moto's queue keeps
// them in send order: a storm's handed-back registrations must not wait behind every duplicate sent since.
func TestSQSMessagePutBackVisibleComesFirst(t *testing.T) {
	api := sqsClient(t)
	ctx := context.Background()
	url := createQueue(t, api, "put-back", map[string]string{"VisibilityTimeout": "30"})
	send(t, api, url, "first")
	out, err := api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 1})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receive: %v, %d messages", err, len(out.Messages))
	}
	send(t, api, url, "second", "third")
	if _, err := api.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: out.Messages[0].ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	again, err := api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range again.Messages {
		order = append(order, aws.ToString(m.Body))
	}
	if !slices.Equal(order, []string{"first", "second", "third"}) {
		t.Errorf("received %v, want [first second third]", order)
	}
}
