package localaws_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// TestAccountSettingsResourceTurnsIndexingOn: the emulator deploys the stack as CloudFormation would — the
// Custom::IoTAccountSettings resource's own function (lambda/accountsettings under aws-lambda-rie, as its role)
// turns registry and connectivity indexing on with the product's attributes, its lines land in its log group, and
// the fleet metric exists — so fleetctl's index reads work in `make demo`.
func TestAccountSettingsResourceTurnsIndexingOn(t *testing.T) {
	lw := &lineWriter{t: t}
	tw := startEmulator(t, timeline.New(lw))
	ctx := context.Background()
	cfg, err := tw.IoT.GetIndexingConfiguration(ctx, &iot.GetIndexingConfigurationInput{})
	if err != nil {
		t.Fatal(err)
	}
	tc := cfg.ThingIndexingConfiguration
	if tc == nil || tc.ThingIndexingMode != iottypes.ThingIndexingModeRegistry || tc.ThingConnectivityIndexingMode != iottypes.ThingConnectivityIndexingModeStatus {
		t.Fatalf("indexing after deploy: %+v; want REGISTRY and STATUS", tc)
	}
	fields := map[string]bool{}
	for _, f := range tc.CustomFields {
		fields[aws.ToString(f.Name)] = true
	}
	for _, a := range contract.IndexedThingAttributes {
		if !fields[contract.ThingAttributeField(a)] {
			t.Errorf("custom field %s missing: %+v", contract.ThingAttributeField(a), tc.CustomFields)
		}
	}
	metrics, err := tw.IoT.ListFleetMetrics(ctx, &iot.ListFleetMetricsInput{})
	if err != nil || len(metrics.FleetMetrics) != 1 {
		t.Fatalf("fleet metrics: %+v, %v; want the stack's one", metrics, err)
	}
	var group string
	for _, cr := range tw.Deployment.CustomResourcesOf(deploy.KindAccountSettings) {
		group = cr.LogGroup
	}
	tw.LogShipper.Flush()
	out, err := tw.Logs.FilterLogEvents(ctx, filterInput(group, "fleet indexing set"))
	if err != nil || len(out.Events) == 0 {
		t.Errorf("log group %s: %d line(s) with \"fleet indexing set\", %v; the function's output goes there", group, len(out.Events), err)
	}
}
