package policy

import "testing"

const devicePolicyDoc = `{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"],
     "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
    {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": [
      "arn:aws:iot:us-east-1:123456789012:topic/devices/${iot:Connection.Thing.ThingName}/*",
      "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/update"]},
    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/devices/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": "iot:Receive", "Resource": "arn:aws:iot:us-east-1:123456789012:topic/devices/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:us-east-1:123456789012:topic/cn/${iot:Certificate.Subject.CommonName}"},
    {"Effect": "Allow", "Action": "iot:*", "Resource": "arn:aws:iot:us-east-1:123456789012:topic/by-client/${iot:ClientId}"},
    {"Effect": "Deny", "Action": "iot:Publish", "Resource": "arn:aws:iot:us-east-1:123456789012:topic/devices/*/forbidden"}
  ]
}`

func TestPolicyEvaluation(t *testing.T) {
	p, err := Parse([]byte(devicePolicyDoc))
	if err != nil {
		t.Fatal(err)
	}
	const arn = "arn:aws:iot:us-east-1:123456789012:"
	attached := map[string]string{
		"iot:ClientId": "thing-a", "iot:Connection.Thing.ThingName": "thing-a", "iot:Connection.Thing.IsAttached": "true",
		"iot:Certificate.Subject.CommonName": "THING-A",
	}
	notAttached := map[string]string{"iot:ClientId": "thing-a", "iot:Connection.Thing.IsAttached": "false", "iot:Certificate.Subject.CommonName": "THING-A"}
	tests := []struct {
		name     string
		action   string
		resource string
		vars     map[string]string
		want     bool
	}{
		{"connect as own thing", "iot:Connect", arn + "client/thing-a", attached, true},
		{"connect as another client id", "iot:Connect", arn + "client/thing-b", attached, false},
		{"connect when not attached", "iot:Connect", arn + "client/thing-a", notAttached, false},
		{"publish own telemetry", "iot:Publish", arn + "topic/devices/thing-a/telemetry", attached, true},
		{"wildcard spans levels", "iot:Publish", arn + "topic/devices/thing-a/a/b/c", attached, true},
		{"publish to another device", "iot:Publish", arn + "topic/devices/thing-b/telemetry", attached, false},
		{"explicit deny wins", "iot:Publish", arn + "topic/devices/thing-a/forbidden", attached, false},
		{"own shadow update", "iot:Publish", arn + "topic/$aws/things/thing-a/shadow/update", attached, true},
		{"other shadow update", "iot:Publish", arn + "topic/$aws/things/thing-b/shadow/update", attached, false},
		{"subscribe own filter with #", "iot:Subscribe", arn + "topicfilter/devices/thing-a/#", attached, true},
		{"subscribe to everything", "iot:Subscribe", arn + "topicfilter/#", attached, false},
		{"subscribe to all devices", "iot:Subscribe", arn + "topicfilter/devices/+/telemetry", attached, false},
		{"receive own", "iot:Receive", arn + "topic/devices/thing-a/cmd", attached, true},
		{"receive other", "iot:Receive", arn + "topic/devices/thing-b/cmd", attached, false},
		{"unresolved thing name matches nothing", "iot:Publish", arn + "topic/devices/${iot:Connection.Thing.ThingName}/x", notAttached, false},
		{"certificate CN variable", "iot:Publish", arn + "topic/cn/THING-A", attached, true},
		{"client id variable with action wildcard", "iot:Subscribe", arn + "topic/by-client/thing-a", notAttached, true},
		{"action is case-insensitive", "IOT:PUBLISH", arn + "topic/devices/thing-a/t", attached, true},
		{"unlisted action denied by default", "iot:UpdateThingShadow", arn + "topic/devices/thing-a/t", attached, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Allowed(Request{Action: tc.action, Resource: tc.resource, Vars: tc.vars}, p)
			if got != tc.want {
				t.Errorf("Allowed(%s %s) = %v, want %v", tc.action, tc.resource, got, tc.want)
			}
		})
	}
	if Allowed(Request{Action: "iot:Connect", Resource: arn + "client/thing-a", Vars: attached}) {
		t.Error("no policy at all allowed a request")
	}
}

func TestParsePolicyRefusesWhatItCannotEvaluate(t *testing.T) {
	for _, doc := range []string{
		`{"Statement":[{"Effect":"Allow","NotAction":"iot:Connect","Resource":"*"}]}`,
		`{"Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020"}}}]}`,
		`{"Statement":[{"Effect":"Maybe","Action":"iot:Connect","Resource":"*"}]}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("ParsePolicy accepted %s", doc)
		}
	}
	one, err := Parse([]byte(`{"Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringLike":{"iot:ClientId":"dev-*"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !Allowed(Request{Action: "iot:Connect", Resource: "x", Vars: map[string]string{"iot:ClientId": "dev-1"}}, one) ||
		Allowed(Request{Action: "iot:Connect", Resource: "x", Vars: map[string]string{"iot:ClientId": "other"}}, one) {
		t.Error("StringLike condition on a single-statement document evaluated wrongly")
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"a*", "a/b/c", true}, {"a?c", "abc", true}, {"a?c", "ac", false}, {"*", "", true}, {"a*b*c", "a-b-x-c", true},
		{"a*b", "a-b-c", false}, {"devices/x/#", "devices/x/#", true}, {"devices/x/#", "devices/x/y", false},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}
