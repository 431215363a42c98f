package jitr_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// The call sequences the handler makes against moto, activation first (the device is usable after the
// UpdateCertificate ACTIVE), then the retirement Handle runs itself when no retirement queue is configured. They
// are the contract of the bench numbers and of the ordering argument (thing and policy before activation,
// deactivation before detachment).
var (
	firstBootCalls = []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal",
		"AttachPolicy", "UpdateCertificate", "ListThingPrincipals"}
	rotationCalls = []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate",
		"ListThingPrincipals", "DescribeCertificate", "UpdateCertificate", "DetachThingPrincipal", "DeleteCertificate"}
	// An older certificate's event after the newer one's: activated, then retired by its own retirement.
	lateOlderCalls = rotationCalls
	refusalCalls   = []string{"DescribeCertificate", "UpdateCertificate"}
)

// scenario runs fn against a freshly reset moto and then checks the invariant: no ACTIVE certificate lacks its
// thing and policy.
func scenario(t *testing.T, name string, fn func(t *testing.T, f *fixture)) {
	t.Run(name, func(t *testing.T) {
		f := newFixture(t, testRetryPolicy)
		fn(t, f)
		f.assertInvariant(t)
	})
}

func TestScenarios(t *testing.T) {
	now := time.Now()

	scenario(t, "first boot", func(t *testing.T, f *fixture) {
		dev := testpki.RandomDeviceID()
		cert := f.device(t, dev, now.Add(-time.Hour))
		f.handle(t, cert)

		if st := f.status(t, cert); st != types.CertificateStatusActive {
			t.Errorf("certificate status = %s, want ACTIVE", st)
		}
		s := f.state(t)
		attrs, ok := s.Things[thingOf(dev)]
		if !ok {
			t.Fatalf("thing %s… not created; things: %v", thingOf(dev)[:8], s.Things)
		}
		if attrs[contract.AttrProvisionedBy] != testStack {
			t.Errorf("provisionedBy = %q, want %q", attrs[contract.AttrProvisionedBy], testStack)
		}
		at, err := time.Parse(time.RFC3339, attrs[contract.AttrProvisionedAt])
		if err != nil || at.Location() != time.UTC || at.Before(now.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
			t.Errorf("provisionedAt = %q (%v), want the RFC3339 UTC time of provisioning", attrs[contract.AttrProvisionedAt], err)
		}
		if got := s.Principals[thingOf(dev)]; !slices.Equal(got, []string{cert}) {
			t.Errorf("thing principals = %v, want only the certificate", got)
		}
		if !s.Policies[cert] {
			t.Error("device policy not attached to the certificate")
		}
		calls, _ := f.rec.snapshot()
		if got := ops(calls); !slices.Equal(got, firstBootCalls) {
			t.Errorf("calls = %v, want %v", got, firstBootCalls)
		}
		for _, c := range calls {
			if in, ok := c.input.(*iot.AttachThingPrincipalInput); ok && in.ThingPrincipalType != types.ThingPrincipalTypeExclusiveThing {
				t.Errorf("AttachThingPrincipal type = %q, want EXCLUSIVE_THING", in.ThingPrincipalType)
			}
		}
		f.wantMetrics(t, map[string]float64{contract.MetricProvisioned: 1})
		if !jsonLogHas(t, f.logs.String(), map[string]string{"certificateId": cert, "thingName": thingOf(dev), "caCertificateId": f.caID, "step": "activate"}) {
			t.Errorf("no JSON log line with the stable keys for the activation; logs:\n%s", f.logs.String())
		}
	})

	scenario(t, "reboot: new certificate, same CN", func(t *testing.T, f *fixture) {
		dev := testpki.RandomDeviceID()
		old := f.device(t, dev, now.Add(-2*time.Hour))
		f.handle(t, old)
		f.rec.reset()
		current := f.device(t, dev, now.Add(-time.Hour))
		f.handle(t, current)

		if st := f.status(t, current); st != types.CertificateStatusActive {
			t.Errorf("new certificate status = %s, want ACTIVE", st)
		}
		if st := f.status(t, old); st != "" {
			t.Errorf("old certificate status = %s, want deleted", st)
		}
		if got := f.activeCertificates(t); !slices.Equal(got, []string{current}) {
			t.Errorf("ACTIVE certificates = %v, want exactly the new one", got)
		}
		if got := f.thingPrincipals(t, thingOf(dev)); !slices.Equal(got, []string{current}) {
			t.Errorf("thing principals = %v, want only the new certificate", got)
		}
		calls, _ := f.rec.snapshot()
		if got := ops(calls); !slices.Equal(got, rotationCalls) {
			t.Errorf("calls = %v, want %v", got, rotationCalls)
		}
		f.wantMetrics(t, map[string]float64{contract.MetricProvisioned: 2, contract.MetricRotated: 1})
	})

	scenario(t, "same event 5 times", func(t *testing.T, f *fixture) {
		dev := testpki.RandomDeviceID()
		old := f.device(t, dev, now.Add(-2*time.Hour))
		f.handle(t, old)
		current := f.device(t, dev, now.Add(-time.Hour))
		f.handle(t, current)
		once := f.state(t)
		for range 4 {
			f.handle(t, current)
		}
		f.handle(t, old) // a late duplicate of the retired certificate's event
		if got := f.state(t); !reflect.DeepEqual(got, once) {
			t.Errorf("state after 5 deliveries differs from after 1:\n got %+v\nwant %+v", got, once)
		}
		f.wantMetrics(t, map[string]float64{contract.MetricProvisioned: 2, contract.MetricRotated: 1, contract.MetricIgnored: 1})
	})

	scenario(t, "two certificates delivered newest first", func(t *testing.T, f *fixture) {
		dev := testpki.RandomDeviceID()
		older := f.device(t, dev, now.Add(-2*time.Hour))
		newer := f.device(t, dev, now.Add(-time.Hour))
		f.handle(t, newer)
		f.handle(t, older)

		if st := f.status(t, newer); st != types.CertificateStatusActive {
			t.Errorf("newer certificate status = %s, want ACTIVE", st)
		}
		// The older certificate is activated (its retirement has not run yet: the device was usable sooner), then
		// its own retirement lists the thing, sees the newer certificate and retires it.
		if st := f.status(t, older); st != "" {
			t.Errorf("older certificate status = %s, want deleted", st)
		}
		if got := f.thingPrincipals(t, thingOf(dev)); !slices.Equal(got, []string{newer}) {
			t.Errorf("thing principals = %v, want only the newer certificate", got)
		}
		if f.state(t).Policies[older] {
			t.Error("the retired older certificate still has the device policy")
		}
		f.wantMetrics(t, map[string]float64{contract.MetricProvisioned: 2, contract.MetricRevoked: 1})
	})

	scenario(t, "certificate from another CA, event naming ours", func(t *testing.T, f *fixture) {
		other, err := testpki.NewCA(testpki.CAOptions{CommonName: f.ca.Cert.Subject.CommonName}) // same name, other key
		if err != nil {
			t.Fatal(err)
		}
		dev := testpki.RandomDeviceID()
		pair, err := other.IssueDevice(dev, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		cert := f.register(t, pair)
		f.handle(t, cert)
		wantRefused(t, f, cert, thingOf(dev))
	})

	scenario(t, "CN is not a device ID", func(t *testing.T, f *fixture) {
		pair, err := f.ca.Issue(testpki.LeafOptions{CommonName: "thermostat-kitchen"})
		if err != nil {
			t.Fatal(err)
		}
		cert := f.register(t, pair)
		f.handle(t, cert)
		wantRefused(t, f, cert, "thermostat-kitchen")
	})

	scenario(t, "expired certificate", func(t *testing.T, f *fixture) {
		dev := testpki.RandomDeviceID()
		cert := f.device(t, dev, now.Add(-48*time.Hour)) // valid for the 24 h after that
		f.handle(t, cert)
		wantRefused(t, f, cert, thingOf(dev))
	})

	scenario(t, "event with missing fields", func(t *testing.T, f *fixture) {
		cert := f.device(t, testpki.RandomDeviceID(), now.Add(-time.Hour))
		full, err := json.Marshal(f.event(cert))
		if err != nil {
			t.Fatal(err)
		}
		for _, field := range []string{"certificateId", "caCertificateId", "timestamp", "certificateStatus", "awsAccountId"} {
			t.Run("without "+field, func(t *testing.T) {
				var m map[string]any
				if err := json.Unmarshal(full, &m); err != nil {
					t.Fatal(err)
				}
				delete(m, field)
				raw, _ := json.Marshal(m)
				var e jitr.Event
				if err := json.Unmarshal(raw, &e); err != nil {
					t.Fatal(err)
				}
				f.rec.reset()
				if err := f.h.Handle(context.Background(), e); err != nil {
					t.Fatalf("Handle: %v, want nil (refusals are not retryable)", err)
				}
				if calls, _ := f.rec.snapshot(); len(calls) != 0 {
					t.Errorf("AWS calls made for a malformed event: %v", ops(calls))
				}
			})
		}
		if st := f.status(t, cert); st != types.CertificateStatusPendingActivation {
			t.Errorf("certificate status = %s, want untouched PENDING_ACTIVATION", st)
		}
		f.wantMetrics(t, map[string]float64{contract.MetricRefused: 5})
	})

	scenario(t, "event names the stack's other CA: left pending, then provisioned by its own event", func(t *testing.T, f *fixture) {
		ca2, ca2ID := f.registerCA(t)
		f.cfg.CAs[ca2ID] = ca2.Cert // the stack registered both
		f.h = f.newHandler(f.rec, testRetryPolicy)
		dev := testpki.RandomDeviceID()
		cert := f.device(t, dev, now.Add(-time.Hour)) // registered under the first CA
		desc, err := f.admin.DescribeCertificate(context.Background(), &iot.DescribeCertificateInput{CertificateId: aws.String(cert)})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(desc.CertificateDescription.CaCertificateId); got != f.caID {
			t.Fatalf("DescribeCertificate caCertificateId = %q, want %s as AWS returns it (moto launcher patch)", got, f.caID[:8])
		}
		e := f.event(cert)
		e.CACertificateID = ca2ID
		if err := f.h.Handle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if st := f.status(t, cert); st != types.CertificateStatusPendingActivation {
			t.Errorf("certificate status = %s after an event naming another CA, want PENDING_ACTIVATION (never revoked on its word)", st)
		}
		if !jsonLogHas(t, f.logs.String(), map[string]string{"reportedCaCertificateId": f.caID, "caCertificateId": ca2ID, "outcome": "deferred"}) {
			t.Errorf("no log line naming both CAs; logs:\n%s", f.logs.String())
		}
		f.handle(t, cert) // its own event
		wantProvisioned(t, f, dev, "", cert)
		f.wantMetrics(t, map[string]float64{contract.MetricDeferred: 1, contract.MetricCAMismatch: 1, contract.MetricProvisioned: 1})
	})

	scenario(t, "NotBefore ahead of the clock beyond the skew: left pending, provisioned once valid", func(t *testing.T, f *fixture) {
		dev := testpki.RandomDeviceID()
		cert := f.device(t, dev, now.Add(f.cfg.ClockSkew+time.Minute))
		f.handle(t, cert)
		if st := f.status(t, cert); st != types.CertificateStatusPendingActivation {
			t.Errorf("certificate status = %s, want PENDING_ACTIVATION (it becomes valid)", st)
		}
		later := jitr.NewHandler(newIoTClient(f.rec, testRetryPolicy, f.principal.Credentials()), f.cfg, jitr.WithMetricsOutput(f.metrics),
			jitr.WithLogger(slog.New(slog.NewJSONHandler(f.logs, nil))), jitr.WithClock(func() time.Time { return now.Add(2 * f.cfg.ClockSkew) }))
		if err := later.Handle(context.Background(), f.event(cert)); err != nil {
			t.Fatal(err)
		}
		wantProvisioned(t, f, dev, "", cert)
		f.wantMetrics(t, map[string]float64{contract.MetricDeferred: 1, contract.MetricProvisioned: 1})
	})

	scenario(t, "two CN attributes (device X first, Y last): refused, no thing for either", func(t *testing.T, f *fixture) {
		x, y := testpki.RandomDeviceID(), testpki.RandomDeviceID()
		pair, err := issueTwoCNs(f.ca, x, y, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		cert := f.register(t, pair)
		f.handle(t, cert)
		wantRefused(t, f, cert, thingOf(y))
		if f.thingExists(t, thingOf(x)) {
			t.Errorf("thing %.8s… of the first CN created", thingOf(x))
		}
	})

	scenario(t, "rotation with a newer certificate of another CA attached to the thing", func(t *testing.T, f *fixture) {
		dev := testpki.RandomDeviceID()
		first := f.device(t, dev, now.Add(-3*time.Hour))
		f.handle(t, first)
		other, _ := f.registerCA(t) // registered in the account, not by the stack
		pair, err := other.IssueDevice(dev, now.Add(-30*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		alien := f.registerUnder(t, pair, other)
		ctx := context.Background()
		if _, err := f.admin.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(alien), NewStatus: types.CertificateStatusActive}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.admin.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(thingOf(dev)), Principal: aws.String(certARNOf(t, f, alien))}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.admin.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(testPolicy), Target: aws.String(certARNOf(t, f, alien))}); err != nil {
			t.Fatal(err)
		}
		current := f.device(t, dev, now.Add(-time.Hour))
		f.handle(t, current)
		if st := f.status(t, current); st != types.CertificateStatusActive {
			t.Errorf("the device's own certificate is %s, want ACTIVE: another issuer's newer certificate must not supersede it", st)
		}
		if st := f.status(t, alien); st != types.CertificateStatusActive {
			t.Errorf("the other CA's certificate is %q, want left ACTIVE (never deleted by rotation)", st)
		}
		if st := f.status(t, first); st != "" {
			t.Errorf("the device's older certificate is %s, want retired", st)
		}
		if got := f.metricTotals(t)[contract.MetricForeignAttached]; got < 1 {
			t.Errorf("ForeignAttached = %v, want the other CA's certificate counted", got)
		}
	})

	scenario(t, "event for another AWS account", func(t *testing.T, f *fixture) {
		cert := f.device(t, testpki.RandomDeviceID(), now.Add(-time.Hour))
		e := f.event(cert)
		e.AWSAccountID = "210987654321"
		if err := f.h.Handle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if st := f.status(t, cert); st != types.CertificateStatusPendingActivation {
			t.Errorf("certificate status = %s, want untouched PENDING_ACTIVATION", st)
		}
		calls, _ := f.rec.snapshot()
		if got := ops(calls); !slices.Equal(got, []string{"DescribeCertificate"}) {
			t.Errorf("calls = %v, want only the DescribeCertificate that tells the own account", got)
		}
		f.wantMetrics(t, map[string]float64{contract.MetricIgnored: 1, contract.MetricOtherAccount: 1})
	})

	scenario(t, "event for a CA this stack did not register", func(t *testing.T, f *fixture) {
		cert := f.device(t, testpki.RandomDeviceID(), now.Add(-time.Hour))
		e := f.event(cert)
		e.CACertificateID = cert // well formed, not ours
		if err := f.h.Handle(context.Background(), e); err != nil {
			t.Fatalf("Handle: %v", err)
		}
		if calls, _ := f.rec.snapshot(); len(calls) != 0 {
			t.Errorf("AWS calls made for another CA's event: %v", ops(calls))
		}
		if st := f.status(t, cert); st != types.CertificateStatusPendingActivation {
			t.Errorf("certificate status = %s, want untouched PENDING_ACTIVATION", st)
		}
		f.wantMetrics(t, map[string]float64{contract.MetricIgnored: 1})
	})

	for _, path := range faultPaths(now) {
		scenario(t, "path without faults: "+path.name, func(t *testing.T, f *fixture) {
			cert, converged := path.setup(t, f)
			f.handle(t, cert)
			calls, _ := f.rec.snapshot()
			if got := ops(calls); !slices.Equal(got, path.calls) {
				t.Fatalf("calls = %v, want %v (the fault scenarios inject at each of these)", got, path.calls)
			}
			converged(t)
		})
		for k := 1; k <= len(path.calls); k++ {
			step := fmt.Sprintf("%s step %d %s", path.name, k, path.calls[k-1])
			scenario(t, "throttled once at "+step, func(t *testing.T, f *fixture) {
				cert, converged := path.setup(t, f)
				f.rec.setThrottle(func(_ string, n, attempt int) bool { return n == k && attempt == 1 })
				f.handle(t, cert)
				calls, attempts := f.rec.snapshot()
				if attempts != len(calls)+1 {
					t.Errorf("%d attempts for %d calls, want exactly one retry", attempts, len(calls))
				}
				converged(t)
			})
			for _, fault := range []faultKind{faultError, faultLostResponse, faultThrottle, faultDeadline} {
				scenario(t, fmt.Sprintf("%s at %s, then the retry", fault, step), func(t *testing.T, f *fixture) {
					cert, converged := path.setup(t, f)
					ctx := newDeadlineContext()
					f.rec.setFault(fault, func(_ string, n, _ int) bool { return n == k }, ctx.expire)
					err := f.h.Handle(ctx, f.event(cert))
					if err == nil {
						t.Fatalf("Handle returned nil although call %d (%s) failed with %s", k, path.calls[k-1], fault)
					}
					var throttled *types.ThrottlingException
					if fault == faultThrottle && !errors.As(err, &throttled) {
						t.Errorf("Handle = %v, want the ThrottlingException returned so the async retry applies", err)
					}
					if fault == faultDeadline && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Handle = %v, want the deadline error", err)
					}
					if calls, _ := f.rec.snapshot(); len(calls) < k || calls[k-1].op != path.calls[k-1] {
						t.Fatalf("the fault was not injected at %s: calls %v", path.calls[k-1], ops(calls))
					}
					f.assertActiveInvariant(t) // also in the state the failure left
					f.rec.setFault(faultNone, nil, nil)
					f.handle(t, cert) // the asynchronous retry
					converged(t)
					f.assertInvariant(t)
				})
			}
		}
	}

	scenario(t, "throttling until the Lambda deadline", func(t *testing.T, f *fixture) {
		h := f.newHandler(f.rec, iotapi.DefaultRetryPolicy) // the production retryer
		dev := testpki.RandomDeviceID()
		cert := f.device(t, dev, now.Add(-time.Hour))
		f.rec.setThrottle(func(op string, _, _ int) bool { return op == "UpdateCertificate" })
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := h.Handle(ctx, f.event(cert))
		cancel()
		if err == nil {
			t.Fatal("Handle returned nil while every activation was throttled")
		}
		calls, attempts := f.rec.snapshot()
		if attempts <= len(calls) {
			t.Errorf("%d attempts for %d calls: the throttled call was not retried", attempts, len(calls))
		}
		f.assertActiveInvariant(t)
		f.rec.setThrottle(nil)
		if err := h.Handle(context.Background(), f.event(cert)); err != nil {
			t.Fatalf("retry: %v", err)
		}
		wantProvisioned(t, f, dev, "", cert)
	})

	for round := 1; round <= 5; round++ {
		scenario(t, fmt.Sprintf("two events of one device handled concurrently, fresh device, round %d", round), func(t *testing.T, f *fixture) {
			dev := testpki.RandomDeviceID()
			older := f.device(t, dev, now.Add(-2*time.Hour))
			newer := f.device(t, dev, now.Add(-time.Hour))
			handleConcurrently(t, f, older, newer)
			wantOnlyActive(t, f, dev, newer, older)
		})
		scenario(t, fmt.Sprintf("two events of one device handled concurrently, provisioned device, round %d", round), func(t *testing.T, f *fixture) {
			dev := testpki.RandomDeviceID()
			first := f.device(t, dev, now.Add(-3*time.Hour))
			f.handle(t, first)
			older := f.device(t, dev, now.Add(-2*time.Hour))
			newer := f.device(t, dev, now.Add(-time.Hour))
			handleConcurrently(t, f, newer, older)
			wantOnlyActive(t, f, dev, newer, older, first)
		})
	}
}

// certARNOf returns a certificate's ARN as the registry reports it.
func certARNOf(t *testing.T, f *fixture, id string) string {
	t.Helper()
	out, err := f.admin.DescribeCertificate(context.Background(), &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.CertificateDescription.CertificateArn
}

// faultPath is one path through the handler, for injecting a fault at each of its calls: setup prepares the
// registry and returns the event's certificate and the check of the state the path converges to.
type faultPath struct {
	name  string
	calls []string
	setup func(t *testing.T, f *fixture) (cert string, converged func(t *testing.T))
}

func faultPaths(now time.Time) []faultPath {
	return []faultPath{
		{"first boot", firstBootCalls, func(t *testing.T, f *fixture) (string, func(*testing.T)) {
			dev, old, current := throttleSetup(t, f, false, now)
			return current, func(t *testing.T) { wantProvisioned(t, f, dev, old, current) }
		}},
		{"rotation", rotationCalls, func(t *testing.T, f *fixture) (string, func(*testing.T)) {
			dev, old, current := throttleSetup(t, f, true, now)
			return current, func(t *testing.T) { wantProvisioned(t, f, dev, old, current) }
		}},
		{"late older certificate", lateOlderCalls, func(t *testing.T, f *fixture) (string, func(*testing.T)) {
			dev := testpki.RandomDeviceID()
			older := f.device(t, dev, now.Add(-2*time.Hour))
			newer := f.device(t, dev, now.Add(-time.Hour))
			f.handle(t, newer)
			f.rec.reset()
			return older, func(t *testing.T) { wantSuperseded(t, f, dev, older, newer) }
		}},
		{"refusal", refusalCalls, func(t *testing.T, f *fixture) (string, func(*testing.T)) {
			dev := testpki.RandomDeviceID()
			expired := f.device(t, dev, now.Add(-48*time.Hour))
			return expired, func(t *testing.T) {
				if st := f.status(t, expired); st != types.CertificateStatusRevoked {
					t.Errorf("certificate status = %s, want REVOKED", st)
				}
				if f.thingExists(t, thingOf(dev)) {
					t.Error("thing created for a refused certificate")
				}
			}
		}},
	}
}

// wantSuperseded checks the state a late older certificate converges to: retired (deleted, so detached from the
// thing and the policy), the newer certificate ACTIVE and alone on the thing.
func wantSuperseded(t *testing.T, f *fixture, dev, older, newer string) {
	t.Helper()
	if st := f.status(t, older); st != "" {
		t.Errorf("older certificate status = %s, want deleted", st)
	}
	if st := f.status(t, newer); st != types.CertificateStatusActive {
		t.Errorf("newer certificate status = %s, want ACTIVE", st)
	}
	if got := f.thingPrincipals(t, thingOf(dev)); !slices.Equal(got, []string{newer}) {
		t.Errorf("thing principals = %v, want only the newer %s", got, newer[:8])
	}
	if f.state(t).Policies[older] {
		t.Error("the retired older certificate still has the device policy")
	}
}

// throttleSetup registers the certificate the throttled event is about; for the rotation path it first
// provisions an older certificate of the same device.
func throttleSetup(t *testing.T, f *fixture, rotation bool, now time.Time) (dev, old, current string) {
	t.Helper()
	dev = testpki.RandomDeviceID()
	if rotation {
		old = f.device(t, dev, now.Add(-2*time.Hour))
		f.handle(t, old)
		f.rec.reset()
	}
	return dev, old, f.device(t, dev, now.Add(-time.Hour))
}

// wantProvisioned checks the converged state: current ACTIVE and alone on its thing with the policy, old gone.
func wantProvisioned(t *testing.T, f *fixture, dev, old, current string) {
	t.Helper()
	if st := f.status(t, current); st != types.CertificateStatusActive {
		t.Errorf("certificate status = %s, want ACTIVE", st)
	}
	if got := f.thingPrincipals(t, thingOf(dev)); !slices.Equal(got, []string{current}) {
		t.Errorf("thing principals = %v, want only %s", got, current[:8])
	}
	if !f.state(t).Policies[current] {
		t.Error("device policy not attached")
	}
	if old != "" {
		if st := f.status(t, old); st != "" {
			t.Errorf("old certificate status = %s, want deleted", st)
		}
	}
}

// wantRefused checks a refusal: the certificate REVOKED, no thing created, the refusal counted.
func wantRefused(t *testing.T, f *fixture, cert, thing string) {
	t.Helper()
	if st := f.status(t, cert); st != types.CertificateStatusRevoked {
		t.Errorf("certificate status = %s, want REVOKED", st)
	}
	if f.thingExists(t, thing) {
		t.Errorf("thing %s was created for a refused certificate", thing)
	}
	calls, _ := f.rec.snapshot()
	if got, want := ops(calls), []string{"DescribeCertificate", "UpdateCertificate"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	f.wantMetrics(t, map[string]float64{contract.MetricRefused: 1})
}

// handleConcurrently runs one event per certificate at the same time, each through its own client and handler
// (two Lambda instances). An event that fails is retried once, as the asynchronous invocation would.
func handleConcurrently(t *testing.T, f *fixture, certs ...string) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(certs))
	for i, cert := range certs {
		h := f.newHandler(&recorder{}, testRetryPolicy)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := h.Handle(context.Background(), f.event(cert)); err != nil {
				errs[i] = h.Handle(context.Background(), f.event(cert))
				t.Logf("event %s failed once (%v); retried: %v", cert[:8], err, errs[i])
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("event %s: %v", certs[i][:8], err)
		}
	}
	t.Logf("outcome of the race: %v", f.metricTotals(t)) // which interleaving happened
}

// wantOnlyActive checks that winner is the one ACTIVE certificate of the device and none of losers is ACTIVE.
func wantOnlyActive(t *testing.T, f *fixture, dev, winner string, losers ...string) {
	t.Helper()
	if got := f.activeCertificates(t); !slices.Equal(got, []string{winner}) {
		t.Errorf("ACTIVE certificates = %v, want only the newest %s", got, winner[:8])
	}
	for _, l := range losers {
		if st := f.status(t, l); st == types.CertificateStatusActive || st == types.CertificateStatusPendingActivation {
			t.Errorf("older certificate %s is %s", l[:8], st)
		}
	}
	if got := f.thingPrincipals(t, thingOf(dev)); !slices.Equal(got, []string{winner}) {
		t.Errorf("thing principals = %v, want only %s", got, winner[:8])
	}
}

// jsonLogHas reports whether some JSON log line carries all of want.
func jsonLogHas(t *testing.T, logs string, want map[string]string) bool {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(logs))
	for dec.More() {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatalf("log output is not JSON lines: %v", err)
		}
		ok := true
		for k, v := range want {
			if line[k] != v {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}
