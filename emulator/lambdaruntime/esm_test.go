package lambdaruntime

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

var moto *motoserver.Server

func TestMain(m *testing.M) { os.Exit(motoserver.RunTestsWith(motoserver.Options{}, m, &moto)) }

// batchRecorder is an Invoker that records how many records each batch held.
type batchRecorder struct {
	mu      sync.Mutex
	batches []int
}

func (b *batchRecorder) Invoke(_ context.Context, payload []byte) ([]byte, error) {
	var event struct{ Records []SQSRecord }
	if err := json.Unmarshal(payload, &event); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.batches = append(b.batches, len(event.Records))
	b.mu.Unlock()
	return []byte(`{}`), nil
}

func (b *batchRecorder) records() (n int, batches []int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range b.batches {
		n += k
	}
	return n, append([]int(nil), b.batches...)
}

// TestMappingLongPollsThroughItsBatchingWindow: messages arriving one at a time during a batching window of
// seconds are gathered into one batch per poller with about a receive per message, as Lambda's long-polling
// pollers do; asking every 50 ms while it gathered cost the retirement queue's 10 s window up to 200 receives a
// batch per poller.
func TestMappingLongPollsThroughItsBatchingWindow(t *testing.T) {
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	api := sqs.NewFromConfig(motoserver.AWSConfig(moto.ServiceURL("sqs")))
	ctx := context.Background()
	q, err := api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("window")})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(q.QueueUrl)
	fn := &batchRecorder{}
	m := deploy.Mapping{MappingSpec: stacktemplate.MappingSpec{BatchSize: 50, BatchWindow: 4 * time.Second, ReportFailures: true},
		QueueURL: url, QueueARN: "arn:aws:sqs:us-east-1:123456789012:window"}
	e := StartEventSourceMapping(m, api, fn, "us-east-1", func(*sqs.Options) {}, nil)
	defer e.Stop()
	const messages = 12
	for i := range messages {
		if _, err := api.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if n, _ := fn.records(); n >= messages || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	n, batches := fn.records()
	if n != messages || len(batches) > 2 {
		t.Errorf("%d records in batches %v, want %d in at most 2 (one per poller)", n, batches, messages)
	}
	// Two pollers: a receive per message, the long polls that found none, and the window's last second at 50 ms.
	if got := e.receives.Load(); got > 2*messages+30 {
		t.Errorf("%d receives for %d messages gathered in a 4 s window, want at most %d", got, messages, 2*messages+30)
	}
}
