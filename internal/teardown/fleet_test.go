package teardown_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/operate"
	"github.com/sphere-jitr/sphere-jitr/internal/teardown"
	"github.com/sphere-jitr/sphere-jitr/internal/workplan"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// TestDestroyOfALargeFleet is `cdk destroy` of a fleet too large for one custom resource (TEARDOWN_FLEET devices,
// e.g. 20000; skipped without it: make bench-teardown runs it): the teardown at AWS's default quotas refuses and
// deletes nothing, naming fleetctl decommission -all; decommission -all (quotas lifted for speed, its plan at the
// default quotas printed) retires the fleet; the teardown run again by CloudFormation then completes.
func TestDestroyOfALargeFleet(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TEARDOWN_FLEET"))
	if n <= 0 {
		t.Skip("TEARDOWN_FLEET unset: make bench-teardown runs it (TEARDOWN_FLEET=20000)")
	}
	ctx := context.Background()
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	r := &registry{admin: client(nil, adminCredentials)}
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: "Our Tenant CA"})
	if err != nil {
		t.Fatal(err)
	}
	r.ca, r.caID = ca, r.registerCA(t, ca)
	if _, err := r.admin.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String(policy),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	enableIndexing(t, r)
	provision(t, r, n)
	say("destroy of a large fleet: %d devices provisioned as JITR leaves them (thing, ACTIVE certificate attached to it and to the device policy) in %s",
		n, time.Since(start).Round(time.Second))

	// 1. cdk destroy at AWS's default quotas: the estimate, then the refusal; nothing deleted.
	rt := &lambdaRuntime{timeout: teardown.LambdaTimeout}
	td := teardown.New(pacedClient(t, teardown.DefaultRates()), quiet, 16, teardown.WithIndex(r.admin), teardown.WithContinuer(rt), teardown.WithResponder(rt.respond))
	est, err := td.Estimate(ctx, teardown.Scope{CACertificateIDs: []string{r.caID}, PolicyName: policy, ProvisionedBy: stackName})
	if err != nil {
		t.Fatal(err)
	}
	say("\n$ cdk destroy   (registry teardown at AWS IoT's default quotas)")
	say("estimate: %d things (%s), %d certificates (%d ACTIVE); %d calls %v; %s at the default quotas (slowest: %s); budget %s of CloudFormation's %s",
		est.Things, est.ThingsCountedBy, est.Certificates, est.ActiveCertificates, est.Calls.Total(), est.Calls, teardown.Round(est.Duration), est.Bottleneck,
		teardown.DefaultBudget, teardown.CustomResourceTimeout)
	t0 := time.Now()
	resp := rt.run(t, td, deleteEvent([]string{r.caID}, "false"))
	say("CloudFormation got %s after %s in %d invocation(s): %v %s", resp.Status, time.Since(t0).Round(100*time.Millisecond), rt.invocations, resp.Data, resp.Reason)
	if est.Duration <= teardown.DefaultBudget {
		// Within the budget: the teardown itself removes the fleet.
		if certs, things := count(t, r); resp.Status != cfn.StatusSuccess || certs != 0 || things != 0 {
			t.Fatalf("teardown within the budget: %s, %d certificates and %d things left", resp.Status, certs, things)
		}
		return
	}
	if resp.Status != cfn.StatusFailed || !strings.Contains(resp.Reason, "fleetctl decommission -all") {
		t.Fatalf("teardown of %d devices at the default quotas: %s %s, want FAILED naming fleetctl decommission -all", n, resp.Status, resp.Reason)
	}
	if certs, things := count(t, r); certs != n || things != n {
		t.Fatalf("after the refusal: %d certificates, %d things; want all %d of each (nothing deleted)", certs, things, n)
	}
	say("nothing deleted: %d certificates and %d things still registered", n, n)

	// 2. fleetctl decommission -all, quotas lifted for speed; its plan at the default quotas.
	fleet := decommissioner(t, r)
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
	say("\n$ fleetctl decommission -all -yes   (quotas lifted for speed)")
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

	// 3. cdk destroy again, at the default quotas: nothing left to remove, SUCCESS.
	rt = &lambdaRuntime{timeout: teardown.LambdaTimeout}
	td = teardown.New(pacedClient(t, teardown.DefaultRates()), quiet, 16, teardown.WithIndex(r.admin), teardown.WithContinuer(rt), teardown.WithResponder(rt.respond))
	t0 = time.Now()
	resp = rt.run(t, td, deleteEvent([]string{r.caID}, "false"))
	say("\n$ cdk destroy   (again)")
	say("CloudFormation got %s after %s in %d invocation(s): %v %s", resp.Status, time.Since(t0).Round(100*time.Millisecond), rt.invocations, resp.Data, resp.Reason)
	if resp.Status != cfn.StatusSuccess {
		t.Fatalf("teardown after decommission -all: %s %s", resp.Status, resp.Reason)
	}
	if certs, things := count(t, r); certs != 0 || things != 0 {
		t.Errorf("after cdk destroy: %d certificates, %d things left", certs, things)
	}
}

// provision registers n devices as the JITR function leaves them, 8 at a time, straight into moto.
func provision(t *testing.T, r *registry, n int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := provisionOne(ctx, r); err != nil {
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

func provisionOne(ctx context.Context, r *registry) error {
	id := testpki.RandomDeviceID()
	thing := strings.ToLower(id)
	dev, err := r.ca.IssueDevice(id, time.Now().Add(-time.Hour))
	if err != nil {
		return err
	}
	cert, err := r.admin.RegisterCertificate(ctx, &iot.RegisterCertificateInput{CertificatePem: aws.String(string(dev.CertPEM())),
		CaCertificatePem: aws.String(string(r.ca.CertPEM())), Status: types.CertificateStatusActive})
	if err != nil {
		return err
	}
	if _, err := r.admin.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(thing), AttributePayload: &types.AttributePayload{
		Attributes: map[string]string{contract.AttrProvisionedBy: stackName}}}); err != nil {
		return err
	}
	if _, err := r.admin.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(thing), Principal: cert.CertificateArn}); err != nil {
		return err
	}
	_, err = r.admin.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(policy), Target: cert.CertificateArn})
	return err
}

// count is the certificates of the CA (paged) and the things of the stack (the fleet index).
func count(t *testing.T, r *registry) (certs, things int) {
	t.Helper()
	ctx := context.Background()
	var marker *string
	for {
		out, err := r.admin.ListCertificatesByCA(ctx, &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(r.caID), Marker: marker, PageSize: aws.Int32(250)})
		if err != nil {
			t.Fatal(err)
		}
		certs += len(out.Certificates)
		if aws.ToString(out.NextMarker) == "" {
			break
		}
		marker = out.NextMarker
	}
	st, err := r.admin.GetStatistics(ctx, &iot.GetStatisticsInput{QueryString: aws.String(contract.ThingAttributeField(contract.AttrProvisionedBy) + ":" + stackName)})
	if err != nil {
		t.Fatal(err)
	}
	return certs, int(st.Statistics.Count)
}

// decommissioner is fleetctl's Fleet over moto with the quotas lifted (no pacing), with the stack's deny-list.
func decommissioner(t *testing.T, r *registry) *operate.Fleet {
	t.Helper()
	ctx := context.Background()
	cfg := aws.Config{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: adminCredentials,
		Retryer: func() aws.Retryer { return iotapi.NewRetryer(iotapi.DefaultRetryPolicy) }}
	ddb := dynamodb.NewFromConfig(cfg)
	table := "deny-list"
	if _, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{TableName: aws.String(table), BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(contract.DenyListKey), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(contract.DenyListKey), KeyType: ddbtypes.KeyTypeHash}}}); err != nil {
		t.Fatal(err)
	}
	iotc := iot.NewFromConfig(cfg)
	shadows := &operate.ShadowClient{Endpoint: moto.URL, Region: motoserver.Region, Credentials: credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")}
	return operate.New(iotc, ddb, operate.Stack{Name: stackName, CAIDs: []string{r.caID}, DevicePolicy: policy, DenyListTable: table},
		operate.WithProgress(os.Stdout), operate.WithDecommission(operate.Deleters{IoT: iotc, Shadows: shadows, DenyList: ddb}))
}
