package teardown_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/teardown"
)

// lambdaRuntime plays the Lambda service and CloudFormation around Serve: it runs an invocation with the
// function's deadline, runs the continuation the function asked for as the next invocation, and keeps the one
// response CloudFormation receives.
type lambdaRuntime struct {
	mu          sync.Mutex
	timeout     time.Duration // each invocation's deadline
	pending     []teardown.Invocation
	responses   []*cfn.Response
	invocations int
}

func (l *lambdaRuntime) Continue(_ context.Context, inv teardown.Invocation) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, inv)
	return nil
}

func (l *lambdaRuntime) respond(_ context.Context, r *cfn.Response) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.responses = append(l.responses, r)
	return nil
}

// run delivers CloudFormation's request and every continuation until the function answers.
func (l *lambdaRuntime) run(t *testing.T, td *teardown.Teardown, e cfn.Event) *cfn.Response {
	t.Helper()
	l.pending = []teardown.Invocation{{Event: e}}
	for len(l.pending) > 0 {
		inv := l.pending[0]
		l.pending = l.pending[1:]
		l.invocations++
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		err := td.Serve(ctx, inv)
		cancel()
		if err != nil {
			t.Fatalf("invocation %d: %v", l.invocations, err)
		}
		if l.invocations > 500 {
			t.Fatal("more than 500 invocations: the teardown does not converge")
		}
	}
	if len(l.responses) != 1 {
		t.Fatalf("CloudFormation got %d responses, want exactly 1", len(l.responses))
	}
	return l.responses[0]
}

// pacedClient is the teardown function's client as lambda/teardown builds it, paced to rates.
func pacedClient(t *testing.T, rates map[string]float64) *iot.Client {
	c := teardownClient(t, nil)
	return iot.New(c.Options(), func(o *iot.Options) { o.APIOptions = append(o.APIOptions, iotapi.WithRateLimits(rates)) })
}

func ratesOf(r float64) map[string]float64 {
	out := map[string]float64{}
	for op := range teardown.DefaultRates() {
		out[op] = r
	}
	return out
}

func enableIndexing(t *testing.T, r *registry) {
	t.Helper()
	if _, err := r.admin.UpdateIndexingConfiguration(context.Background(), &iot.UpdateIndexingConfigurationInput{ThingIndexingConfiguration: &types.ThingIndexingConfiguration{
		ThingIndexingMode: types.ThingIndexingModeRegistry}}); err != nil {
		t.Fatal(err)
	}
}

// A teardown whose estimate exceeds the budget answers FAILED at once, names fleetctl decommission -all and how
// long it takes, and deletes nothing — not even the CA's auto-registration.
func TestDeleteBeyondTheBudgetIsRefusedAndDeletesNothing(t *testing.T) {
	r := newRegistry(t)
	enableIndexing(t, r)
	rates := ratesOf(0.001) // 4 certificates and 3 things at one call per 1000 s: hours
	client := pacedClient(t, rates)
	rt := &lambdaRuntime{timeout: time.Minute}
	td := teardown.New(client, quiet, 4, teardown.WithRates(rates), teardown.WithIndex(client), teardown.WithContinuer(rt), teardown.WithResponder(rt.respond))
	resp := rt.run(t, td, deleteEvent([]string{r.caID}, "false"))
	if resp.Status != cfn.StatusFailed || !strings.Contains(resp.Reason, "fleetctl decommission -all") || !strings.Contains(resp.Reason, "nothing deleted") ||
		!strings.Contains(resp.Reason, "3 things (counted by fleet index)") {
		t.Errorf("response %s: %s; want FAILED naming fleetctl decommission -all, the counts from the fleet index, nothing deleted", resp.Status, resp.Reason)
	}
	t.Logf("refusal: %s", resp.Reason)
	if n := len(r.certsOf(t, r.caID)); n != 4 {
		t.Errorf("%d certificates left, want all 4", n)
	}
	if n := len(r.thingsOf(t, stackName)); n != 3 {
		t.Errorf("%d things left, want all 3", n)
	}
	ca, err := r.admin.DescribeCACertificate(context.Background(), &iot.DescribeCACertificateInput{CertificateId: aws.String(r.caID)})
	if err != nil || ca.CertificateDescription.AutoRegistrationStatus != types.AutoRegistrationStatusEnable {
		t.Errorf("the CA's auto-registration after a refused teardown: %v %v, want still ENABLE", err, ca)
	}
}

// Work that fits the budget but not one invocation goes on across invocations, each continuing the last, and
// CloudFormation gets one SUCCESS with the totals.
func TestDeleteContinuesAcrossInvocations(t *testing.T) {
	r := newRegistry(t)
	enableIndexing(t, r)
	rates := ratesOf(4) // every operation at 4/s: a few calls per invocation
	client := pacedClient(t, rates)
	// Each invocation has 1.2 s of work before the margin the teardown keeps before its deadline.
	rt := &lambdaRuntime{timeout: teardown.DeadlineMargin + 1200*time.Millisecond}
	td := teardown.New(client, quiet, 4, teardown.WithRates(rates), teardown.WithIndex(client), teardown.WithContinuer(rt), teardown.WithResponder(rt.respond))
	resp := rt.run(t, td, deleteEvent([]string{r.caID}, "false"))
	if resp.Status != cfn.StatusSuccess {
		t.Fatalf("response %s: %s", resp.Status, resp.Reason)
	}
	if rt.invocations < 2 {
		t.Errorf("%d invocations: the test did not make the work outlast one", rt.invocations)
	}
	if resp.Data["Certificates"] != 4 || resp.Data["Things"] != 3 {
		t.Errorf("response data %v, want the totals of all invocations: 4 certificates, 3 things", resp.Data)
	}
	t.Logf("%d invocations", rt.invocations)
	r.wantOnlyForeignLeft(t)
}
