package localaws_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/operate"
	"github.com/sphere-jitr/sphere-jitr/internal/teardown"
	"github.com/sphere-jitr/sphere-jitr/internal/workplan"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// liftedQuotas is how much step 2 multiplies every AWS IoT quota of moto: far above what the decommission drives.
const liftedQuotas = 100

// TestDestroyOfALargeFleet is `cdk destroy` in the emulator of a fleet too large for one custom resource
// (TEARDOWN_FLEET devices, e.g. 20000; skipped without it: make bench-teardown runs it). The devices are
// registered straight into the emulator's moto as JITR leaves them. Destroy at AWS's default quotas: the real
// teardown function prints its estimate and refuses, nothing deleted; fleetctl's decommission -all (quotas lifted
// for speed, its plan at the default quotas printed) retires the fleet; Destroy again, at the default quotas,
// completes and nothing of the stack is left.
func TestDestroyOfALargeFleet(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TEARDOWN_FLEET"))
	if n <= 0 {
		t.Skip("TEARDOWN_FLEET unset: make bench-teardown runs it (TEARDOWN_FLEET=20000)")
	}
	ctx := context.Background()
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	// The broker checks open connections against the registry by listing every certificate: no device connects
	// here, so once an hour is enough.
	opts := localaws.Options{Timeline: timeline.New(os.Stdout), RegistryPoll: time.Hour}
	share := 1.0
	if v := os.Getenv("TEARDOWN_RATE_SHARE"); v != "" {
		// A share of the default quotas for the teardown function (its IOT_RATE_LIMITS): 2000 devices at 0.1 are
		// estimated as 20000 at the default quotas, a quick rehearsal of the refusal.
		if share, _ = strconv.ParseFloat(v, 64); share <= 0 || share > 1 {
			t.Fatalf("TEARDOWN_RATE_SHARE=%s: want a fraction in (0, 1]", v)
		}
		opts.Template = teardownPacedTo(iotapi.RateLimits(teardown.DefaultRates()).Share(share))
	}
	tw, _, _ := startOperatedWith(t, opts)
	info := tw.Info()
	start := time.Now()
	provision(t, tw.IoT, info.DevicePolicy, n)
	say("\ndestroy of a large fleet: %d devices registered straight into the emulator's moto as JITR leaves them (thing, ACTIVE certificate attached to it and to the device policy) in %s",
		n, time.Since(start).Round(time.Second))

	// 1. cdk destroy at AWS's default quotas: the estimate, then the refusal; nothing deleted.
	before, err := tw.Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	say("\n$ cdk destroy   (the emulator's Destroy; the registry teardown at %g × AWS IoT's default quotas)", share)
	t0 := time.Now()
	left, err := tw.Destroy(ctx)
	if err == nil {
		// Within the budget: the teardown itself removed the fleet.
		say("Destroy succeeded after %s: %s", time.Since(t0).Round(time.Second), left)
		if !left.Empty() {
			t.Fatalf("after Destroy within the budget: %s", left)
		}
		return
	}
	var failed *localaws.DeleteFailedError
	if !errors.As(err, &failed) || !strings.Contains(failed.Reason, "fleetctl decommission -all") {
		t.Fatalf("Destroy of %d devices at the default quotas: %v; want the teardown's DELETE_FAILED naming fleetctl decommission -all", n, err)
	}
	say("Destroy failed after %s: %v", time.Since(t0).Round(100*time.Millisecond), err)
	if after, err := tw.Leftovers(ctx); err != nil || after.Things != n || after.Certificates != n || after.Things != before.Things {
		t.Fatalf("after the refusal: %s (%v); want all %d things and certificates (nothing deleted)", after, err, n)
	}
	say("nothing deleted: %d certificates and %d things still registered", n, n)

	// 2. fleetctl decommission -all, quotas lifted for speed; its plan at the default quotas.
	if err := tw.Moto.ScaleQuotas(ctx, liftedQuotas); err != nil {
		t.Fatal(err)
	}
	fleet := decommissioner(tw)
	things, err := fleet.Resolve(ctx, operate.Targets{All: true})
	if err != nil {
		t.Fatal(err)
	}
	half, full := map[string]float64{}, map[string]float64{}
	for op, rate := range teardown.DefaultRates() {
		half[op], full[op] = rate*0.5, rate
	}
	plan := operate.PlanDecommission(things, half)
	atFull, _ := workplan.Decommission(len(things)).Project(full)
	say("\n$ fleetctl decommission -all -yes   (moto's AWS IoT quotas lifted ×%d for speed)", liftedQuotas)
	say("plan: %d devices, %d API calls; at the default quotas %s with -rate-share 0.5 (slowest: %s), %s with -rate-share 1",
		len(things), plan.TotalCalls, teardown.Round(plan.Projected), plan.Bottleneck, teardown.Round(atFull))
	t0 = time.Now()
	res, err := fleet.Decommission(ctx, things, true)
	if err != nil {
		t.Fatal(err)
	}
	say("decommissioned %d devices, %d certificates retired, %d leftover certificates, in %s here", res.Devices, res.Certificates, res.LeftoverCertificates,
		time.Since(t0).Round(time.Second))
	if res.Devices != n || res.Certificates != n {
		t.Errorf("decommission -all: %+v, want %d devices and certificates", res, n)
	}
	if err := tw.Moto.ScaleQuotas(ctx, 1); err != nil {
		t.Fatal(err)
	}

	// 3. cdk destroy again, at the default quotas: SUCCESS, nothing left.
	say("\n$ cdk destroy   (again, at %g × the default quotas)", share)
	t0 = time.Now()
	left, err = tw.Destroy(ctx)
	if err != nil {
		t.Fatalf("Destroy after decommission -all: %v", err)
	}
	say("Destroy succeeded after %s: %s", time.Since(t0).Round(100*time.Millisecond), left)
	if !left.Empty() {
		t.Errorf("after decommission -all and Destroy: %s", left)
	}
}

// teardownPacedTo is the synthesized template with the teardown function paced to rates (its IOT_RATE_LIMITS, as
// an account with other quotas sets it).
func teardownPacedTo(rates map[string]float64) *stacktemplate.Template {
	text, _ := json.Marshal(rates)
	variant := env.template.Clone()
	for _, id := range variant.OfType(contract.TeardownResourceType) {
		fn := stacktemplate.ReferencedResource(variant.Prop(id, "ServiceToken"))
		variant.Resources[fn].Properties["Environment"] = map[string]any{"Variables": map[string]any{contract.EnvIoTRateLimits: string(text)}}
	}
	return variant
}

// provision registers n devices as the JITR function leaves them, 8 at a time, straight into moto (its own
// reads and writes, no quota).
func provision(t *testing.T, c *iot.Client, policy string, n int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := provisionOne(context.Background(), c, policy); err != nil {
					errs <- err
					return
				}
				if i > 0 && i%5000 == 0 {
					fmt.Fprintf(os.Stdout, "  provisioned %d/%d\n", i, n)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func provisionOne(ctx context.Context, c *iot.Client, policy string) error {
	id := testpki.RandomDeviceID()
	thing := strings.ToLower(id)
	dev, err := env.tenantCA.IssueDevice(id, time.Now().Add(-time.Hour))
	if err != nil {
		return err
	}
	cert, err := c.RegisterCertificate(ctx, &iot.RegisterCertificateInput{CertificatePem: aws.String(string(dev.CertPEM())),
		CaCertificatePem: aws.String(string(env.tenantCA.CertPEM())), Status: iottypes.CertificateStatusActive})
	if err != nil {
		return err
	}
	if _, err := c.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(thing), AttributePayload: &iottypes.AttributePayload{
		Attributes: map[string]string{contract.AttrProvisionedBy: contract.StackName}}}); err != nil {
		return err
	}
	if _, err := c.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(thing), Principal: cert.CertificateArn}); err != nil {
		return err
	}
	_, err = c.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(policy), Target: cert.CertificateArn})
	return err
}

// decommissioner is fleetctl's Fleet on the emulator's stack, through moto's quota layer without pacing of its
// own (the quotas are lifted while it runs).
func decommissioner(tw *localaws.Emulator) *operate.Fleet {
	info := tw.Info()
	cfg := tw.AWS.Copy()
	cfg.Retryer = func() aws.Retryer { return iotapi.NewRetryer(iotapi.DefaultRetryPolicy) }
	iotc := iot.NewFromConfig(cfg, func(o *iot.Options) { o.BaseEndpoint = aws.String(tw.Moto.ServiceURL("iot")) })
	ddb := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(tw.Moto.ServiceURL("dynamodb")) })
	shadows := &operate.ShadowClient{Endpoint: tw.Moto.ServiceURL("iotdata"), Region: motoserver.Region,
		Credentials: credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")}
	return operate.New(iotc, ddb, operate.Stack{Name: info.StackName, CAIDs: info.CACertificateIDs, DevicePolicy: info.DevicePolicy,
		DenyListTable: info.Outputs[contract.OutputDenyListTable]},
		operate.WithProgress(os.Stdout), operate.WithDecommission(operate.Deleters{IoT: iotc, Shadows: shadows, DenyList: ddb}))
}
