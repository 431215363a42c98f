package localaws_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// TestMalformedURLRequestsAreRejectedNamingTheField publishes, as a device would by mistake, URL requests the
// presign function cannot read, through the template's rule and the real function under aws-lambda-rie.
//
// A payload that is not JSON is not answered, in AWS as here: the rule's SELECT names fields of the payload, and
// AWS IoT does not run a rule that refers to JSON names on a payload that is not JSON (it counts a ParseError on
// the rule and, having no error action here, drops the message), so the function is never invoked and the device
// waits out its timeout. Every JSON request with a malformed field reaches the function and is answered on the
// rejected topic, naming the field.
func TestMalformedURLRequestsAreRejectedNamingTheField(t *testing.T) {
	lw := &lineWriter{t: t}
	tw := startEmulator(t, timeline.New(lw))
	d := connectFleet(t, tw, 1)[0]

	type answer struct {
		topic string
		reply contract.S3URLReply
	}
	answers := make(chan answer, 16)
	sub := d.Client().Subscribe(d.S3URLTopic("+"), 1, func(_ paho.Client, m paho.Message) {
		var r contract.S3URLReply
		_ = json.Unmarshal(m.Payload(), &r)
		answers <- answer{m.Topic(), r}
	})
	if !sub.WaitTimeout(10*time.Second) || sub.Error() != nil {
		t.Fatalf("subscribe: %v", sub.Error())
	}
	publish := func(payload string) {
		t.Helper()
		if tok := d.Client().Publish(d.S3URLTopic(""), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", payload, tok.Error())
		}
	}

	// Not JSON: the rule does not run (the emulator's rules engine says so on the timeline), nothing is invoked.
	publish(`operation=PUT&name=x&contentLength=5`)
	for i := 0; i < 200 && !strings.Contains(lw.String(), "payload is not a JSON object"); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(lw.String(), "payload is not a JSON object") {
		t.Fatal("the rules engine did not report the payload that is not JSON")
	}

	for i, length := range []string{`1.5`, `"5"`, `1e3`, `9223372036854775808`} {
		token := "malformed-" + string(rune('a'+i))
		publish(`{"operation":"PUT","name":"x.bin","contentLength":` + length + `,"clientToken":"` + token + `"}`)
		select {
		case a := <-answers:
			if a.reply.ClientToken != token {
				t.Fatalf("contentLength %s: an answer to another request arrived first: %+v (the request that is not JSON must get none)", length, a)
			}
			if a.topic != d.S3URLTopic(contract.ReplyRejected) || !strings.Contains(a.reply.Reason, "contentLength") {
				t.Errorf("contentLength %s: answered on %s with %+v, want rejected naming contentLength", length, a.topic, a.reply)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("contentLength %s: no answer; the device would wait out its timeout", length)
		}
	}
	if n := strings.Count(lw.String(), "invocation failed"); n != 0 {
		t.Errorf("%d failed invocations on the timeline, want none", n)
	}
}
