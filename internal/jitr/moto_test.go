package jitr_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// moto is the one server of this test binary; every scenario resets it first.
var moto *motoserver.Server

func TestMain(m *testing.M) {
	// A fuzzing run (-fuzz, and its worker processes) exercises only the fuzz targets, which need no server:
	// starting moto in each worker would cost seconds of every bounded run.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	os.Exit(motoserver.RunTests(m, &moto, func() { printBenchTable(os.Stdout) }))
}

const (
	testPolicy = "sphere-jitr-test-device-policy"
	testStack  = "SphereJitrTestStack"
	// testDenyList is the deny-list table of the fixture.
	testDenyList = "sphere-jitr-test-deny-list"
)

// call is one IoT API call the handler's client made (not an attempt: retries are counted in attempts).
type call struct {
	op    string
	input any
}

// recorder sits in the handler's real IoT client: a middleware records every API call, and the HTTP transport
// answers chosen attempts with a ThrottlingException (HTTP 429) as AWS IoT does, so the SDK's own
// deserializer and retryer see it exactly like a real throttle.
type recorder struct {
	mu       sync.Mutex
	calls    []call
	attempts int
	perCall  map[int]int // attempts by call index
	// throttle decides, per attempt, whether to throttle it: n is the 1-based index of the API call the
	// attempt belongs to, attempt the 1-based attempt of that call.
	throttle func(op string, n, attempt int) bool
	// lose decides, per attempt, whether the attempt takes effect in moto but its response is lost.
	lose func(op string, n, attempt int) bool
	// reject decides, per attempt, whether it fails with a non-retryable error and does not take effect.
	reject func(op string, n, attempt int) bool
	// hang decides, per attempt, whether it never completes: the attempt calls expire (which ends the
	// handler's context as the Lambda deadline would) and waits for the context to end.
	hang   func(op string, n, attempt int) bool
	expire func()
	base   http.RoundTripper
}

type callIndexKey struct{}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	op := awsmiddleware.GetOperationName(req.Context())
	n, _ := req.Context().Value(callIndexKey{}).(int)
	r.mu.Lock()
	r.attempts++
	if r.perCall == nil {
		r.perCall = map[int]int{}
	}
	r.perCall[n]++
	attempt := r.perCall[n]
	throttle := r.throttle != nil && r.throttle(op, n, attempt)
	lose := r.lose != nil && r.lose(op, n, attempt)
	reject := r.reject != nil && r.reject(op, n, attempt)
	hang, expire := r.hang != nil && r.hang(op, n, attempt), r.expire
	r.mu.Unlock()
	if hang {
		expire()
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	if reject {
		return errorResponse(req, http.StatusBadRequest, "InvalidRequestException", "rejected (test)"), nil
	}
	if lose {
		// The request reaches moto and takes effect; its response is lost, as when a Lambda dies or a
		// connection drops mid-call. The SDK sees a 500, retries, and finally returns the error.
		resp, err := r.base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return errorResponse(req, http.StatusInternalServerError, "InternalFailureException", "response lost (test)"), nil
	}
	if throttle {
		return errorResponse(req, http.StatusTooManyRequests, "ThrottlingException", "Rate exceeded"), nil
	}
	return r.base.RoundTrip(req)
}

// errorResponse is an AWS IoT (REST-JSON) error response.
func errorResponse(req *http.Request, status int, code, message string) *http.Response {
	body := `{"message":"` + message + `"}`
	return &http.Response{
		StatusCode: status,
		Status:     fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header: http.Header{
			"X-Amzn-Errortype": []string{code},
			"Content-Type":     []string{"application/json"},
		},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

func (r *recorder) record(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("recordCall",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			r.mu.Lock()
			r.calls = append(r.calls, call{op: awsmiddleware.GetOperationName(ctx), input: in.Parameters})
			n := len(r.calls)
			r.mu.Unlock()
			return next.HandleInitialize(context.WithValue(ctx, callIndexKey{}, n), in)
		}), middleware.After)
}

func (r *recorder) snapshot() (calls []call, attempts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls), r.attempts
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls, r.attempts, r.perCall, r.throttle, r.lose, r.reject, r.hang, r.expire = nil, 0, nil, nil, nil, nil, nil, nil
}

// setFault installs one kind of fault, chosen per attempt by at; faultNone removes them all.
func (r *recorder) setFault(kind faultKind, at func(op string, n, attempt int) bool, expire func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.throttle, r.lose, r.reject, r.hang, r.expire = nil, nil, nil, nil, expire
	switch kind {
	case faultThrottle:
		r.throttle = at
	case faultLostResponse:
		r.lose = at
	case faultError:
		r.reject = at
	case faultDeadline:
		r.hang = at
	}
}

// faultKind is what goes wrong with an AWS call in the fault-injection scenarios.
type faultKind string

const (
	faultNone         faultKind = ""
	faultError        faultKind = "error"         // rejected (HTTP 400), not applied, not retried
	faultLostResponse faultKind = "lost response" // applied by moto, the client sees a 500 on every attempt
	faultThrottle     faultKind = "throttling"    // 429 on every attempt, beyond the retryer
	faultDeadline     faultKind = "deadline"      // the Lambda deadline passes during the call
)

// deadlineContext is a context whose deadline is far away until expire is called, and then has passed: the
// handler sees exactly what a Lambda deadline reached during a given call looks like.
type deadlineContext struct {
	context.Context // Background: values only
	done            chan struct{}
	once            sync.Once
}

func newDeadlineContext() *deadlineContext {
	return &deadlineContext{Context: context.Background(), done: make(chan struct{})}
}

func (c *deadlineContext) Deadline() (time.Time, bool) { return time.Now().Add(time.Hour), true }

func (c *deadlineContext) Done() <-chan struct{} { return c.done }

func (c *deadlineContext) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *deadlineContext) expire() { c.once.Do(func() { close(c.done) }) }

func (r *recorder) setThrottle(f func(op string, n, attempt int) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.throttle = f
}

func ops(calls []call) []string {
	names := make([]string, len(calls))
	for i, c := range calls {
		names[i] = c.op
	}
	return names
}

// testRetryPolicy is the production retryer with short delays, so throttling scenarios take milliseconds.
var testRetryPolicy = iotapi.RetryPolicy{MaxAttempts: 4, MaxBackoff: 20 * time.Millisecond}

// adminCredentials sign the fixtures' own set-up and assertions: moto does not check them.
var adminCredentials = credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")

func newIoTClient(rec *recorder, policy iotapi.RetryPolicy, creds aws.CredentialsProvider) *iot.Client {
	opts := iot.Options{
		Region:       motoserver.Region,
		BaseEndpoint: aws.String(moto.URL),
		Credentials:  creds,
		Retryer:      iotapi.NewRetryer(policy),
	}
	if rec != nil {
		rec.base = http.DefaultTransport
		opts.HTTPClient = &http.Client{Transport: rec}
		opts.APIOptions = append(opts.APIOptions, rec.record)
	}
	return iot.New(opts)
}

// newDenyListClient is the deny-list's DynamoDB client against moto; rec (optional) records its calls apart from
// the IoT calls.
func newDenyListClient(rec *recorder, creds aws.CredentialsProvider) *dynamodb.Client {
	opts := dynamodb.Options{
		Region:       motoserver.Region,
		BaseEndpoint: aws.String(moto.URL),
		Credentials:  creds,
		Retryer:      iotapi.NewRetryer(iotapi.DefaultRetryPolicy),
	}
	if rec != nil {
		opts.APIOptions = append(opts.APIOptions, rec.record)
	}
	return dynamodb.New(opts)
}

// syncBuffer is a bytes.Buffer safe for the concurrent scenario.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// snapshotTemplate is the stack as `cdk synth` writes it: the snapshot the stacks tests keep equal to the synthesis.
const snapshotTemplate = "../../stacks/testdata/SphereJitr.template.snapshot.json"

// jitrPrincipal reads the JITR function's role from the synthesized template (edit, when not nil, changes the
// template first, e.g. to break a grant) and registers it with moto: every call the handler makes with
// principal.Credentials() is then authorized by IAM's rules against the role's policies, as in AWS.
func jitrPrincipal(t testing.TB, edit func(*stacktemplate.Template)) motoserver.Principal {
	t.Helper()
	p, err := stacktemplate.SnapshotRole{Template: snapshotTemplate, Stack: testStack, Edit: edit, Function: stacktemplate.JitrFunction,
		Pin: func(tmpl *stacktemplate.Template, r *stacktemplate.Resolver) {
			// The fixture's deny-list table stands for the stack's: the role's grant names it.
			for _, id := range tmpl.OfType("AWS::DynamoDB::Table") {
				r.Refs[id] = testDenyList
				r.Attrs[id+".Arn"] = fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", motoserver.Region, motoserver.AccountID, testDenyList)
			}
		}}.Register(context.Background(), moto)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture is a freshly reset moto with the stack's parts in place: a registered tenant CA and the device policy.
// The handler calls AWS IoT as the JITR function's role (IAM enforced); the fixture's own calls are not checked.
type fixture struct {
	principal motoserver.Principal
	admin     *iot.Client // setup and assertions; not recorded
	ca        *testpki.Pair
	caID      string
	cfg       jitr.Config
	rec       *recorder
	deny      *recorder // the deny-list reads, counted apart from the IoT calls
	h         *jitr.Handler
	logs      *syncBuffer
	metrics   *syncBuffer
}

func newFixture(t testing.TB, policy iotapi.RetryPolicy) *fixture {
	t.Helper()
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin := newIoTClient(nil, iotapi.DefaultRetryPolicy, adminCredentials)
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := admin.RegisterCACertificate(ctx, &iot.RegisterCACertificateInput{
		CaCertificate:         aws.String(string(ca.CertPEM())),
		SetAsActive:           true,
		AllowAutoRegistration: true,
	})
	if err != nil {
		t.Fatalf("register CA: %v", err)
	}
	if _, err := admin.CreatePolicy(ctx, &iot.CreatePolicyInput{
		PolicyName:     aws.String(testPolicy),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`),
	}); err != nil {
		t.Fatalf("create policy: %v", err)
	}
	// The deny-list table, keyed as the stack declares it.
	if _, err := newDenyListClient(nil, adminCredentials).CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(testDenyList),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(contract.DenyListKey), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(contract.DenyListKey), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("create deny-list table: %v", err)
	}
	// The configuration goes through ConfigFromEnv with the variables the stack sets.
	env := map[string]string{
		contract.EnvCACertificateIDs:  *reg.CertificateId,
		contract.EnvCACertificatesPEM: string(ca.CertPEM()),
		contract.EnvDevicePolicyName:  testPolicy,
		contract.EnvProvisionedBy:     testStack,
		contract.EnvDenyListTable:     testDenyList,
		// The scenarios run Handle directly (activation, then the retirement in the same call): the ledger and the
		// queues are named but not used; batch_test runs the queued path.
		contract.EnvLedgerTable:          "unused-ledger",
		contract.EnvRegistrationQueueURL: "unused-registrations",
		contract.EnvRetirementQueueURL:   "unused-retirements",
	}
	cfg, err := jitr.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	f := &fixture{principal: jitrPrincipal(t, nil), admin: admin, ca: ca, caID: *reg.CertificateId, cfg: cfg, rec: &recorder{}, deny: &recorder{}, logs: &syncBuffer{}, metrics: &syncBuffer{}}
	f.h = f.newHandler(f.rec, policy)
	return f
}

func (f *fixture) newHandler(rec *recorder, policy iotapi.RetryPolicy) *jitr.Handler {
	return jitr.NewHandler(newIoTClient(rec, policy, f.principal.Credentials()), f.cfg, jitr.WithDenyList(newDenyListClient(f.deny, f.principal.Credentials())),
		jitr.WithLogger(slog.New(slog.NewJSONHandler(f.logs, nil))), jitr.WithMetricsOutput(f.metrics))
}

// denyDevice puts the device on the deny-list as `fleetctl revoke` does.
func (f *fixture) denyDevice(t testing.TB, deviceID string) {
	t.Helper()
	_, err := newDenyListClient(nil, adminCredentials).PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(testDenyList),
		Item: map[string]ddbtypes.AttributeValue{
			contract.DenyListKey:       &ddbtypes.AttributeValueMemberS{Value: strings.ToLower(deviceID)},
			contract.DenyListRevokedAt: &ddbtypes.AttributeValueMemberS{Value: time.Now().UTC().Format(time.RFC3339)},
		}})
	if err != nil {
		t.Fatalf("deny device: %v", err)
	}
}

// allowDevice takes the device off the deny-list as `fleetctl allow` does.
func (f *fixture) allowDevice(t testing.TB, deviceID string) {
	t.Helper()
	_, err := newDenyListClient(nil, adminCredentials).DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(testDenyList),
		Key: map[string]ddbtypes.AttributeValue{contract.DenyListKey: &ddbtypes.AttributeValueMemberS{Value: strings.ToLower(deviceID)}}})
	if err != nil {
		t.Fatalf("allow device: %v", err)
	}
}

// device issues a device certificate from the fixture's CA and registers it the way AWS IoT auto-registration
// does (PENDING_ACTIVATION, under the CA). It returns the certificate id.
func (f *fixture) device(t testing.TB, deviceID string, notBefore time.Time) string {
	t.Helper()
	pair, err := f.ca.IssueDevice(deviceID, notBefore)
	if err != nil {
		t.Fatal(err)
	}
	return f.register(t, pair)
}

func (f *fixture) register(t testing.TB, pair *testpki.Pair) string {
	t.Helper()
	return f.registerUnder(t, pair, f.ca)
}

// registerUnder registers a certificate as auto-registration under ca does.
func (f *fixture) registerUnder(t testing.TB, pair, ca *testpki.Pair) string {
	t.Helper()
	out, err := f.admin.RegisterCertificate(context.Background(), &iot.RegisterCertificateInput{
		CertificatePem:   aws.String(string(pair.CertPEM())),
		CaCertificatePem: aws.String(string(ca.CertPEM())),
		Status:           types.CertificateStatusPendingActivation,
	})
	var exists *types.ResourceAlreadyExistsException
	if errors.As(err, &exists) {
		// The admin client's retryer resent a registration whose first answer was lost (it happens when the
		// machine is loaded): the certificate is there, under the id AWS IoT gives it, the SHA-256 of its DER.
		sum := sha256.Sum256(pair.Cert.Raw)
		return hex.EncodeToString(sum[:])
	}
	if err != nil {
		t.Fatalf("register device certificate: %v", err)
	}
	return *out.CertificateId
}

// registerCA registers another CA in moto (ACTIVE, auto-registration) and returns it with its id. The
// stack's configuration is not changed.
func (f *fixture) registerCA(t testing.TB) (*testpki.Pair, string) {
	t.Helper()
	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: "Another Tenant CA"})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := f.admin.RegisterCACertificate(context.Background(), &iot.RegisterCACertificateInput{
		CaCertificate: aws.String(string(ca.CertPEM())), SetAsActive: true, AllowAutoRegistration: true,
	})
	if err != nil {
		t.Fatalf("register CA: %v", err)
	}
	return ca, *reg.CertificateId
}

func (f *fixture) event(certID string) jitr.Event {
	now := time.Now().UnixMilli()
	return jitr.Event{
		CertificateID:                    certID,
		CACertificateID:                  f.caID,
		Timestamp:                        jitr.EpochMillis(now),
		CertificateStatus:                string(types.CertificateStatusPendingActivation),
		AWSAccountID:                     motoserver.AccountID,
		CertificateRegistrationTimestamp: jitr.EpochMillis(now),
	}
}

func (f *fixture) handle(t testing.TB, certID string) {
	t.Helper()
	if err := f.h.Handle(context.Background(), f.event(certID)); err != nil {
		t.Fatalf("Handle(%s): %v", certID[:8], err)
	}
}

// status returns the certificate's status, or "" if it does not exist.
func (f *fixture) status(t testing.TB, certID string) types.CertificateStatus {
	t.Helper()
	out, err := f.admin.DescribeCertificate(context.Background(), &iot.DescribeCertificateInput{CertificateId: aws.String(certID)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.CertificateDescription.Status
}

// thingPrincipals returns the certificate ids attached to the thing, or nil if the thing does not exist.
func (f *fixture) thingPrincipals(t testing.TB, thing string) []string {
	t.Helper()
	out, err := f.admin.ListThingPrincipals(context.Background(), &iot.ListThingPrincipalsInput{ThingName: aws.String(thing)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, arn := range out.Principals {
		ids = append(ids, arn[strings.LastIndex(arn, "/")+1:])
	}
	slices.Sort(ids)
	return ids
}

func (f *fixture) thingExists(t testing.TB, thing string) bool {
	t.Helper()
	_, err := f.admin.DescribeThing(context.Background(), &iot.DescribeThingInput{ThingName: aws.String(thing)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func (f *fixture) hasPolicy(t testing.TB, arn string) bool {
	t.Helper()
	out, err := f.admin.ListAttachedPolicies(context.Background(), &iot.ListAttachedPoliciesInput{Target: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(out.Policies, func(p types.Policy) bool { return aws.ToString(p.PolicyName) == testPolicy })
}

// registryState is everything the handler can change, for comparing final states.
type registryState struct {
	Certificates map[string]types.CertificateStatus
	Things       map[string]map[string]string // attributes
	Principals   map[string][]string          // thing → certificate ids
	Policies     map[string]bool              // certificate id → device policy attached
}

func (f *fixture) state(t testing.TB) registryState {
	t.Helper()
	ctx := context.Background()
	s := registryState{Certificates: map[string]types.CertificateStatus{}, Things: map[string]map[string]string{},
		Principals: map[string][]string{}, Policies: map[string]bool{}}
	certs, err := f.admin.ListCertificates(ctx, &iot.ListCertificatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs.Certificates {
		s.Certificates[*c.CertificateId] = c.Status
		s.Policies[*c.CertificateId] = f.hasPolicy(t, *c.CertificateArn)
	}
	things, err := f.admin.ListThings(ctx, &iot.ListThingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range things.Things {
		s.Things[*th.ThingName] = th.Attributes
		s.Principals[*th.ThingName] = f.thingPrincipals(t, *th.ThingName)
	}
	return s
}

// assertActiveInvariant fails the test if any ACTIVE certificate lacks its thing or the device policy: the
// invariant that holds at every moment, also right after a failure.
func (f *fixture) assertActiveInvariant(t testing.TB) {
	t.Helper()
	f.checkInvariant(t, false)
}

// assertInvariant fails the test unless the registry has converged: every ACTIVE certificate has its one
// thing and the policy, no REVOKED or INACTIVE certificate of the stack's CAs is attached to a thing, and no
// thing has more than one ACTIVE certificate of the stack's CAs.
func (f *fixture) assertInvariant(t testing.TB) {
	t.Helper()
	f.checkInvariant(t, true)
}

func (f *fixture) checkInvariant(t testing.TB, converged bool) {
	t.Helper()
	ctx := context.Background()
	certs, err := f.admin.ListCertificates(ctx, &iot.ListCertificatesInput{PageSize: aws.Int32(250)})
	if err != nil {
		t.Fatal(err)
	}
	activeByThing := map[string][]string{}
	for _, c := range certs.Certificates {
		id := *c.CertificateId
		things, err := f.admin.ListPrincipalThings(ctx, &iot.ListPrincipalThingsInput{Principal: c.CertificateArn})
		if err != nil {
			t.Fatal(err)
		}
		desc, err := f.admin.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: c.CertificateId})
		if err != nil {
			t.Fatal(err)
		}
		_, ours := f.cfg.CAs[aws.ToString(desc.CertificateDescription.CaCertificateId)]
		switch c.Status {
		case types.CertificateStatusActive:
			if len(things.Things) != 1 {
				t.Errorf("invariant broken: ACTIVE certificate %s is attached to things %v, want exactly one", id[:8], things.Things)
			}
			if !f.hasPolicy(t, *c.CertificateArn) {
				t.Errorf("invariant broken: ACTIVE certificate %s has no %s policy", id[:8], testPolicy)
			}
			if ours {
				for _, th := range things.Things {
					activeByThing[th] = append(activeByThing[th], id[:8])
				}
			}
		case types.CertificateStatusRevoked, types.CertificateStatusInactive:
			if converged && ours && len(things.Things) > 0 {
				t.Errorf("not converged: %s certificate %s of the stack's CA is still attached to things %v", c.Status, id[:8], things.Things)
			}
		}
	}
	if converged {
		for th, ids := range activeByThing {
			if len(ids) > 1 {
				t.Errorf("not converged: thing %.8s… has %d ACTIVE certificates %v, want at most one", th, len(ids), ids)
			}
		}
	}
}

// activeCertificates returns the ids of the ACTIVE certificates.
func (f *fixture) activeCertificates(t testing.TB) []string {
	t.Helper()
	var ids []string
	for id, st := range f.state(t).Certificates {
		if st == types.CertificateStatusActive {
			ids = append(ids, id)
		}
	}
	return ids
}

// metricTotals sums each metric over the EMF records written so far.
func (f *fixture) metricTotals(t testing.TB) map[string]float64 {
	t.Helper()
	totals := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(f.metrics.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("metrics line is not JSON: %v: %s", err, line)
		}
		if _, ok := rec["_aws"]; !ok {
			t.Fatalf("metrics line has no _aws directive: %s", line)
		}
		for _, name := range allMetrics {
			if v, ok := rec[name].(float64); ok {
				totals[name] += v
			}
		}
	}
	return totals
}

func (f *fixture) wantMetrics(t testing.TB, want map[string]float64) {
	t.Helper()
	got := f.metricTotals(t)
	for _, name := range allMetrics {
		if got[name] != want[name] {
			t.Errorf("metric %s = %v, want %v (all: %v)", name, got[name], want[name], got)
		}
	}
}

func thingOf(deviceID string) string { return strings.ToLower(deviceID) }
