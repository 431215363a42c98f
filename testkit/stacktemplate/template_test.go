package stacktemplate

import (
	"encoding/json"
	"testing"
)

func fixture(t *testing.T, caPEMs, verifPEMs []string) *Template {
	t.Helper()
	tmpl, err := Fixture(caPEMs, verifPEMs)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func newTestCA(t *testing.T, cn string) (caPEM, verificationPEM string) {
	t.Helper()
	caPEM, verificationPEM, err := FixtureCA(cn)
	if err != nil {
		t.Fatal(err)
	}
	return caPEM, verificationPEM
}

func TestResolverIntrinsics(t *testing.T) {
	tmpl := &Template{
		Parameters: map[string]Parameter{"P": {Default: "pv"}},
		Resources:  map[string]Resource{"A": {Type: "AWS::SQS::Queue"}, "B": {Type: "AWS::IAM::Role"}},
	}
	r := NewResolver(tmpl, "Stack", "eu-west-1", "111122223333")
	r.Refs["A"] = "queue-a"
	r.Attrs["A.Arn"] = "arn:aws:sqs:eu-west-1:111122223333:queue-a"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"ref pseudo", `{"Ref":"AWS::Region"}`, "eu-west-1"},
		{"ref resource", `{"Ref":"A"}`, "queue-a"},
		{"ref parameter default", `{"Ref":"P"}`, "pv"},
		{"getatt list", `{"Fn::GetAtt":["A","Arn"]}`, "arn:aws:sqs:eu-west-1:111122223333:queue-a"},
		{"getatt dotted", `{"Fn::GetAtt":"A.Arn"}`, "arn:aws:sqs:eu-west-1:111122223333:queue-a"},
		{"join nested", `{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":iot:",{"Ref":"AWS::AccountId"},":client/${iot:ClientId}"]]}`, "arn:aws:iot:111122223333:client/${iot:ClientId}"},
		{"sub", `{"Fn::Sub":"${AWS::StackName}-${A}-${A.Arn}-${!Literal}"}`, "Stack-queue-a-arn:aws:sqs:eu-west-1:111122223333:queue-a-${Literal}"},
		{"sub with vars", `{"Fn::Sub":["x-${V}",{"V":{"Ref":"A"}}]}`, "x-queue-a"},
		{"select split", `{"Fn::Select":[1,{"Fn::Split":[",","a,b,c"]}]}`, "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tc.in), &v); err != nil {
				t.Fatal(err)
			}
			got, err := r.String(v)
			if err != nil {
				t.Fatalf("resolve %s: %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("resolve %s = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	for _, bad := range []string{`{"Ref":"Nope"}`, `{"Ref":"B"}`, `{"Fn::If":["c","a","b"]}`, `{"Fn::GetAtt":["A","QueueName"]}`} {
		var v any
		_ = json.Unmarshal([]byte(bad), &v)
		if got, err := r.String(v); err == nil {
			t.Errorf("resolve %s = %q, want an error (unknown to the emulator)", bad, got)
		}
	}
}

func TestReadStackFindsPartsByTypeAndReference(t *testing.T) {
	ca1, v1 := newTestCA(t, "CA one")
	ca2, v2 := newTestCA(t, "CA two")
	spec, err := ReadStack(fixture(t, []string{ca1, ca2}, []string{v1, v2}))
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.CAs) != 2 || len(spec.Rules) != 2 || spec.Function != "JitrFunction9" || len(spec.Policies) != 1 || len(spec.Buckets) != 1 {
		t.Errorf("ReadStack = %+v, want 2 CAs, 2 rules to JitrFunction9, 1 policy, 1 bucket", spec)
	}
	if _, err := ReadStack(&Template{Resources: map[string]Resource{"X": {Type: "AWS::S3::Bucket"}}}); err == nil {
		t.Error("ReadStack accepted a template without a CA")
	}
}

func TestRuleTopicFilter(t *testing.T) {
	got, err := RuleTopicFilter("SELECT * FROM '$aws/events/certificates/registered/abc'")
	if err != nil || got != "$aws/events/certificates/registered/abc" {
		t.Errorf("RuleTopicFilter = %q, %v", got, err)
	}
	for _, sql := range []string{"SELECT certificateId FROM 'a/b'", "SELECT * FROM 'a/b' WHERE x = 1"} {
		if _, err := RuleTopicFilter(sql); err == nil {
			t.Errorf("RuleTopicFilter(%q) accepted SQL the emulator cannot evaluate", sql)
		}
	}
}
