package localaws_test

// End-to-end tests of `cdk destroy` in the emulator (Emulator.Destroy): the registry teardown's Delete through the
// real lambda/teardown function as its role, the account settings' Delete through lambda/accountsettings, then the
// stack's resources, and the check of what is left.

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/lambdaruntime"
	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// TestDestroyRemovesTheStackAndPutsTheAccountBack: devices provisioned through JITR, then Destroy: the teardown
// answers SUCCESS, nothing of the stack is left in moto, and fleet indexing is as it was before the deploy.
func TestDestroyRemovesTheStackAndPutsTheAccountBack(t *testing.T) {
	ctx := context.Background()
	if err := env.moto.Reset(); err != nil {
		t.Fatal(err)
	}
	before := indexing(t, iot.NewFromConfig(localaws.AWSConfig(env.moto.URL), func(o *iot.Options) { o.BaseEndpoint = aws.String(env.moto.ServiceURL("iot")) }))
	lw := &lineWriter{t: t}
	tw := startEmulator(t, timeline.New(lw))
	if deployed := indexing(t, tw.IoT); deployed == before {
		t.Fatalf("fleet indexing after deploy %s, as before it: the account-settings resource changed nothing", deployed)
	}
	for _, d := range connectFleet(t, tw, 3) {
		d.Disconnect()
	}
	left, err := tw.Destroy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !left.Empty() {
		t.Errorf("after Destroy: %s", left)
	}
	if after := indexing(t, tw.IoT); after != before {
		t.Errorf("fleet indexing after Destroy %s, want it put back as before the deploy: %s", after, before)
	}
	if !strings.Contains(lw.String(), "registry teardown estimate") || !strings.Contains(lw.String(), "things=3") {
		t.Errorf("the timeline shows no progress of the teardown function with its 3 things")
	}
}

// indexing is the account's fleet indexing modes.
func indexing(t *testing.T, c *iot.Client) string {
	t.Helper()
	out, err := c.GetIndexingConfiguration(context.Background(), &iot.GetIndexingConfigurationInput{})
	if err != nil {
		t.Fatal(err)
	}
	tc := out.ThingIndexingConfiguration
	if tc == nil {
		tc = &iottypes.ThingIndexingConfiguration{}
	}
	return string(tc.ThingIndexingMode) + "/" + string(tc.ThingConnectivityIndexingMode)
}

// TestDestroyOfTooLargeAFleetIsRefusedUntilDecommissioned: with the teardown function paced so slowly (its
// IOT_RATE_LIMITS) that two devices exceed its budget, Destroy fails with the function's reason naming fleetctl
// decommission -all and nothing is deleted; after `fleetctl decommission -all -yes` Destroy succeeds and nothing
// is left.
func TestDestroyOfTooLargeAFleetIsRefusedUntilDecommissioned(t *testing.T) {
	ctx := context.Background()
	lw := &lineWriter{t: t}
	// DeleteThing at one call per 2000 s: two things take 4000 s, more than the 50 minutes the teardown takes on.
	tw, info, _ := startOperatedWith(t, localaws.Options{Template: teardownPacedTo(map[string]float64{"DeleteThing": 0.0005}), Timeline: timeline.New(lw)})
	for _, d := range connectFleet(t, tw, 2) {
		d.Disconnect()
	}
	before, err := tw.Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Things != 2 || before.Certificates != 2 {
		t.Fatalf("before Destroy: %s; want the 2 devices' things and certificates", before)
	}

	_, err = tw.Destroy(ctx)
	var failed *localaws.DeleteFailedError
	if !errors.As(err, &failed) || failed.Type != contract.TeardownResourceType || !strings.Contains(failed.Reason, "fleetctl decommission -all") {
		t.Fatalf("Destroy of a fleet over the budget: %v; want the teardown's DELETE_FAILED naming fleetctl decommission -all", err)
	}
	if after, err := tw.Leftovers(ctx); err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("after the refusal: %s (%v); want everything still there: %s", after, err, before)
	}

	runFleetctl(t, info, "decommission", "-all", "-yes")
	left, err := tw.Destroy(ctx)
	if err != nil {
		t.Fatalf("Destroy after decommission -all: %v", err)
	}
	if !left.Empty() {
		t.Errorf("after decommission -all and Destroy: %s", left)
	}
}

// TestFunctionsInvokeThroughLambdaAsTheirRoleAllows: the Lambda Invoke endpoint the functions use (the teardown
// continues itself through it) lets the teardown function invoke itself, as its role's RegistryTeardownContinuePolicy
// allows, and refuses the JITR function, whose role does not.
func TestFunctionsInvokeThroughLambdaAsTheirRoleAllows(t *testing.T) {
	tw := startEmulator(t, nil)
	var teardown *lambdaruntime.Function
	for _, f := range tw.Functions {
		if f.Deployed.Kind == deploy.KindTeardown {
			teardown = f
		}
	}
	invoke := func(as *lambdaruntime.Function) error {
		c := lambda.NewFromConfig(tw.AWS, func(o *lambda.Options) {
			o.BaseEndpoint, o.Credentials = aws.String(tw.LambdaEndpoint()), as.Identity.Credentials()
		})
		_, err := c.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(teardown.Deployed.Name), InvocationType: lambdatypes.InvocationTypeDryRun})
		return err
	}
	if err := invoke(teardown); err != nil {
		t.Errorf("the teardown function invoking itself: %v", err)
	}
	if err := invoke(tw.Functions[tw.Deployment.JITR().LogicalID]); err == nil || !strings.Contains(err.Error(), "AccessDeniedException") {
		t.Errorf("the JITR function invoking the teardown function: %v, want AccessDeniedException", err)
	}
}
