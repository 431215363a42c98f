package docs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// snapshot is the stack as `cdk synth` writes it: the stacks tests keep it equal to the synthesis.
const snapshot = "stacks/testdata/SphereJitr.template.snapshot.json"

// cdkHash is the 8 hexadecimal digits CDK appends to a logical id.
var cdkHash = regexp.MustCompile(`^(.+)[0-9A-F]{8}$`)

// alarmsOf returns the alarms of a template: the runbook name (logical id without CDK's hash) and the description.
func alarmsOf(t *testing.T, template []byte) map[string]string {
	t.Helper()
	var tmpl struct {
		Resources map[string]struct {
			Type       string
			Properties struct {
				AlarmDescription string
			}
		}
	}
	if err := json.Unmarshal(template, &tmpl); err != nil {
		t.Fatalf("read %s: %v", snapshot, err)
	}
	out := map[string]string{}
	for id, r := range tmpl.Resources {
		if r.Type != "AWS::CloudWatch::Alarm" {
			continue
		}
		m := cdkHash.FindStringSubmatch(id)
		if m == nil {
			t.Errorf("alarm %s: logical id without CDK's hash", id)
			continue
		}
		out[m[1]] = r.Properties.AlarmDescription
	}
	return out
}

// runbookProblems lists what is wrong with the alarms' runbooks: a page missing under docs/runbooks/, or a
// description that does not end by naming it.
func runbookProblems(alarms map[string]string, exists func(string) bool) []string {
	var problems []string
	for name, desc := range alarms {
		page := "docs/runbooks/" + name + ".md"
		if !exists(page) {
			problems = append(problems, "alarm "+name+": no runbook "+page)
		}
		if !strings.HasSuffix(desc, "Runbook: "+page) {
			problems = append(problems, "alarm "+name+": its description does not end with \"Runbook: "+page+"\": "+desc)
		}
	}
	sort.Strings(problems)
	return problems
}

func TestEveryAlarmHasARunbookItsDescriptionNames(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, snapshot))
	if err != nil {
		t.Fatal(err)
	}
	alarms := alarmsOf(t, data)
	if len(alarms) < 9 {
		t.Fatalf("%d alarms in %s, want at least the 9 the stack had when the runbooks were written", len(alarms), snapshot)
	}
	exists := func(rel string) bool {
		_, err := os.Stat(filepath.Join(root, rel))
		return err == nil
	}
	for _, p := range runbookProblems(alarms, exists) {
		t.Error(p)
	}
	// The check itself: an alarm without a page, and one whose description names no page, are both caught.
	broken := map[string]string{"NewAlarm": "Something happened. Runbook: docs/runbooks/NewAlarm.md", "JitrErrorsAlarm": "The JITR Lambda returned errors"}
	if got := runbookProblems(broken, exists); len(got) != 2 {
		t.Errorf("a missing page and a description without its page gave %d problems, want 2: %v", len(got), got)
	}
}
