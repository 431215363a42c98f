package stacks

import (
	"strings"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/internal/config"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// The account-settings resource, the fleet metric and its alarm: logging only when the context asks for it, the
// fleet metric after the index, the alarm at the configured threshold.
func TestFleetIndexResources(t *testing.T) {
	for name, c := range map[string]struct {
		s       *synthesized
		logging string
	}{"default": {oneCA, ""}, "iotLogging=ERROR": {retained, "ERROR"}} {
		settings := resources(c.s, contract.AccountSettingsResourceType)
		if len(settings) != 1 {
			t.Fatalf("%s: %d %s resources, want 1", name, len(settings), contract.AccountSettingsResourceType)
		}
		var settingsID string
		for id, r := range settings {
			settingsID = id
			props := r["Properties"].(map[string]any)
			if got, _ := props[contract.PropLogLevel].(string); got != c.logging {
				t.Errorf("%s: %s = %q, want %q", name, contract.PropLogLevel, got, c.logging)
			}
			if _, has := props[contract.PropLogRoleARN]; has != (c.logging != "") {
				t.Errorf("%s: %s present = %v, want %v", name, contract.PropLogRoleARN, has, c.logging != "")
			}
		}
		loggingRoles := 0
		for _, r := range resources(c.s, "AWS::IAM::Role") {
			if strings.Contains(asJSON(r), "iot.amazonaws.com") && strings.Contains(asJSON(r), "AWS IoT logging") {
				loggingRoles++
			}
		}
		if want := map[bool]int{true: 1, false: 0}[c.logging != ""]; loggingRoles != want {
			t.Errorf("%s: %d AWS IoT logging roles, want %d", name, loggingRoles, want)
		}
		metrics := resources(c.s, "AWS::IoT::FleetMetric")
		if len(metrics) != 1 {
			t.Fatalf("%s: %d fleet metrics, want 1", name, len(metrics))
		}
		for id, m := range metrics {
			q := asJSON(m["Properties"].(map[string]any)["QueryString"])
			if !strings.Contains(q, "attributes.provisionedBy:") || !strings.Contains(q, "connectivity.connected:true") {
				t.Errorf("%s: fleet metric %s query %s", name, id, q)
			}
			if !strings.Contains(asJSON(m["DependsOn"]), settingsID) {
				t.Errorf("%s: fleet metric %s does not depend on %s (the index must exist first)", name, id, settingsID)
			}
		}
		found := false
		for _, a := range resources(c.s, "AWS::CloudWatch::Alarm") {
			p := a["Properties"].(map[string]any)
			if strings.Contains(asJSON(p), "DIFF(m)") {
				found = true
				if p["Threshold"] != float64(config.DefaultConnectedDropAlarmPercent) {
					t.Errorf("%s: drop alarm threshold %v, want %d", name, p["Threshold"], config.DefaultConnectedDropAlarmPercent)
				}
			}
		}
		if !found {
			t.Errorf("%s: no connected-devices drop alarm", name)
		}
	}
}
