package jitr_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// unitCert is a device certificate for the unit tests, with its AWS-style id (SHA-256 of the DER).
type unitCert struct {
	id, pem string
}

func newUnitCert(t *testing.T, issue func() (*testpki.Pair, error)) unitCert {
	t.Helper()
	p, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(p.Cert.Raw)
	return unitCert{id: hex.EncodeToString(sum[:]), pem: string(p.CertPEM())}
}

const (
	unitCAID  = "cacacacacacacacacacacacacacacacacacacacacacacacacacacacacacacaca"
	unitCA2ID = "ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2ca2c"
)

// allMetrics are the counts every metric assertion compares, so an unexpected count fails the test.
var allMetrics = []string{contract.MetricProvisioned, contract.MetricRotated, contract.MetricRevoked, contract.MetricRefused, contract.MetricIgnored,
	contract.MetricDeferred, contract.MetricCAMismatch, contract.MetricOtherAccount, contract.MetricForeignAttached, contract.MetricDenied}

// issueTwoCNs signs a device-like certificate whose subject holds two CN attributes, first then last, which
// testpki cannot make.
func issueTwoCNs(ca *testpki.Pair, first, last string, notBefore time.Time) (*testpki.Pair, error) {
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	subject, err := asn1.Marshal(pkix.RDNSequence{{{Type: cn, Value: first}}, {{Type: cn, Value: last}}})
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(notBefore.UnixNano()), RawSubject: subject, NotBefore: notBefore,
		NotAfter: notBefore.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &testpki.Pair{Cert: cert, Key: key}, nil
}

func TestHandleBranches(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ca, err := testpki.NewCA(testpki.CAOptions{NotBefore: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := testpki.NewCA(testpki.CAOptions{NotBefore: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	dev := testpki.RandomDeviceID()
	thing := strings.ToLower(dev)
	device := func(issuer *testpki.Pair, notBefore time.Time) unitCert {
		return newUnitCert(t, func() (*testpki.Pair, error) { return issuer.IssueDevice(dev, notBefore) })
	}
	oldest, old, cur, newer := device(ca, now.Add(-4*time.Hour)), device(ca, now.Add(-3*time.Hour)), device(ca, now.Add(-2*time.Hour)), device(ca, now.Add(-time.Hour))
	tieA, tieB := device(ca, now.Add(-90*time.Minute)), device(ca, now.Add(-90*time.Minute))
	tieLo, tieHi := tieA, tieB
	if tieLo.id > tieHi.id {
		tieLo, tieHi = tieHi, tieLo
	}
	foreign := device(otherCA, now.Add(-2*time.Hour))
	foreignNewer := device(otherCA, now.Add(-time.Hour))
	ca2, err := testpki.NewCA(testpki.CAOptions{NotBefore: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ofCA2, oldOfCA2 := device(ca2, now.Add(-2*time.Hour)), device(ca2, now.Add(-3*time.Hour))
	otherDevice := newUnitCert(t, func() (*testpki.Pair, error) { return ca.IssueDevice(testpki.RandomDeviceID(), now.Add(-3*time.Hour)) })
	withinSkew := device(ca, now.Add(2*time.Minute))
	twoCNs := newUnitCert(t, func() (*testpki.Pair, error) {
		return issueTwoCNs(ca, testpki.RandomDeviceID(), dev, now.Add(-time.Hour))
	})
	expired := device(ca, now.Add(-48*time.Hour))
	notYet := device(ca, now.Add(time.Hour))
	badCN := newUnitCert(t, func() (*testpki.Pair, error) {
		return ca.Issue(testpki.LeafOptions{CommonName: "kitchen-thermostat", NotBefore: now.Add(-time.Hour)})
	})
	pending := func(r *fakeRegistry, c unitCert) {
		r.certs[c.id] = &fakeCert{pem: c.pem, status: types.CertificateStatusPendingActivation}
	}
	cfg := jitr.Config{CAs: map[string]*x509.Certificate{unitCAID: ca.Cert, unitCA2ID: ca2.Cert}, PolicyName: "device-policy",
		ProvisionedBy: "UnitStack", ClockSkew: azsphere.DefaultClockSkew}

	var (
		// Activation first (the device is usable after the UpdateCertificate), then the retirement: list, describe
		// the others, retire the older ones (the event's own certificate when a newer one is attached).
		rotation = []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate", "UpdateCertificate", "DetachThingPrincipal", "DeleteCertificate"}
		refusal  = []string{"DescribeCertificate", "UpdateCertificate"}
	)
	const (
		active   = types.CertificateStatusActive
		revoked  = types.CertificateStatusRevoked
		inactive = types.CertificateStatusInactive
		pend     = types.CertificateStatusPendingActivation
	)

	tests := []struct {
		name        string
		cert        unitCert // the event's certificate; default cur
		setup       func(r *fakeRegistry)
		event       func(e *jitr.Event)
		wantErr     error // nil: Handle must return nil; otherwise errors.Is/As-compatible sentinel
		wantCalls   []string
		wantStatus  map[string]types.CertificateStatus // "" = deleted
		wantThing   []string                           // certificate ids attached to the thing, nil = thing absent
		wantMetrics map[string]float64
	}{
		{
			name:        "first provisioning creates the thing, attaches and activates",
			setup:       func(r *fakeRegistry) { pending(r, cur) },
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name: "thing created by a concurrent event: already exists is tolerated",
			setup: func(r *fakeRegistry) {
				pending(r, cur)
				r.before = func(r *fakeRegistry, op string, _ int) {
					if op == "CreateThing" {
						r.things[thing] = map[string]string{contract.AttrProvisionedBy: "the other event"}
					}
				}
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name:        "rotation retires the older certificate after activating",
			setup:       func(r *fakeRegistry) { r.provisioned(old.id, old.pem, thing, active); pending(r, cur) },
			wantCalls:   rotation,
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: ""},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRotated: 1},
		},
		{
			name: "rotation over several pages retires every older certificate and skips other principals",
			setup: func(r *fakeRegistry) {
				r.provisioned(oldest.id, oldest.pem, thing, inactive) // left by an interrupted rotation
				r.thingCerts[thing] = append(r.thingCerts[thing], "us-east-1:cognito-identity-id")
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate", "ListThingPrincipals", "DescribeCertificate", "DetachThingPrincipal", "DeleteCertificate", "UpdateCertificate", "DetachThingPrincipal", "DeleteCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: "", oldest.id: ""},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRotated: 2},
		},
		{
			name: "attached certificate with an unreadable PEM: left alone, counted",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, "not a certificate", thing, active)
				pending(r, cur)
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: active},
			wantThing:   []string{old.id, cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricForeignAttached: 1},
		},
		{
			name: "newer certificate of another CA attached: neither deleted nor superseding",
			setup: func(r *fakeRegistry) {
				r.provisioned(foreignNewer.id, foreignNewer.pem, thing, active)
				pending(r, cur)
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, foreignNewer.id: active},
			wantThing:   []string{foreignNewer.id, cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricForeignAttached: 1},
		},
		{
			name: "older certificate registered under a CA not the stack's: left alone",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				r.certs[old.id].ca = strings.Repeat("d", 64)
				pending(r, cur)
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: active},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricForeignAttached: 1},
		},
		{
			name: "older certificate of the stack's CA for another device attached: left alone",
			setup: func(r *fakeRegistry) {
				r.provisioned(otherDevice.id, otherDevice.pem, thing, active)
				pending(r, cur)
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, otherDevice.id: active},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricForeignAttached: 1},
		},
		{
			name: "older certificate of the stack's second CA: retired",
			setup: func(r *fakeRegistry) {
				r.provisioned(oldOfCA2.id, oldOfCA2.pem, thing, active)
				r.certs[oldOfCA2.id].ca = unitCA2ID
				pending(r, cur)
			},
			wantCalls:   rotation,
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, oldOfCA2.id: ""},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRotated: 1},
		},
		{
			name:        "duplicate event of an active certificate changes nothing",
			setup:       func(r *fakeRegistry) { r.provisioned(cur.id, cur.pem, thing, active) },
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "ListThingPrincipals"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{},
		},
		{
			name: "retry after a failure past activation finishes the rotation",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				r.provisioned(cur.id, cur.pem, thing, active)
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "ListThingPrincipals", "DescribeCertificate", "UpdateCertificate", "DetachThingPrincipal", "DeleteCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: ""},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{contract.MetricRotated: 1},
		},
		{
			name:        "older than an attached ACTIVE certificate: activated, then retired by its own retirement",
			setup:       func(r *fakeRegistry) { r.provisioned(newer.id, newer.pem, thing, active); pending(r, cur) },
			wantCalls:   rotation,
			wantStatus:  map[string]types.CertificateStatus{cur.id: "", newer.id: active},
			wantThing:   []string{newer.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRevoked: 1},
		},
		{
			name: "older than an attached certificate still pending (its event in flight): activated, then retired",
			setup: func(r *fakeRegistry) {
				pending(r, newer)
				r.things[thing] = map[string]string{}
				r.thingCerts[thing] = []string{certARN(newer.id)}
				pending(r, cur)
			},
			wantCalls:   rotation,
			wantStatus:  map[string]types.CertificateStatus{cur.id: "", newer.id: pend},
			wantThing:   []string{newer.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRevoked: 1},
		},
		{
			name:        "a newer attached certificate that is revoked does not supersede",
			setup:       func(r *fakeRegistry) { r.provisioned(newer.id, newer.pem, thing, revoked); pending(r, cur) },
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, newer.id: revoked},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name:        "same NotBefore: the greater certificate id wins (event for the smaller)",
			cert:        tieLo,
			setup:       func(r *fakeRegistry) { r.provisioned(tieHi.id, tieHi.pem, thing, active); pending(r, tieLo) },
			wantCalls:   rotation,
			wantStatus:  map[string]types.CertificateStatus{tieLo.id: "", tieHi.id: active},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRevoked: 1},
		},
		{
			name:        "same NotBefore: the greater certificate id wins (event for the greater)",
			cert:        tieHi,
			setup:       func(r *fakeRegistry) { r.provisioned(tieLo.id, tieLo.pem, thing, active); pending(r, tieHi) },
			wantCalls:   rotation,
			wantStatus:  map[string]types.CertificateStatus{tieHi.id: active, tieLo.id: ""},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRotated: 1},
		},
		{
			name:        "signed by another CA (same subject): refused and revoked",
			cert:        foreign,
			setup:       func(r *fakeRegistry) { pending(r, foreign) },
			wantCalls:   refusal,
			wantStatus:  map[string]types.CertificateStatus{foreign.id: revoked},
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
		{
			name:        "CN not a device ID: refused and revoked",
			cert:        badCN,
			setup:       func(r *fakeRegistry) { pending(r, badCN) },
			wantCalls:   refusal,
			wantStatus:  map[string]types.CertificateStatus{badCN.id: revoked},
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
		{
			name:        "expired: refused and revoked",
			cert:        expired,
			setup:       func(r *fakeRegistry) { pending(r, expired) },
			wantCalls:   refusal,
			wantStatus:  map[string]types.CertificateStatus{expired.id: revoked},
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
		{
			name:        "NotBefore ahead of the clock beyond the skew: left pending, not revoked",
			cert:        notYet,
			setup:       func(r *fakeRegistry) { pending(r, notYet) },
			wantCalls:   []string{"DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{notYet.id: pend},
			wantMetrics: map[string]float64{contract.MetricDeferred: 1},
		},
		{
			name:        "NotBefore ahead of the clock within the skew: provisioned",
			cert:        withinSkew,
			setup:       func(r *fakeRegistry) { pending(r, withinSkew) },
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals"},
			wantStatus:  map[string]types.CertificateStatus{withinSkew.id: active},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name:        "two CN attributes: refused and revoked",
			cert:        twoCNs,
			setup:       func(r *fakeRegistry) { pending(r, twoCNs) },
			wantCalls:   refusal,
			wantStatus:  map[string]types.CertificateStatus{twoCNs.id: revoked},
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
		{
			name: "event names another CA of the stack than AWS reports: left pending, counted",
			setup: func(r *fakeRegistry) {
				pending(r, cur)
				r.certs[cur.id].ca = unitCA2ID
			},
			wantCalls:   []string{"DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantMetrics: map[string]float64{contract.MetricDeferred: 1, contract.MetricCAMismatch: 1},
		},
		{
			name: "event names a CA AWS does not report for the certificate: left pending, counted",
			setup: func(r *fakeRegistry) {
				pending(r, cur)
				r.certs[cur.id].ca = strings.Repeat("d", 64)
			},
			wantCalls:   []string{"DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantMetrics: map[string]float64{contract.MetricDeferred: 1, contract.MetricCAMismatch: 1},
		},
		{
			name:        "no CA reported, signed by the stack's other CA: left pending, counted",
			cert:        ofCA2,
			setup:       func(r *fakeRegistry) { pending(r, ofCA2) },
			wantCalls:   []string{"DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{ofCA2.id: pend},
			wantMetrics: map[string]float64{contract.MetricDeferred: 1, contract.MetricCAMismatch: 1},
		},
		{
			name:        "event for another AWS account: ignored, counted",
			setup:       func(r *fakeRegistry) { pending(r, cur) },
			event:       func(e *jitr.Event) { e.AWSAccountID = "210987654321" },
			wantCalls:   []string{"DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantMetrics: map[string]float64{contract.MetricIgnored: 1, contract.MetricOtherAccount: 1},
		},
		{
			name:        "inactive certificate of a device without a thing: nothing to retire, done",
			setup:       func(r *fakeRegistry) { r.certs[cur.id] = &fakeCert{pem: cur.pem, status: inactive} },
			wantCalls:   []string{"DescribeCertificate", "ListThingPrincipals"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: inactive},
			wantMetrics: map[string]float64{},
		},
		{
			name:        "active certificate failing a check: left to rotation, not revoked while attached",
			cert:        expired,
			setup:       func(r *fakeRegistry) { r.provisioned(expired.id, expired.pem, thing, active) },
			wantCalls:   []string{"DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{expired.id: active},
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
		{
			name:        "unreadable PEM: refused and revoked",
			setup:       func(r *fakeRegistry) { r.certs[cur.id] = &fakeCert{pem: "garbage", status: pend} },
			wantCalls:   refusal,
			wantStatus:  map[string]types.CertificateStatus{cur.id: revoked},
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
		{
			name:        "refusal whose revocation is throttled returns the error for a retry",
			cert:        expired,
			setup:       func(r *fakeRegistry) { pending(r, expired); r.failures["UpdateCertificate"] = errThrottled },
			wantErr:     errThrottled,
			wantCalls:   refusal,
			wantStatus:  map[string]types.CertificateStatus{expired.id: pend},
			wantMetrics: map[string]float64{},
		},
		{
			name:        "refused certificate deleted meanwhile: settled",
			cert:        expired,
			setup:       func(r *fakeRegistry) { pending(r, expired); r.failures["UpdateCertificate"] = errNotFound },
			wantCalls:   refusal,
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
		{
			name:        "malformed event: refused before any call",
			setup:       func(r *fakeRegistry) { pending(r, cur) },
			event:       func(e *jitr.Event) { e.AWSAccountID = "" },
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantMetrics: map[string]float64{contract.MetricRefused: 1},
		},
		{
			name:        "event for a CA the stack did not register: ignored before any call",
			setup:       func(r *fakeRegistry) { pending(r, cur) },
			event:       func(e *jitr.Event) { e.CACertificateID = strings.Repeat("0", 64) },
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantMetrics: map[string]float64{contract.MetricIgnored: 1},
		},
		{
			name:        "certificate gone: ignored",
			wantCalls:   []string{"DescribeCertificate"},
			wantMetrics: map[string]float64{contract.MetricIgnored: 1},
		},
		{
			name:        "certificate revoked earlier: ignored",
			setup:       func(r *fakeRegistry) { r.certs[cur.id] = &fakeCert{pem: cur.pem, status: revoked} },
			wantCalls:   []string{"DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: revoked},
			wantMetrics: map[string]float64{contract.MetricIgnored: 1},
		},
		{
			name: "certificate being retired (INACTIVE), a newer one active: never reactivated, its retirement finished",
			setup: func(r *fakeRegistry) {
				r.provisioned(newer.id, newer.pem, thing, active)
				r.provisioned(cur.id, cur.pem, thing, inactive)
			},
			wantCalls:   []string{"DescribeCertificate", "ListThingPrincipals", "DescribeCertificate", "DetachThingPrincipal", "DeleteCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: "", newer.id: active},
			wantThing:   []string{newer.id},
			wantMetrics: map[string]float64{contract.MetricRevoked: 1},
		},
		{
			name: "certificate in transfer: ignored",
			setup: func(r *fakeRegistry) {
				r.certs[cur.id] = &fakeCert{pem: cur.pem, status: types.CertificateStatusPendingTransfer}
			},
			wantCalls:   []string{"DescribeCertificate"},
			wantMetrics: map[string]float64{contract.MetricIgnored: 1},
		},
		{
			name:        "describe throttled: error for a retry",
			setup:       func(r *fakeRegistry) { pending(r, cur); r.failures["DescribeCertificate"] = errThrottled },
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate"},
			wantMetrics: map[string]float64{},
		},
		{
			name: "attach thing fails: error, nothing activated",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["AttachThingPrincipal"] = errInternal
			},
			wantErr:     errInternal,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend, old.id: active},
			wantMetrics: map[string]float64{},
		},
		{
			name:        "create thing fails: error",
			setup:       func(r *fakeRegistry) { pending(r, cur); r.failures["CreateThing"] = errThrottled },
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantMetrics: map[string]float64{},
		},
		{
			name:        "attach after creating the thing fails: error",
			setup:       func(r *fakeRegistry) { pending(r, cur); r.failures["AttachThingPrincipal#2"] = errThrottled },
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantThing:   []string{},
			wantMetrics: map[string]float64{},
		},
		{
			name:        "list principals fails: error after the activation, the retry retires",
			setup:       func(r *fakeRegistry) { pending(r, cur); r.failures["ListThingPrincipals"] = errThrottled },
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name: "describing an attached certificate fails: error after the activation, both active for the retry",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["DescribeCertificate#2"] = errThrottled
			},
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: active},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name: "attached certificate deleted between list and describe: skipped",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["DescribeCertificate#2"] = errNotFound
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name:        "attach policy fails: error, certificate still pending",
			setup:       func(r *fakeRegistry) { pending(r, cur); r.failures["AttachPolicy"] = errThrottled },
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{},
		},
		{
			name: "certificate deleted before the policy is attached: ignored",
			setup: func(r *fakeRegistry) {
				pending(r, cur)
				r.failures["AttachPolicy"] = errNotFound
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy"},
			wantMetrics: map[string]float64{contract.MetricIgnored: 1},
		},
		{
			name:        "activation fails: error, policy and thing in place for the retry",
			setup:       func(r *fakeRegistry) { pending(r, cur); r.failures["UpdateCertificate"] = errThrottled },
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: pend},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{},
		},
		{
			name:        "certificate deleted before activation (a newer one won): ignored",
			setup:       func(r *fakeRegistry) { pending(r, cur); r.failures["UpdateCertificate"] = errNotFound },
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "CreateThing", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate"},
			wantMetrics: map[string]float64{contract.MetricIgnored: 1},
		},
		{
			name: "older certificate deleted before its deactivation: rotation done",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["UpdateCertificate#2"] = errNotFound
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate", "UpdateCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRotated: 1},
		},
		{
			name: "deactivating the older certificate fails: error, both still valid for the retry",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["UpdateCertificate#2"] = errThrottled
			},
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate", "UpdateCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: active},
			wantThing:   []string{old.id, cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name: "detaching the older certificate fails: error, it stays attached and inactive",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["DetachThingPrincipal"] = errThrottled
			},
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate", "UpdateCertificate", "DetachThingPrincipal", "AttachThingPrincipal"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: inactive},
			wantThing:   []string{old.id, cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name: "older certificate already detached: deleted anyway",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["DetachThingPrincipal"] = errNotFound
				r.before = func(r *fakeRegistry, op string, _ int) {
					if op == "DeleteCertificate" {
						r.thingCerts[thing] = slices.DeleteFunc(r.thingCerts[thing], func(a string) bool { return a == certARN(old.id) })
					}
				}
			},
			wantCalls:   rotation,
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: ""},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRotated: 1},
		},
		{
			name: "older certificate reactivated by its own concurrent event: deactivated again and deleted",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.before = func(r *fakeRegistry, op string, n int) {
					if op == "DeleteCertificate" && n == 1 {
						r.certs[old.id].status = active
					}
				}
			},
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate", "UpdateCertificate", "DetachThingPrincipal", "DeleteCertificate", "UpdateCertificate", "DeleteCertificate"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: ""},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1, contract.MetricRotated: 1},
		},
		{
			name: "deleting the older certificate fails: error, re-attached so the retry finds it",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["DeleteCertificate"] = errThrottled
			},
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate", "UpdateCertificate", "DetachThingPrincipal", "DeleteCertificate", "AttachThingPrincipal"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: inactive},
			wantThing:   []string{cur.id, old.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
		{
			name: "deleting and re-attaching the older certificate fail: error, left inactive",
			setup: func(r *fakeRegistry) {
				r.provisioned(old.id, old.pem, thing, active)
				pending(r, cur)
				r.failures["DeleteCertificate"] = errThrottled
				r.failures["AttachThingPrincipal#2"] = errThrottled
			},
			wantErr:     errThrottled,
			wantCalls:   []string{"DescribeCertificate", "AttachThingPrincipal", "AttachPolicy", "UpdateCertificate", "ListThingPrincipals", "DescribeCertificate", "UpdateCertificate", "DetachThingPrincipal", "DeleteCertificate", "AttachThingPrincipal"},
			wantStatus:  map[string]types.CertificateStatus{cur.id: active, old.id: inactive},
			wantThing:   []string{cur.id},
			wantMetrics: map[string]float64{contract.MetricProvisioned: 1},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newFakeRegistry()
			if tc.setup != nil {
				tc.setup(r)
			}
			c := tc.cert
			if c.id == "" {
				c = cur
			}
			e := jitr.Event{CertificateID: c.id, CACertificateID: unitCAID, Timestamp: jitr.EpochMillis(now.UnixMilli()),
				CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: "123456789012"}
			if tc.event != nil {
				tc.event(&e)
			}
			var logs, metrics bytes.Buffer
			h := jitr.NewHandler(r.api(), cfg,
				jitr.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))), jitr.WithMetricsOutput(&metrics), jitr.WithClock(func() time.Time { return now }))

			err := h.Handle(context.Background(), e)

			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Handle = %v, want nil", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Handle = %v, want an error wrapping %v", err, tc.wantErr)
			}
			if !slices.Equal(r.calls, tc.wantCalls) {
				t.Errorf("calls:\n got %v\nwant %v", r.calls, tc.wantCalls)
			}
			for id, want := range tc.wantStatus {
				got := types.CertificateStatus("")
				if c, ok := r.certs[id]; ok {
					got = c.status
				}
				if got != want {
					t.Errorf("certificate %s status = %q, want %q", id[:8], got, want)
				}
			}
			if tc.wantThing != nil {
				got := []string{}
				for _, arn := range r.thingCerts[thing] {
					got = append(got, certIDOf(arn))
				}
				if !slices.Equal(got, tc.wantThing) {
					t.Errorf("thing principals = %v, want %v", got, tc.wantThing)
				}
			}
			assertFakeInvariant(t, r)
			if tc.wantMetrics != nil {
				assertEMF(t, metrics.String(), tc.wantMetrics)
			}
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if line == "" {
					continue
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("log line is not JSON: %s", line)
				}
				if m["certificateId"] != e.CertificateID || m["caCertificateId"] != e.CACertificateID || m["step"] == nil {
					t.Errorf("log line lacks the stable keys: %s", line)
				}
			}
			if err != nil && logs.Len() > 0 && strings.Contains(logs.String(), err.Error()) {
				t.Errorf("the returned error was also logged: %s", logs.String())
			}
		})
	}
}

// assertFakeInvariant fails if an ACTIVE certificate lacks its thing or policy in the fake registry.
func assertFakeInvariant(t *testing.T, r *fakeRegistry) {
	t.Helper()
	for id, c := range r.certs {
		if c.status == types.CertificateStatusActive && (!r.attachedToAThing(certARN(id)) || !r.policies[certARN(id)]) {
			t.Errorf("invariant broken: ACTIVE certificate %s lacks its thing or policy", id[:8])
		}
	}
}

// assertEMF checks that metrics holds one embedded-metric-format record with exactly the wanted counts.
func assertEMF(t *testing.T, metrics string, want map[string]float64) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(metrics), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d metric records, want 1:\n%s", len(lines), metrics)
	}
	var rec struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("metric record is not JSON: %v", err)
	}
	var doc map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &doc)
	if len(rec.AWS.CloudWatchMetrics) != 1 || rec.AWS.CloudWatchMetrics[0].Namespace != contract.MetricsNamespace || rec.AWS.Timestamp == 0 {
		t.Fatalf("bad _aws directive: %s", lines[0])
	}
	declared := map[string]string{}
	for _, m := range rec.AWS.CloudWatchMetrics[0].Metrics {
		declared[m.Name] = m.Unit
		if _, ok := doc[m.Name].(float64); !ok {
			t.Errorf("declared metric %s has no numeric value", m.Name)
		}
	}
	for _, dims := range rec.AWS.CloudWatchMetrics[0].Dimensions {
		for _, d := range dims {
			if _, ok := doc[d].(string); !ok {
				t.Errorf("dimension %s has no string value", d)
			}
		}
	}
	if declared["Duration.Handler"] != "Milliseconds" {
		t.Errorf("handler duration not declared in milliseconds: %v", declared)
	}
	for _, name := range allMetrics {
		got, _ := doc[name].(float64)
		if got != want[name] {
			t.Errorf("metric %s = %v, want %v", name, got, want[name])
		}
		if _, ok := doc[name]; ok && declared[name] != "Count" {
			t.Errorf("metric %s not declared as a Count", name)
		}
	}
}

func TestHandleKeepsAMarginBeforeTheDeadline(t *testing.T) {
	r := newFakeRegistry()
	h := jitr.NewHandler(r.api(), jitr.Config{CAs: map[string]*x509.Certificate{unitCAID: nil}, PolicyName: "p", ProvisionedBy: "s"},
		jitr.WithLogger(slog.New(slog.DiscardHandler)), jitr.WithMetricsOutput(&bytes.Buffer{}))
	deadline := time.Now().Add(time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	e := jitr.Event{CertificateID: strings.Repeat("a", 64), CACertificateID: unitCAID, Timestamp: 1, CertificateStatus: "PENDING_ACTIVATION", AWSAccountID: "123456789012"}
	if err := h.Handle(ctx, e); err != nil {
		t.Fatal(err)
	}
	if len(r.ctxs) == 0 {
		t.Fatal("no call made")
	}
	got, ok := r.ctxs[0].Deadline()
	if !ok || !got.Before(deadline) {
		t.Errorf("API calls run with deadline %v (set: %v), want earlier than the Lambda deadline %v", got, ok, deadline)
	}
}
