package presign

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// TestMalformedRequestsAreAnsweredNamingTheField feeds the rule's output, as JSON text, through the Lambda runtime's
// own decoding (lambda.NewHandler, what lambda.Start runs): a field of the wrong JSON type or an integer that is not
// one must end in a rejected reply that names the field, never in a decoding error that leaves the device without
// an answer until its timeout.
func TestMalformedRequestsAreAnsweredNamingTheField(t *testing.T) {
	const prefix = `{"topicThing":"` + thing + `","clientToken":"tok-1",`
	cases := []struct {
		name, event string
		field       string // what the reason must name; "" for an accepted request
	}{
		{"fractional length", prefix + `"operation":"PUT","name":"x","contentLength":1.5}`, "contentLength"},
		{"length as a string", prefix + `"operation":"PUT","name":"x","contentLength":"5"}`, "contentLength"},
		{"length with an exponent", prefix + `"operation":"PUT","name":"x","contentLength":1e3}`, "contentLength"},
		{"length of 2^63", prefix + `"operation":"PUT","name":"x","contentLength":9223372036854775808}`, "contentLength"},
		{"length of -2^63-1", prefix + `"operation":"PUT","name":"x","contentLength":-9223372036854775809}`, "contentLength"},
		{"length as an object", prefix + `"operation":"PUT","name":"x","contentLength":{"n":5}}`, "contentLength"},
		{"length true", prefix + `"operation":"PUT","name":"x","contentLength":true}`, "contentLength"},
		{"negative length", prefix + `"operation":"PUT","name":"x","contentLength":-5}`, "contentLength"},
		{"length on a GET", prefix + `"operation":"GET","name":"x","contentLength":5}`, "contentLength"},
		{"operation as a number", prefix + `"operation":1,"name":"x"}`, "operation"},
		{"operation missing", prefix + `"name":"x"}`, "operation"},
		{"name as a list", prefix + `"operation":"GET","name":["x"]}`, "name"},
		{"name missing", prefix + `"operation":"GET"}`, "name"},
		{"scope as a number", prefix + `"operation":"GET","scope":1,"name":"x"}`, "scope"},
		{"scope as a list", prefix + `"operation":"GET","scope":["fleet"],"name":"x"}`, "scope"},
		{"scope unknown", prefix + `"operation":"GET","scope":"bucket","name":"x"}`, "scope"},
		{"PUT in the fleet scope", prefix + `"operation":"PUT","scope":"fleet","name":"x","contentLength":5}`, "scope"},
		{"GET in the fleet scope", prefix + `"operation":"GET","scope":"fleet","name":"x"}`, ""},
		{"null scope", prefix + `"operation":"GET","scope":null,"name":"x"}`, ""},
		{"token as a number", `{"topicThing":"` + thing + `","operation":"GET","name":"x","clientToken":7}`, "clientToken"},
		{"integer length", prefix + `"operation":"PUT","name":"x","contentLength":5}`, ""},
		{"null length on a GET", prefix + `"operation":"GET","name":"x","contentLength":null}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, out, _ := newTestHandler(t, nil)
			if _, err := lambda.NewHandler(h.Handle).Invoke(context.Background(), []byte(c.event)); err != nil {
				t.Fatalf("invocation failed, the device gets no answer: %v", err)
			}
			if len(*out) != 1 {
				t.Fatalf("published %d answers, want 1", len(*out))
			}
			var r contract.S3URLReply
			if err := json.Unmarshal((*out)[0].payload, &r); err != nil {
				t.Fatal(err)
			}
			outcome := contract.ReplyRejected
			if c.field == "" {
				outcome = contract.ReplyAccepted
			}
			if want := contract.S3URLReplyTopic("devices", thing, outcome); (*out)[0].topic != want {
				t.Fatalf("answered on %s (%+v), want %s", (*out)[0].topic, r, want)
			}
			if c.field != "" && !strings.Contains(r.Reason, c.field) {
				t.Errorf("reason %q does not name %s", r.Reason, c.field)
			}
			if c.field != "clientToken" && r.ClientToken != "tok-1" {
				t.Errorf("clientToken %q not echoed", r.ClientToken)
			}
		})
	}
}

// TestEventThatIsNotAnObjectFails: no thing name can be read, so there is no one to answer (and the rule never
// sends one: AWS IoT does not run the rule for a payload that is not JSON).
func TestEventThatIsNotAnObjectFails(t *testing.T) {
	for _, ev := range []string{`not json`, `[1]`, `"x"`} {
		var e Event
		if err := json.Unmarshal([]byte(ev), &e); err == nil {
			t.Errorf("%s decoded to %+v, want an error", ev, e)
		}
	}
}
