package caexpiry_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/caexpiry"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

func TestAssess(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	ca := func(id string, daysLeft int, status string, auto bool) caexpiry.CA {
		return caexpiry.CA{ID: id, Status: status, AutoRegistration: auto, NotBefore: now.Add(-300 * day), NotAfter: now.Add(time.Duration(daysLeft)*day + time.Hour)}
	}
	tests := []struct {
		name          string
		cas           []caexpiry.CA
		wantWithout   int
		wantSuccessor map[string]string
	}{
		{"one CA, far from expiry", []caexpiry.CA{ca("cur", 400, "ACTIVE", true)}, 400, map[string]string{"cur": ""}},
		{"one CA within 60 days, no successor", []caexpiry.CA{ca("cur", 45, "ACTIVE", true)}, 45, map[string]string{"cur": ""}},
		{"next CA registered: the current one has a successor", []caexpiry.CA{ca("cur", 45, "ACTIVE", true), ca("next", 400, "ACTIVE", true)},
			400, map[string]string{"cur": "next", "next": ""}},
		{"next CA registered INACTIVE: no successor", []caexpiry.CA{ca("cur", 45, "ACTIVE", true), ca("next", 400, "INACTIVE", true)},
			45, map[string]string{"cur": "", "next": ""}},
		{"next CA without auto-registration: no successor", []caexpiry.CA{ca("cur", 45, "ACTIVE", true), ca("next", 400, "ACTIVE", false)},
			45, map[string]string{"cur": "", "next": ""}},
		{"the only CA expired", []caexpiry.CA{ca("old", -3, "ACTIVE", true)}, 0, map[string]string{"old": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := caexpiry.Assess(tc.cas, now)
			if r.DaysLeftWithoutSuccessor != tc.wantWithout {
				t.Errorf("DaysLeftWithoutSuccessor = %d, want %d", r.DaysLeftWithoutSuccessor, tc.wantWithout)
			}
			for _, a := range r.CAs {
				if a.Successor != tc.wantSuccessor[a.ID] {
					t.Errorf("CA %s: successor %q, want %q", a.ID, a.Successor, tc.wantSuccessor[a.ID])
				}
			}
		})
	}
}

func TestEMF(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	r := caexpiry.Assess([]caexpiry.CA{{ID: "cur", Status: "ACTIVE", AutoRegistration: true, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(50*24*time.Hour + time.Hour)}}, now)
	lines := r.EMF(contract.MetricsNamespace, "Stack")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want one per CA and one for the stack", len(lines))
	}
	var fleet map[string]any
	if err := json.Unmarshal(lines[1], &fleet); err != nil {
		t.Fatal(err)
	}
	if fleet[contract.MetricDaysLeftWithoutSuccessor] != 50.0 || fleet[contract.MetricDimension] != "Stack" {
		t.Errorf("stack line = %s", lines[1])
	}
	if !strings.Contains(string(lines[0]), `"`+contract.MetricCADimension+`":"cur"`) || !strings.Contains(string(lines[0]), `"`+contract.MetricTenantCADaysLeft+`":50`) {
		t.Errorf("CA line = %s", lines[0])
	}
}
