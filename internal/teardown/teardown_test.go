package teardown_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/internal/teardown"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

var moto *motoserver.Server

func TestMain(m *testing.M) {
	os.Exit(motoserver.RunTests(m, &moto))
}

const (
	stackName = "SphereJitrTeardownTest"
	policy    = "SphereJitr-DevicePolicy-TEST"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// throttler answers every n-th request with the ThrottlingException AWS IoT sends, so the real SDK retryer works.
type throttler struct {
	every int64
	count atomic.Int64
	hits  atomic.Int64
}

func (t *throttler) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.every > 0 && t.count.Add(1)%t.every == 0 {
		t.hits.Add(1)
		return &http.Response{
			StatusCode: http.StatusTooManyRequests,
			Header:     http.Header{"X-Amzn-Errortype": {"ThrottlingException"}, "Content-Type": {"application/json"}},
			Body:       io.NopCloser(strings.NewReader(`{"message":"Rate exceeded"}`)),
			Request:    req,
		}, nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

// adminCredentials sign the tests' own set-up and assertions: moto does not check them.
var adminCredentials = credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")

// snapshotTemplate is the stack as `cdk synth` writes it: the snapshot the stacks tests keep equal to the synthesis.
const snapshotTemplate = "../../stacks/testdata/SphereJitr.template.snapshot.json"

// teardownPrincipal reads the teardown function's role from the synthesized template (edit, when not nil,
// changes the template first) and registers it with moto, which then authorizes every call signed with its
// credentials by IAM's rules against the role's policies, as AWS does.
func teardownPrincipal(t *testing.T, edit func(*stacktemplate.Template)) aws.CredentialsProvider {
	t.Helper()
	p, err := stacktemplate.SnapshotRole{Template: snapshotTemplate, Stack: stackName, Edit: edit, Function: stacktemplate.TeardownFunction}.
		Register(context.Background(), moto)
	if err != nil {
		t.Fatal(err)
	}
	return p.Credentials()
}

// teardownClient is the teardown function's client: its calls are authorized as the function's role.
func teardownClient(t *testing.T, transport http.RoundTripper) *iot.Client {
	return client(transport, teardownPrincipal(t, nil))
}

func client(transport http.RoundTripper, creds aws.CredentialsProvider) *iot.Client {
	opts := iot.Options{
		Region:       motoserver.Region,
		BaseEndpoint: aws.String(moto.URL),
		Credentials:  creds,
		Retryer:      iotapi.NewRetryer(iotapi.RetryPolicy{MaxAttempts: 10, MaxBackoff: 20 * time.Millisecond}),
	}
	if transport != nil {
		opts.HTTPClient = &http.Client{Transport: transport}
	}
	return iot.New(opts)
}

// registry is a moto IoT registry as a deployed stack and its fleet leave it: our CA with devices the real JITR
// handler provisioned, plus what belongs to someone else.
type registry struct {
	admin        *iot.Client
	ca, otherCA  *testpki.Pair
	caID         string
	otherCAID    string
	devices      []string // thing names
	foreignThing string
	foreignCert  string
}

func newRegistry(t *testing.T) *registry {
	t.Helper()
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := &registry{admin: client(nil, adminCredentials)}
	var err error
	if r.ca, err = testpki.NewCA(testpki.CAOptions{CommonName: "Our Tenant CA"}); err != nil {
		t.Fatal(err)
	}
	if r.otherCA, err = testpki.NewCA(testpki.CAOptions{CommonName: "Someone Else's CA"}); err != nil {
		t.Fatal(err)
	}
	r.caID = r.registerCA(t, r.ca)
	r.otherCAID = r.registerCA(t, r.otherCA)
	if _, err := r.admin.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String(policy),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}

	// Three devices provisioned by the real JITR handler; the second one reboots (a new certificate, the old one
	// retired by the handler).
	h := jitr.NewHandler(r.admin, jitr.Config{CAs: map[string]*x509.Certificate{r.caID: r.ca.Cert}, PolicyName: policy, ProvisionedBy: stackName},
		jitr.WithLogger(quiet), jitr.WithMetricsOutput(io.Discard))
	for i := 0; i < 3; i++ {
		id := testpki.RandomDeviceID()
		boots := 1
		if i == 1 {
			boots = 2
		}
		for b := 0; b < boots; b++ {
			certID := r.registerDeviceCert(t, r.ca, id, time.Now().Add(time.Duration(b-2)*time.Hour))
			if err := h.Handle(ctx, jitr.Event{CertificateID: certID, CACertificateID: r.caID, Timestamp: jitr.EpochMillis(time.Now().UnixMilli()),
				CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: motoserver.AccountID}); err != nil {
				t.Fatalf("JITR: %v", err)
			}
		}
		r.devices = append(r.devices, strings.ToLower(id))
	}
	// One more certificate of ours that never got provisioned (still PENDING_ACTIVATION).
	r.registerDeviceCert(t, r.ca, testpki.RandomDeviceID(), time.Now())

	// Someone else's thing, with an ACTIVE certificate of another CA and our policy attached.
	r.foreignThing = "someone-elses-thing"
	if _, err := r.admin.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(r.foreignThing),
		AttributePayload: &types.AttributePayload{Attributes: map[string]string{"owner": "another-team"}}}); err != nil {
		t.Fatal(err)
	}
	r.foreignCert = r.registerDeviceCert(t, r.otherCA, testpki.RandomDeviceID(), time.Now())
	arn := r.certARN(t, r.foreignCert)
	if _, err := r.admin.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(r.foreignCert), NewStatus: types.CertificateStatusActive}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(r.foreignThing), Principal: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(policy), Target: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	// JITR deleted the rebooted device's old certificate: our CA holds 3 ACTIVE and 1 PENDING_ACTIVATION.
	if n := len(r.certsOf(t, r.caID)); n != 4 {
		t.Fatalf("setup: %d certificates under our CA, want 4", n)
	}
	return r
}

func (r *registry) registerCA(t *testing.T, ca *testpki.Pair) string {
	t.Helper()
	out, err := r.admin.RegisterCACertificate(context.Background(), &iot.RegisterCACertificateInput{
		CaCertificate: aws.String(string(ca.CertPEM())), SetAsActive: true, AllowAutoRegistration: true})
	if alreadyRegistered(err) {
		return certificateID(ca.Cert.Raw)
	}
	if err != nil {
		t.Fatal(err)
	}
	return *out.CertificateId
}

func (r *registry) registerDeviceCert(t *testing.T, ca *testpki.Pair, deviceID string, notBefore time.Time) string {
	t.Helper()
	dev, err := ca.IssueDevice(deviceID, notBefore)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.admin.RegisterCertificate(context.Background(), &iot.RegisterCertificateInput{
		CertificatePem: aws.String(string(dev.CertPEM())), CaCertificatePem: aws.String(string(ca.CertPEM())),
		Status: types.CertificateStatusPendingActivation})
	if alreadyRegistered(err) {
		return certificateID(dev.Cert.Raw)
	}
	if err != nil {
		t.Fatal(err)
	}
	return *out.CertificateId
}

// alreadyRegistered says a registration answered ResourceAlreadyExists: the SDK retried a request whose first
// attempt went through (moto's development server now and then cuts an answer short), so the certificate is there.
func alreadyRegistered(err error) bool {
	var exists *types.ResourceAlreadyExistsException
	return errors.As(err, &exists)
}

// certificateID is AWS IoT's id of a certificate: the SHA-256 of its DER, in hex.
func certificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func (r *registry) certARN(t *testing.T, id string) string {
	t.Helper()
	out, err := r.admin.DescribeCertificate(context.Background(), &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.CertificateDescription.CertificateArn
}

func (r *registry) certsOf(t *testing.T, ca string) []types.Certificate {
	t.Helper()
	out, err := r.admin.ListCertificatesByCA(context.Background(), &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(ca)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Certificates
}

func (r *registry) thingsOf(t *testing.T, stack string) []string {
	t.Helper()
	out, err := r.admin.ListThings(context.Background(), &iot.ListThingsInput{AttributeName: aws.String(contract.AttrProvisionedBy), AttributeValue: aws.String(stack)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, th := range out.Things {
		names = append(names, *th.ThingName)
	}
	return names
}

func deleteEvent(ids []string, retain string) cfn.Event {
	list := make([]any, len(ids))
	for i, id := range ids {
		list[i] = id
	}
	return cfn.Event{RequestType: cfn.RequestDelete, LogicalResourceID: "Teardown", PhysicalResourceID: "registry-teardown-Teardown",
		ResourceProperties: map[string]any{contract.PropCACertificateIDs: list, contract.PropPolicyName: policy,
			contract.PropProvisionedBy: stackName, contract.PropRetainRegistry: retain}}
}

// wantOnlyForeignLeft asserts the outcome of a full teardown.
func (r *registry) wantOnlyForeignLeft(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if certs := r.certsOf(t, r.caID); len(certs) != 0 {
		t.Errorf("%d certificates of our CA left", len(certs))
	}
	if things := r.thingsOf(t, stackName); len(things) != 0 {
		t.Errorf("JITR-created things left: %v", things)
	}
	if _, err := r.admin.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(r.foreignThing)}); err != nil {
		t.Errorf("someone else's thing was removed: %v", err)
	}
	out, err := r.admin.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(r.foreignCert)})
	if err != nil || out.CertificateDescription.Status != types.CertificateStatusActive {
		t.Errorf("the other CA's certificate was touched: %v %v", err, out)
	}
	principals, err := r.admin.ListThingPrincipals(ctx, &iot.ListThingPrincipalsInput{ThingName: aws.String(r.foreignThing)})
	if err != nil || len(principals.Principals) != 1 {
		t.Errorf("someone else's thing lost its certificate: %v %v", err, principals)
	}
}

func TestDeleteRemovesWhatJITRCreatedAndNothingElse(t *testing.T) {
	r := newRegistry(t)
	td := teardown.New(teardownClient(t, nil), quiet, 4)
	ctx := context.Background()

	id, data, err := td.HandleEvent(ctx, deleteEvent([]string{r.caID}, "false"))
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if id != "registry-teardown-Teardown" || data["Certificates"] != 4 || data["Things"] != 3 {
		t.Errorf("Delete answered %q %v, want the same physical id, 4 certificates, 3 things", id, data)
	}
	r.wantOnlyForeignLeft(t)

	// The CA can now go the way CloudFormation removes it: INACTIVE, then delete.
	if _, err := r.admin.UpdateCACertificate(ctx, &iot.UpdateCACertificateInput{CertificateId: aws.String(r.caID), NewStatus: types.CACertificateStatusInactive}); err != nil {
		t.Fatalf("deactivate CA: %v", err)
	}
	if _, err := r.admin.DeleteCACertificate(ctx, &iot.DeleteCACertificateInput{CertificateId: aws.String(r.caID)}); err != nil {
		t.Fatalf("delete CA: %v", err)
	}

	// Delete again (CloudFormation retries, or the user runs cdk destroy twice): still succeeds.
	if _, _, err := td.HandleEvent(ctx, deleteEvent([]string{r.caID}, "false")); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	r.wantOnlyForeignLeft(t)
}

func TestDeleteRetainsTheRegistryWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		event func(cfn.Event) cfn.Event
	}{
		{"retainRegistry", func(e cfn.Event) cfn.Event { return e }},
		// A teardown resource deployed before the rename carries RetainDevices: its "true" still keeps the registry.
		{"RetainDevices of a stack deployed before the rename", func(e cfn.Event) cfn.Event {
			delete(e.ResourceProperties, contract.PropRetainRegistry)
			e.ResourceProperties[contract.PropRetainDevicesLegacy] = "true"
			return e
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRegistry(t)
			td := teardown.New(teardownClient(t, nil), quiet, 4)
			if _, _, err := td.HandleEvent(context.Background(), tc.event(deleteEvent([]string{r.caID}, "true"))); err != nil {
				t.Fatal(err)
			}
			if n := len(r.certsOf(t, r.caID)); n != 4 {
				t.Errorf("registry retained: %d certificates left, want all 4", n)
			}
			if n := len(r.thingsOf(t, stackName)); n != 3 {
				t.Errorf("registry retained: %d things left, want all 3", n)
			}
		})
	}
}

func TestCreateAndUpdateRemoveNothingOfCurrentCAs(t *testing.T) {
	r := newRegistry(t)
	td := teardown.New(teardownClient(t, nil), quiet, 4)
	ctx := context.Background()
	create := deleteEvent([]string{r.caID}, "false")
	create.RequestType, create.PhysicalResourceID = cfn.RequestCreate, ""
	id, _, err := td.HandleEvent(ctx, create)
	if err != nil || id != "registry-teardown-Teardown" {
		t.Fatalf("Create: %q %v", id, err)
	}
	// The next tenant CA joins (our CA stays): nothing removed.
	update := deleteEvent([]string{r.caID, r.otherCAID}, "false")
	update.RequestType = cfn.RequestUpdate
	update.OldResourceProperties = deleteEvent([]string{r.caID}, "false").ResourceProperties
	if id, _, err := td.HandleEvent(ctx, update); err != nil || id != "registry-teardown-Teardown" {
		t.Fatalf("Update: %q %v", id, err)
	}
	if n := len(r.certsOf(t, r.caID)); n != 4 {
		t.Errorf("after Create and Update: %d certificates of our CA, want 4", n)
	}
	// Our CA leaves the stack (its devices moved to the next CA): its certificates go, things stay.
	update.OldResourceProperties, update.ResourceProperties = update.ResourceProperties, deleteEvent([]string{r.otherCAID}, "false").ResourceProperties
	if _, _, err := td.HandleEvent(ctx, update); err != nil {
		t.Fatalf("Update removing a CA: %v", err)
	}
	if n := len(r.certsOf(t, r.caID)); n != 0 {
		t.Errorf("certificates of the removed CA left: %d", n)
	}
	if n := len(r.thingsOf(t, stackName)); n != 3 {
		t.Errorf("Update removed things: %d left, want 3", n)
	}
	if n := len(r.certsOf(t, r.otherCAID)); n != 1 {
		t.Errorf("certificates of the CA still in the stack: %d, want 1", n)
	}
}

func TestDeleteRidesOutThrottling(t *testing.T) {
	r := newRegistry(t)
	th := &throttler{every: 3}
	td := teardown.New(teardownClient(t, th), quiet, 4)
	if _, _, err := td.HandleEvent(context.Background(), deleteEvent([]string{r.caID}, "false")); err != nil {
		t.Fatalf("Delete under throttling: %v", err)
	}
	if th.hits.Load() == 0 {
		t.Fatal("no call was throttled: the test proves nothing")
	}
	t.Logf("%d of %d calls throttled and retried", th.hits.Load(), th.count.Load())
	r.wantOnlyForeignLeft(t)
}

// failingDelete is the real client with DeleteCertificate failing for one certificate.
type failingDelete struct {
	*iot.Client
	certID string
}

func (f failingDelete) DeleteCertificate(ctx context.Context, in *iot.DeleteCertificateInput, opts ...func(*iot.Options)) (*iot.DeleteCertificateOutput, error) {
	if aws.ToString(in.CertificateId) == f.certID {
		return nil, &types.InternalFailureException{Message: aws.String("injected")}
	}
	return f.Client.DeleteCertificate(ctx, in, opts...)
}

func TestPartialFailureReportsWhatIsLeftAndRerunFinishes(t *testing.T) {
	r := newRegistry(t)
	victim := *r.certsOf(t, r.caID)[0].CertificateId

	// CloudFormation sees FAILED with a reason naming what is left.
	var response struct{ Status, Reason, PhysicalResourceId string }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_ = json.NewDecoder(req.Body).Decode(&response)
	}))
	defer srv.Close()
	ev := deleteEvent([]string{r.caID}, "false")
	ev.ResponseURL = srv.URL
	td := teardown.New(failingDelete{Client: teardownClient(t, nil), certID: victim}, quiet, 4)
	if _, err := cfn.LambdaWrap(td.HandleEvent)(context.Background(), ev); err != nil {
		t.Fatalf("sending the response: %v", err)
	}
	if response.Status != "FAILED" || response.PhysicalResourceId != "registry-teardown-Teardown" {
		t.Errorf("response %+v, want FAILED for the same physical id", response)
	}
	for _, want := range []string{"1 left", "certificate " + victim, "injected", "Run 'cdk destroy' again"} {
		if !strings.Contains(response.Reason, want) {
			t.Errorf("reason %q lacks %q", response.Reason, want)
		}
	}
	var incomplete *teardown.IncompleteError
	if _, _, err := td.HandleEvent(context.Background(), ev); !errors.As(err, &incomplete) || incomplete.Left != 1 {
		t.Errorf("rerun with the fault still there: %v, want 1 left", err)
	}

	// The fault clears: running again finishes the job.
	if _, _, err := teardown.New(teardownClient(t, nil), quiet, 4).HandleEvent(context.Background(), ev); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	r.wantOnlyForeignLeft(t)
}

// TestDeleteWithoutDetachGrantAnswersFailedNamingTheAction: IAM is enforced as in AWS, so a teardown role that
// lacks iot:DetachThingPrincipal is denied at its first detachment, and CloudFormation is told FAILED with the
// denied action in the reason.
func TestDeleteWithoutDetachGrantAnswersFailedNamingTheAction(t *testing.T) {
	r := newRegistry(t)
	creds := teardownPrincipal(t, func(tmpl *stacktemplate.Template) {
		fn, err := stacktemplate.TeardownFunction(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		stacktemplate.MoveGrant(tmpl, fn, []string{"iot:DetachThingPrincipal"}, ":cert/*", "")
	})
	defer teardownPrincipal(t, nil) // the next tests run with the role as synthesized

	var response struct{ Status, Reason, PhysicalResourceId string }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_ = json.NewDecoder(req.Body).Decode(&response)
	}))
	defer srv.Close()
	ev := deleteEvent([]string{r.caID}, "false")
	ev.ResponseURL = srv.URL
	td := teardown.New(client(nil, creds), quiet, 4)
	if _, err := cfn.LambdaWrap(td.HandleEvent)(context.Background(), ev); err != nil {
		t.Fatalf("sending the response: %v", err)
	}
	if response.Status != "FAILED" {
		t.Fatalf("response %+v, want FAILED", response)
	}
	for _, want := range []string{"AccessDeniedException", "is not authorized to perform: iot:DetachThingPrincipal on resource: arn:aws:iot:"} {
		if !strings.Contains(response.Reason, want) {
			t.Errorf("reason %q lacks %q", response.Reason, want)
		}
	}
	t.Logf("CloudFormation is told: %s", response.Reason)
	if n := len(r.thingsOf(t, stackName)); n != 3 {
		t.Errorf("%d JITR things left, want all 3 (nothing could be detached)", n)
	}
}
