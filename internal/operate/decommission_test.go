package operate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
	"github.com/sphere-jitr/sphere-jitr/internal/operate"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

const devicePolicy = "SphereJitr-DevicePolicy-OperateTest"

// fleetOf is the world's registry with provisioned devices: a CA of the stack, the device policy, and per device a
// thing of the stack with its certificates attached (to the thing and the policy) and a shadow.
type fleetOf struct {
	*world
	ca      *testpki.Pair
	devices []string // device ids (upper case, as Azure Sphere prints them)
}

func newFleetOf(t *testing.T) *fleetOf {
	t.Helper()
	w := newWorld(t)
	ctx := context.Background()
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := w.admin.RegisterCACertificate(ctx, &iot.RegisterCACertificateInput{CaCertificate: aws.String(string(ca.CertPEM())), SetAsActive: true}, internal)
	if err != nil {
		t.Fatal(err)
	}
	w.stack.CAIDs = []string{aws.ToString(reg.CertificateId)}
	w.stack.DevicePolicy = devicePolicy
	if _, err := w.admin.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String(devicePolicy),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`)}, internal); err != nil {
		t.Fatal(err)
	}
	return &fleetOf{world: w, ca: ca}
}

// certificate registers a certificate of the device with status, attached to its thing and the policy when attach.
func (f *fleetOf) certificate(t *testing.T, id string, status types.CertificateStatus, attach bool) string {
	t.Helper()
	ctx := context.Background()
	dev, err := f.ca.IssueDevice(id, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	reg := status
	if status == types.CertificateStatusRevoked {
		reg = types.CertificateStatusActive
	}
	cert, err := f.admin.RegisterCertificate(ctx, &iot.RegisterCertificateInput{CertificatePem: aws.String(string(dev.CertPEM())),
		CaCertificatePem: aws.String(string(f.ca.CertPEM())), Status: reg}, internal)
	if err != nil {
		t.Fatal(err)
	}
	if attach {
		if _, err := f.admin.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(strings.ToLower(id)), Principal: cert.CertificateArn}, internal); err != nil {
			t.Fatal(err)
		}
		if _, err := f.admin.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(devicePolicy), Target: cert.CertificateArn}, internal); err != nil {
			t.Fatal(err)
		}
	}
	if status == types.CertificateStatusRevoked {
		if _, err := f.admin.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: cert.CertificateId, NewStatus: status}, internal); err != nil {
			t.Fatal(err)
		}
	}
	return aws.ToString(cert.CertificateId)
}

// device provisions a device of stack as JITR leaves it (certs certificates, the last one ACTIVE) with a shadow.
func (f *fleetOf) device(t *testing.T, stack string, certs int) string {
	t.Helper()
	id := testpki.RandomDeviceID()
	thing := strings.ToLower(id)
	if _, err := f.admin.CreateThing(context.Background(), &iot.CreateThingInput{ThingName: aws.String(thing), AttributePayload: &types.AttributePayload{
		Attributes: map[string]string{contract.AttrProvisionedBy: stack, contract.AttrProvisionedAt: f.provisioned.Format(time.RFC3339)}}}, internal); err != nil {
		t.Fatal(err)
	}
	for i := range certs {
		status := types.CertificateStatusActive
		if i < certs-1 {
			status = types.CertificateStatusRevoked // an older certificate, revoked (fleetctl revoke, or a late arrival)
		}
		f.certificate(t, id, status, true)
	}
	f.shadow(t, http.MethodPost, thing, `{"state":{"reported":{"on":true}}}`)
	if stack == stackName {
		f.devices = append(f.devices, id)
	}
	return id
}

// shadow calls the classic shadow of thing on moto's IoT data plane; it returns the HTTP status.
func (f *fleetOf) shadow(t *testing.T, method, thing, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, moto.URL+"/things/"+thing+"/shadow", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: motoserver.AccessKeyID, SecretAccessKey: motoserver.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "iotdata", motoserver.Region, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// decommissioner is fleetctl's Fleet with the clients decommission deletes with, paced to half the quotas as
// cmd/fleetctl builds it; transport (when not nil) sees every request.
func (f *fleetOf) decommissioner(transport http.RoundTripper) *operate.Fleet {
	cfg := awsConfig(transport)
	iotc := iot.NewFromConfig(cfg, func(o *iot.Options) {
		o.APIOptions = append(o.APIOptions, iotapi.WithRateLimits(iotapi.RateLimits(iotquota.Defaults()).Share(0.5), iotapi.PaceUnlisted(iotquota.Unlisted*0.5)))
	})
	shadows := &operate.ShadowClient{Endpoint: moto.URL, Region: motoserver.Region, Credentials: cfg.Credentials, HTTP: cfg.HTTPClient}
	return operate.New(iotc, dynamodb.NewFromConfig(cfg), f.stack, operate.WithIndex(iotc), operate.WithQueues(sqs.NewFromConfig(cfg)),
		operate.WithClock(func() time.Time { return f.now }), operate.WithDecommission(operate.Deleters{IoT: iotc, Shadows: shadows, DenyList: dynamodb.NewFromConfig(cfg)}))
}

// gone asserts what is left of a device: decommissioned (no thing, no certificate, no shadow, on the deny-list
// as decommissioned) or untouched.
func (f *fleetOf) wantDecommissioned(t *testing.T, id string, want bool) {
	t.Helper()
	ctx := context.Background()
	thing := strings.ToLower(id)
	_, err := f.admin.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(thing)}, internal)
	if exists := err == nil; exists == want {
		t.Errorf("device %s…: thing exists %v, want %v (err %v)", thing[:8], exists, !want, err)
	}
	if code := f.shadow(t, http.MethodGet, thing, ""); (code == http.StatusNotFound) != want {
		t.Errorf("device %s…: shadow GET answered %d, decommissioned %v", thing[:8], code, want)
	}
	item, err := f.ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.stack.DenyListTable),
		Key: map[string]ddbtypes.AttributeValue{contract.DenyListKey: &ddbtypes.AttributeValueMemberS{Value: thing}}})
	if err != nil {
		t.Fatal(err)
	}
	reason, _ := item.Item[contract.DenyListReason].(*ddbtypes.AttributeValueMemberS)
	if denied := reason != nil && reason.Value == operate.DecommissionReason; denied != want {
		t.Errorf("device %s…: on the deny-list as decommissioned %v, want %v", thing[:8], denied, want)
	}
}

// certificatesLeft counts the certificates of the stack's CA still registered.
func (f *fleetOf) certificatesLeft(t *testing.T) int {
	t.Helper()
	out, err := f.admin.ListCertificatesByCA(context.Background(), &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(f.stack.CAIDs[0]), PageSize: aws.Int32(250)}, internal)
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Certificates)
}

func TestDecommissionRetiresTheDevicesNamedAndDenyListsThem(t *testing.T) {
	f := newFleetOf(t)
	ctx := context.Background()
	a := f.device(t, stackName, 1)
	b := f.device(t, stackName, 2) // an older REVOKED certificate still attached, and the ACTIVE one
	keep := f.device(t, stackName, 1)
	foreign := f.device(t, "AnotherStack", 1)
	if err := moto.ResetQuotas(ctx); err != nil {
		t.Fatal(err)
	}
	fl := f.decommissioner(nil)
	things, err := fl.Resolve(ctx, operate.Targets{IDs: []string{a, strings.ToLower(b), a}})
	if err != nil {
		t.Fatal(err)
	}
	if len(things) != 2 {
		t.Fatalf("resolve %v: want the 2 devices named, once each", things)
	}
	res, err := fl.Decommission(ctx, things, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Devices != 2 || res.Certificates != 3 {
		t.Errorf("decommission = %+v, want 2 devices, 3 certificates", res)
	}
	f.wantDecommissioned(t, a, true)
	f.wantDecommissioned(t, b, true)
	f.wantDecommissioned(t, keep, false)
	f.wantDecommissioned(t, foreign, false)
	if n := f.certificatesLeft(t); n != 2 {
		t.Errorf("%d certificates of the CA left, want 2 (the device kept and the other stack's)", n)
	}
	// allow undoes the deny-list entry: the device's next boot is provisioned again.
	if _, was, err := fl.Allow(ctx, a); err != nil || !was {
		t.Errorf("allow %s: was denied %v, %v", a[:8], was, err)
	}
	// A second run over devices already gone finishes at once and changes nothing.
	if res, err := fl.Decommission(ctx, things, false); err != nil || res.Devices != 2 || res.Certificates != 0 {
		t.Errorf("rerun = %+v, %v; want 2 devices done, no certificate", res, err)
	}
}

// cancelAfter cancels the run once it has seen n DeleteThing requests, as an operator's ^C would mid-way.
type cancelAfter struct {
	n      int64
	seen   atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodDelete && strings.HasPrefix(req.URL.Path, "/things/") && !strings.HasSuffix(req.URL.Path, "/shadow") {
		if c.seen.Add(1) == c.n {
			defer c.cancel()
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

func TestDecommissionStoppedMidwayFinishesWhenRunAgain(t *testing.T) {
	f := newFleetOf(t)
	for range 24 {
		f.device(t, stackName, 1)
	}
	if err := moto.ResetQuotas(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fl := f.decommissioner(&cancelAfter{n: 5, cancel: cancel})
	things, err := fl.Resolve(ctx, operate.Targets{IDs: f.devices})
	if err != nil {
		t.Fatal(err)
	}
	res, err := fl.Decommission(ctx, things, false)
	if err == nil || !strings.Contains(err.Error(), "run it again") {
		t.Fatalf("cancelled run: %+v, %v; want an error that says to run it again", res, err)
	}
	if res.Devices >= len(things) {
		t.Fatalf("cancelled run finished all %d devices: the test did not stop it mid-way", res.Devices)
	}
	t.Logf("first run stopped after %d of %d devices: %v", res.Devices, len(things), err)
	res, err = f.decommissioner(nil).Decommission(context.Background(), things, false)
	if err != nil || res.Devices != len(things) {
		t.Fatalf("rerun = %+v, %v; want all %d devices", res, err, len(things))
	}
	for _, id := range f.devices {
		f.wantDecommissioned(t, id, true)
	}
	if n := f.certificatesLeft(t); n != 0 {
		t.Errorf("%d certificates left after the rerun, want 0", n)
	}
}

func TestDecommissionAllAndStaleFromTheIndex(t *testing.T) {
	f := newFleetOf(t)
	ctx := context.Background()
	old := f.device(t, stackName, 1)
	recent := f.device(t, stackName, 1)
	foreign := f.device(t, "AnotherStack", 0)
	// A certificate no thing holds: pending, as JITR leaves a refused one.
	f.certificate(t, testpki.RandomDeviceID(), types.CertificateStatusPendingActivation, false)
	if err := moto.SetConnectivity(ctx,
		motoserver.Connectivity{ClientID: strings.ToLower(old), Timestamp: motoserver.Millis(f.now.Add(-40 * 24 * time.Hour)), DisconnectReason: "CONNECTION_LOST"},
		motoserver.Connectivity{ClientID: strings.ToLower(recent), Connected: true, Timestamp: motoserver.Millis(f.now.Add(-time.Hour))},
	); err != nil {
		t.Fatal(err)
	}
	if err := moto.ResetQuotas(ctx); err != nil {
		t.Fatal(err)
	}
	fl := f.decommissioner(nil)
	stale, err := fl.Resolve(ctx, operate.Targets{StaleDays: 30})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(stale) != fmt.Sprint([]string{strings.ToLower(old)}) {
		t.Fatalf("-stale-days 30 resolves to %v, want only the device gone 40 days", stale)
	}
	all, err := fl.Resolve(ctx, operate.Targets{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("-all resolves to %v, want the stack's 2 devices", all)
	}
	res, err := fl.Decommission(ctx, all, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Devices != 2 || res.LeftoverCertificates != 1 {
		t.Errorf("decommission -all = %+v, want 2 devices and the pending certificate left over", res)
	}
	f.wantDecommissioned(t, old, true)
	f.wantDecommissioned(t, recent, true)
	if n := f.certificatesLeft(t); n != 0 {
		t.Errorf("%d certificates of the stack's CA left after -all, want 0", n)
	}
	// The other stack's thing stays.
	if _, err := f.admin.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(strings.ToLower(foreign))}, internal); err != nil {
		t.Errorf("the other stack's thing: %v", err)
	}
}

func TestPlanDecommissionProjectsTheSlowestAPI(t *testing.T) {
	rates := iotapi.RateLimits(iotquota.Defaults()).Share(0.5)
	things := make([]string, 20000)
	p := operate.PlanDecommission(things, rates)
	if p.TotalCalls != 8*20000 || p.Calls["UpdateCertificate"] != 20000 || p.Calls["UpdateItem"] != 20000 {
		t.Errorf("plan calls = %d %v, want 8 per device", p.TotalCalls, p.Calls)
	}
	// UpdateCertificate, DeleteCertificate, ListThingPrincipals: 10/s each, half of it for fleetctl.
	if p.Projected != 4000*time.Second || p.Bottleneck != "DeleteCertificate" {
		t.Errorf("projected %v (bottleneck %s), want 4000 s set by a 10-TPS API at half share", p.Projected, p.Bottleneck)
	}
}
