package jitr_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// fakeDenyList is a func-type fake of jitr.DenyListAPI.
type fakeDenyList func(ctx context.Context, in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)

var _ jitr.DenyListAPI = fakeDenyList(nil)

func (f fakeDenyList) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return f(ctx, in)
}

// denyListOf answers GetItem from a set of denied thing names and records every request.
func denyListOf(denied map[string]bool, reqs *[]*dynamodb.GetItemInput, err error) fakeDenyList {
	return func(_ context.Context, in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		*reqs = append(*reqs, in)
		if err != nil {
			return nil, err
		}
		key, _ := in.Key[contract.DenyListKey].(*ddbtypes.AttributeValueMemberS)
		if key != nil && denied[key.Value] {
			return &dynamodb.GetItemOutput{Item: map[string]ddbtypes.AttributeValue{contract.DenyListKey: key}}, nil
		}
		return &dynamodb.GetItemOutput{}, nil
	}
}

func TestDenyList(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ca, err := testpki.NewCA(testpki.CAOptions{NotBefore: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	dev := testpki.RandomDeviceID()
	thing := strings.ToLower(dev)
	issue := func(nb time.Time) unitCert {
		return newUnitCert(t, func() (*testpki.Pair, error) { return ca.IssueDevice(dev, nb) })
	}
	old, cur := issue(now.Add(-2*time.Hour)), issue(now.Add(-time.Hour))
	badCN := newUnitCert(t, func() (*testpki.Pair, error) {
		return ca.Issue(testpki.LeafOptions{CommonName: "kitchen-thermostat", NotBefore: now.Add(-time.Hour)})
	})
	cfg := jitr.Config{CAs: map[string]*x509.Certificate{unitCAID: ca.Cert}, PolicyName: "device-policy",
		ProvisionedBy: "UnitStack", ClockSkew: azsphere.DefaultClockSkew, DenyListTable: "deny-list"}
	errUnavailable := errors.New("fake: DynamoDB unavailable")
	denyCalls := []string{"DescribeCertificate", "DetachThingPrincipal", "DetachPolicy", "UpdateCertificate"}

	tests := []struct {
		name        string
		cert        unitCert
		denied      bool
		getErr      error
		setup       func(r *fakeRegistry)
		wantErr     error
		wantGets    int
		wantCalls   []string
		wantStatus  types.CertificateStatus
		wantThing   bool // the thing exists afterwards
		wantMetrics map[string]float64
	}{
		{
			name: "device not on the list: provisioned as usual, after one consistent read",
			cert: cur, setup: func(r *fakeRegistry) {
				r.certs[cur.id] = &fakeCert{pem: cur.pem, status: types.CertificateStatusPendingActivation}
			},
			wantGets:    1,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals"},
			wantStatus:  types.CertificateStatusActive,
			wantThing:   true,
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name: "device on the list: its pending certificate is revoked, no thing is made",
			cert: cur, denied: true,
			setup: func(r *fakeRegistry) {
				r.certs[cur.id] = &fakeCert{pem: cur.pem, status: types.CertificateStatusPendingActivation}
			},
			wantGets:    1,
			wantCalls:   denyCalls,
			wantStatus:  types.CertificateStatusRevoked,
			wantMetrics: map[string]float64{contract.MetricDenied: 1},
		},
		{
			name: "device on the list with a certificate activated before the entry was written: detached and revoked",
			cert: cur, denied: true,
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, types.CertificateStatusActive)
				r.provisioned(cur.id, cur.pem, thing, types.CertificateStatusActive)
			},
			wantGets:    1,
			wantCalls:   denyCalls,
			wantStatus:  types.CertificateStatusRevoked,
			wantThing:   true,
			wantMetrics: map[string]float64{contract.MetricDenied: 1},
		},
		{
			name: "deny-list unreadable: error for a retry, nothing attached or activated",
			cert: cur, getErr: errUnavailable,
			setup: func(r *fakeRegistry) {
				r.certs[cur.id] = &fakeCert{pem: cur.pem, status: types.CertificateStatusPendingActivation}
			},
			wantErr:     errUnavailable,
			wantGets:    1,
			wantCalls:   []string{"DescribeCertificate"},
			wantStatus:  types.CertificateStatusPendingActivation,
			wantMetrics: map[string]float64{},
		},
		{
			name: "certificate refused by the identity check: the deny-list is not read",
			cert: badCN, denied: true,
			setup: func(r *fakeRegistry) {
				r.certs[badCN.id] = &fakeCert{pem: badCN.pem, status: types.CertificateStatusPendingActivation}
			},
			wantGets:    0,
			wantCalls:   []string{"DescribeCertificate", "UpdateCertificate"},
			wantStatus:  types.CertificateStatusRevoked,
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newFakeRegistry()
			tc.setup(r)
			var gets []*dynamodb.GetItemInput
			var metrics bytes.Buffer
			h := jitr.NewHandler(r.api(), cfg, jitr.WithDenyList(denyListOf(map[string]bool{thing: tc.denied}, &gets, tc.getErr)),
				jitr.WithLogger(slog.New(slog.DiscardHandler)), jitr.WithMetricsOutput(&metrics), jitr.WithClock(func() time.Time { return now }))
			err := h.Handle(context.Background(), jitr.Event{CertificateID: tc.cert.id, CACertificateID: unitCAID,
				Timestamp: jitr.EpochMillis(now.UnixMilli()), CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: "123456789012"})
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Handle = %v, want %v", err, tc.wantErr)
			}
			if len(gets) != tc.wantGets {
				t.Fatalf("%d GetItem calls, want %d", len(gets), tc.wantGets)
			}
			for _, in := range gets {
				key, _ := in.Key[contract.DenyListKey].(*ddbtypes.AttributeValueMemberS)
				if aws.ToString(in.TableName) != "deny-list" || key == nil || key.Value != thing || len(in.Key) != 1 || !aws.ToBool(in.ConsistentRead) {
					t.Errorf("GetItem %+v: want table deny-list, key %s = thing name only, consistent read", in, contract.DenyListKey)
				}
			}
			if !slices.Equal(r.calls, tc.wantCalls) {
				t.Errorf("calls:\n got %v\nwant %v", r.calls, tc.wantCalls)
			}
			if got := r.certs[tc.cert.id].status; got != tc.wantStatus {
				t.Errorf("certificate status = %s, want %s", got, tc.wantStatus)
			}
			if _, ok := r.things[thing]; ok != tc.wantThing {
				t.Errorf("thing exists = %v, want %v", ok, tc.wantThing)
			}
			if tc.denied && tc.wantGets == 1 {
				if r.attachedToAThing(certARN(tc.cert.id)) || r.policies[certARN(tc.cert.id)] {
					t.Errorf("the denied certificate is still attached to its thing or policy")
				}
			}
			assertFakeInvariant(t, r)
			assertEMF(t, metrics.String(), tc.wantMetrics)
		})
	}
}

// TestDenyListAgainstMoto runs revoke and allow as the operator does them, against moto's DynamoDB and IoT through
// the real SDK clients: the denied device's next certificate is revoked with one deny-list read and no thing is
// attached; once allowed, the certificate after it is provisioned.
func TestDenyListAgainstMoto(t *testing.T) {
	f := newFixture(t, testRetryPolicy)
	dev := testpki.RandomDeviceID()
	f.denyDevice(t, dev)

	refused := f.device(t, dev, time.Now().Add(-2*time.Hour))
	f.handle(t, refused)
	if got := f.status(t, refused); got != types.CertificateStatusRevoked {
		t.Fatalf("certificate of the denied device is %q, want REVOKED", got)
	}
	reads, _ := f.deny.snapshot()
	if len(reads) != 1 {
		t.Errorf("%d deny-list reads for one event, want 1", len(reads))
	}
	if !strings.Contains(f.metrics.String(), `"`+contract.MetricDenied+`":1`) {
		t.Errorf("no %s count in the metrics: %s", contract.MetricDenied, f.metrics.String())
	}

	f.allowDevice(t, dev)
	allowed := f.device(t, dev, time.Now().Add(-time.Hour))
	f.handle(t, allowed)
	if got := f.status(t, allowed); got != types.CertificateStatusActive {
		t.Fatalf("certificate after allow is %q, want ACTIVE", got)
	}
	f.assertInvariant(t)
}
