package teardown

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Option tunes a Teardown.
type Option func(*Teardown)

// WithIndex counts the stack's things in the fleet index before the teardown starts (else by ListThings).
func WithIndex(api IndexAPI) Option { return func(t *Teardown) { t.index = api } }

// WithRates sets the rates (requests per second by operation) the IoT client is paced to, for the estimate; the
// default is DefaultRates.
func WithRates(rates map[string]float64) Option { return func(t *Teardown) { t.rates = rates } }

// WithBudget sets the longest the teardown takes on, from CloudFormation's request to its response (default
// DefaultBudget).
func WithBudget(d time.Duration) Option { return func(t *Teardown) { t.budget = d } }

// WithContinuer lets the teardown go on in a new invocation of its function when one invocation's 15 minutes end
// before the work does (Serve).
func WithContinuer(c Continuer) Option { return func(t *Teardown) { t.continuer = c } }

// WithResponder sets how Serve answers CloudFormation (default: PUT to the request's presigned ResponseURL).
func WithResponder(r func(context.Context, *cfn.Response) error) Option {
	return func(t *Teardown) { t.respond = r }
}

// Invocation is what the function receives: CloudFormation's request, and, in an invocation that continues the
// work of an earlier one, how far the work got.
type Invocation struct {
	cfn.Event
	Continuation *Continuation `json:"SphereTeardownContinuation,omitempty"`
}

// Continuation is the state one invocation hands the next.
type Continuation struct {
	StartedAt    time.Time `json:"startedAt"` // when the first invocation began: CloudFormation's clock runs from then
	Invocation   int       `json:"invocation"`
	Certificates int       `json:"certificatesRemoved"`
	Things       int       `json:"thingsRemoved"`
	Estimate     Estimate  `json:"estimate"`
}

// Continuer starts the next invocation of the function with inv, without waiting for it.
type Continuer interface {
	Continue(ctx context.Context, inv Invocation) error
}

// LambdaAPI is the Lambda call a continuation makes.
type LambdaAPI interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

var _ LambdaAPI = (*lambda.Client)(nil)

// LambdaContinuer invokes the function itself asynchronously (InvocationType Event).
type LambdaContinuer struct {
	API      LambdaAPI
	Function string // the function's own name: AWS_LAMBDA_FUNCTION_NAME
}

// Continue implements Continuer.
func (l LambdaContinuer) Continue(ctx context.Context, inv Invocation) error {
	payload, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("encode the continuation: %w", err)
	}
	if _, err := l.API.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(l.Function), InvocationType: lambdatypes.InvocationTypeEvent, Payload: payload}); err != nil {
		return fmt.Errorf("invoke %s to continue: %w", l.Function, err)
	}
	return nil
}

// ErrContinued is returned by HandleEvent when the work goes on in a new invocation, which answers CloudFormation.
var ErrContinued = errors.New("the teardown continues in a new invocation")

type invocationKey struct{}

// Serve is the function's entry point (lambda.Start(t.Serve)): it runs HandleEvent and answers CloudFormation,
// unless the work continues in a new invocation, which answers when it ends.
func (t *Teardown) Serve(ctx context.Context, inv Invocation) error {
	r := cfn.NewResponse(&inv.Event)
	fallback := inv.PhysicalResourceID
	if inv.RequestType == cfn.RequestCreate {
		fallback = inv.RequestID
	}
	var err error
	defer func() {
		// A panic must not leave CloudFormation waiting its hour: answer FAILED, as cfn.LambdaWrap does.
		if p := recover(); p != nil {
			r.Status, r.Reason, r.PhysicalResourceID = cfn.StatusFailed, fmt.Sprintf("the teardown function panicked: %v (see its log)", p), fallback
			_ = t.respond(ctx, r)
			panic(p)
		}
	}()
	r.PhysicalResourceID, r.Data, err = t.HandleEvent(context.WithValue(ctx, invocationKey{}, &inv), inv.Event)
	if errors.Is(err, ErrContinued) {
		return nil
	}
	if r.PhysicalResourceID == "" {
		r.PhysicalResourceID = fallback
	}
	r.Status = cfn.StatusSuccess
	if err != nil {
		r.Status, r.Reason = cfn.StatusFailed, err.Error()
	}
	if err := t.respond(ctx, r); err != nil {
		return fmt.Errorf("answer CloudFormation: %w", err)
	}
	return nil
}

func sendResponse(_ context.Context, r *cfn.Response) error { return r.Send() }

// remove runs the teardown of scope within the budget: on the first invocation it estimates the work and refuses
// (deleting nothing) when it cannot finish within the budget; then it removes what it can before this invocation's
// deadline and, when work is left and the budget allows, continues in a new invocation.
func (t *Teardown) remove(ctx context.Context, e cfn.Event, physicalID string, scope Scope) (string, map[string]any, error) {
	inv, _ := ctx.Value(invocationKey{}).(*Invocation)
	cont := &Continuation{StartedAt: t.now()}
	if inv != nil && inv.Continuation != nil {
		cont = inv.Continuation
	}
	if cont.Invocation == 0 {
		est, err := t.Estimate(ctx, scope)
		if err != nil {
			return physicalID, nil, fmt.Errorf("estimate the registry teardown (nothing deleted): %w", err)
		}
		t.log.Info("registry teardown estimate", "step", "estimate", "things", est.Things, "thingsCountedBy", est.ThingsCountedBy,
			"certificates", est.Certificates, "activeCertificates", est.ActiveCertificates, "calls", est.Calls.Total(),
			"seconds", est.Duration.Seconds(), "bottleneck", est.Bottleneck, "budgetSeconds", t.budget.Seconds())
		if est.Duration > t.budget {
			err := &TooLargeError{Estimate: est, Budget: t.budget, Stack: scope.ProvisionedBy}
			t.log.Error("registry teardown refused", "step", "estimate", "error", err.Error())
			return physicalID, nil, err
		}
		cont.Estimate = est
	}
	cont.Invocation++
	runCtx := ctx
	end := cont.StartedAt.Add(t.budget)
	if deadline, ok := ctx.Deadline(); ok && deadline.Add(-DeadlineMargin).Before(end) {
		end = deadline.Add(-DeadlineMargin)
	}
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	start := t.now()
	res, err := t.Run(runCtx, scope)
	cont.Certificates += res.Certificates
	cont.Things += res.Things
	elapsed := t.now().Sub(cont.StartedAt)
	left := max(cont.Estimate.Certificates+cont.Estimate.Things-cont.Certificates-cont.Things, 0)
	eta := time.Duration(0)
	if done := cont.Certificates + cont.Things; done > 0 {
		eta = time.Duration(float64(elapsed) / float64(done) * float64(left))
	}
	t.log.Info("registry teardown", "step", string(e.RequestType), "invocation", cont.Invocation,
		"certificates", cont.Certificates, "certificatesEstimated", cont.Estimate.Certificates,
		"things", cont.Things, "thingsEstimated", cont.Estimate.Things,
		"seconds", t.now().Sub(start).Seconds(), "elapsedSeconds", elapsed.Seconds(), "etaSeconds", eta.Seconds(), "complete", err == nil)
	data := map[string]any{"Certificates": cont.Certificates, "Things": cont.Things}
	if err == nil {
		return physicalID, data, nil
	}
	outOfTime := runCtx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || !t.now().Before(end.Add(-5*time.Second))
	if inv != nil && t.continuer != nil && outOfTime && res.Certificates+res.Things > 0 && t.now().Before(cont.StartedAt.Add(t.budget)) {
		next := *inv
		next.Continuation = cont
		if cerr := t.continuer.Continue(ctx, next); cerr != nil {
			return physicalID, nil, fmt.Errorf("%w; and the teardown could not continue: %v", err, cerr)
		}
		return physicalID, nil, ErrContinued
	}
	return physicalID, nil, err
}
