package rulesql

import "testing"

func TestRuleSQLSelectsFieldsAndTopicLevels(t *testing.T) {
	s, err := Parse("SELECT topic(2) AS topicThing, operation, name FROM 'devices/+/s3/url'")
	if err != nil || s.TopicFilter != "devices/+/s3/url" {
		t.Fatalf("%+v %v", s, err)
	}
	// A field of the payload named like the alias does not override the topic level.
	out, err := s.Apply("devices/abc/s3/url", []byte(`{"operation":"GET","name":"x","topicThing":"other","extra":1}`))
	if err != nil || string(out) != `{"name":"x","operation":"GET","topicThing":"abc"}` {
		t.Errorf("Apply = %s, %v", out, err)
	}
	if _, err := s.Apply("devices/abc/s3/url", []byte("not json")); err == nil {
		t.Error("a payload that is not JSON was accepted")
	}
	for _, sql := range []string{"SELECT a FROM 'x' WHERE b = 1", "SELECT upper(a) FROM 'x'", "SELECT topic(0) AS t FROM 'x'", "DELETE FROM 'x'"} {
		if _, err := Parse(sql); err == nil {
			t.Errorf("Parse(%q) accepted SQL the emulator cannot evaluate", sql)
		}
	}
}
