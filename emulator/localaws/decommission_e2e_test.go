package localaws_test

// End-to-end test of `fleetctl decommission` (the built binary) against the emulator: a provisioned, connected
// device is decommissioned; its thing, certificate and shadow are gone; its next boot is refused by the JITR
// function (the deny-list); after `fleetctl allow` the boot after that is provisioned again.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

func TestDecommissionedDeviceIsGoneAndRefusedUntilAllowed(t *testing.T) {
	lw := &lineWriter{t: t}
	tw, info, _ := startOperated(t, timeline.New(lw))
	cfg := deviceConfig(tw, timeline.New(lw))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := devicesim.NewDevice("device-1", env.tenantCA, cfg)
	keep := devicesim.NewDevice("device-2", env.tenantCA, cfg)
	for _, dev := range []*devicesim.Device{d, keep} {
		if err := dev.Boot(); err != nil {
			t.Fatal(err)
		}
		if err := dev.Connect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	defer keep.Disconnect()
	first := devicesim.CertificateID(d.Certificate().Cert)
	d.Disconnect()

	dry, _ := runFleetctl(t, info, "decommission", strings.ToUpper(d.ID), "-dry-run")
	if !strings.Contains(dry, "decommission 1 devices") || !strings.Contains(dry, "nothing changed") || certStatus(t, tw, first) != "ACTIVE" {
		t.Fatalf("dry run printed\n%s\nand left the certificate %s, want the plan and nothing changed", dry, certStatus(t, tw, first))
	}
	out, stderr := runFleetctl(t, info, "decommission", strings.ToUpper(d.ID), "-yes")
	if !strings.Contains(out, "decommissioned 1 of 1 devices") || !strings.Contains(stderr, "1/1 devices") {
		t.Errorf("decommission printed\n%s\nprogress\n%s", out, stderr)
	}
	if got := certStatus(t, tw, first); got != "deleted" {
		t.Errorf("the decommissioned device's certificate is %s, want deleted", got)
	}
	if _, err := tw.IoT.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(d.Thing)}); !iotapi.IsNotFound(err) {
		t.Errorf("the decommissioned device's thing: %v, want not found", err)
	}
	if _, err := tw.IoT.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(keep.Thing)}); err != nil {
		t.Errorf("the other device's thing: %v", err)
	}

	// Its next boot: a new certificate, auto-registered, refused by the function (the device is on the deny-list).
	if got := nextBootRefused(ctx, t, tw, d, "decommissioned"); got == "ACTIVE" {
		t.Errorf("the decommissioned device's new certificate is ACTIVE: it registered again")
	}

	runFleetctl(t, info, "allow", d.ID)
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(ctx); err != nil {
		t.Fatalf("the allowed device's next boot: %v", err)
	}
	defer d.Disconnect()
	if got := certStatus(t, tw, devicesim.CertificateID(d.Certificate().Cert)); got != "ACTIVE" {
		t.Errorf("the allowed device's certificate is %s, want ACTIVE", got)
	}
}
