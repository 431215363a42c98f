package main

import (
	"bytes"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
)

func TestParseDecommissionTakesSeveralDevicesAndItsFlags(t *testing.T) {
	c, err := parse("decommission", []string{"AA", "-dry-run", "BB", "-stale-days", "30", "-yes", "-all"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	d := c.decommission
	if len(c.args) != 2 || !d.dryRun || !d.yes || !d.all || d.staleDays != 30 {
		t.Errorf("parsed args %v, flags %+v", c.args, d)
	}
	if _, err := parse("status", []string{"-yes"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("status accepted -yes: decommission's flags leaked into other commands")
	}
}

// The plan's rates are fleetctl's pacing: -rate-share of AWS's defaults, an unlisted operation at the lowest.
func TestDecommissionRatesAreTheSharedQuotas(t *testing.T) {
	rates := decommissionRates(0.5)
	update, _ := iotquota.Rate("UpdateCertificate")
	if rates["UpdateCertificate"] != update*0.5 || rates["DeleteThing"] != iotquota.Unlisted*0.5 {
		t.Errorf("rates %v", rates)
	}
	if _, paced := rates["UpdateItem"]; paced {
		t.Error("the deny-list's DynamoDB calls paced to an AWS IoT quota")
	}
}
