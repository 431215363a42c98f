package workplan

import (
	"testing"
	"time"
)

func TestProjectIsSetByTheSlowestOperation(t *testing.T) {
	c := Decommission(20000)
	if c.Total() != 8*20000 {
		t.Errorf("decommission of 20000 devices: %d calls, want 8 each", c.Total())
	}
	rates := map[string]float64{"UpdateCertificate": 5, "DeleteCertificate": 5, "ListThingPrincipals": 5, "DetachPolicy": 7.5,
		"DetachThingPrincipal": 50, "DeleteThing": 4}
	d, op := c.Project(rates)
	if d != 5000*time.Second || op != "DeleteThing" {
		t.Errorf("projected %v set by %s, want 5000 s set by DeleteThing (20000 at 4/s)", d, op)
	}
	if d, op := (Calls{"UpdateItem": 10}).Project(rates); d != 0 || op != "" {
		t.Errorf("unpaced calls projected %v (%s), want no time", d, op)
	}
}
