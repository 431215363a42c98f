package rules

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// TestRunNeverHoldsThePublisherBack: the broker publishes a registered event from inside a CONNECT, so the rules
// engine's SQS action must take every message at once however slow the queue is (AWS IoT's rules engine never
// holds a publisher back): 20 000 events, more than the 16 384 the engine's bounded buffer held before, are all
// taken while SQS answers nothing, then every one is delivered, ten per SendMessageBatch, by several senders.
func TestRunNeverHoldsThePublisherBack(t *testing.T) {
	release := make(chan struct{})
	var (
		mu        sync.Mutex
		delivered int
		inFlight  int
		most      int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Entries []struct{ Id string } }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		delivered += len(in.Entries)
		mu.Unlock()
		type ok struct{ Id, MessageId, MD5OfMessageBody string }
		out := struct{ Successful []ok }{}
		for _, e := range in.Entries {
			out.Successful = append(out.Successful, ok{Id: e.Id, MessageId: e.Id, MD5OfMessageBody: "x"})
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_ = json.NewEncoder(w).Encode(out)
	}))
	defer srv.Close()
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.AnonymousCredentials{}})
	e := Start(client, nil, timeline.New(nil))
	rule := deploy.Rule{Name: "registered", QueueURL: srv.URL + "/123456789012/registration"}
	const events = 20_000
	taken := make(chan struct{})
	go func() {
		for range events {
			e.Run(rule, "$aws/events/certificates/registered/ca", []byte(`{}`))
		}
		close(taken)
	}()
	select {
	case <-taken:
	case <-time.After(time.Minute): // a hang detector, not a speed target
		close(release)
		t.Fatal("Run held the publisher back while SQS did not answer")
	}
	// The senders' requests reach SQS in their own time: give them until the hang detector's minute to be
	// several in flight at once before SQS answers.
	for wait := time.Now().Add(time.Minute); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		several := inFlight >= 2
		mu.Unlock()
		if several {
			break
		}
	}
	close(release)
	e.Stop()
	mu.Lock()
	defer mu.Unlock()
	if delivered != events || e.RegisteredEvents.Load() != events {
		t.Errorf("%d delivered, %d counted; want %d", delivered, e.RegisteredEvents.Load(), events)
	}
	if most < 2 {
		t.Errorf("at most %d SendMessageBatch in flight at once; want several senders", most)
	}
}
