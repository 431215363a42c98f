package azsphere

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

func TestThingName(t *testing.T) {
	id := testpki.RandomDeviceID()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{id, strings.ToLower(id), true},
		{strings.ToLower(id), strings.ToLower(id), true},
		{id[:64], "", false},
		{id + "0", "", false},
		{id[:127] + "g", "", false},
		{"a" + strings.Repeat("B", 127), "", false}, // mixed case
		{strings.Repeat("0", 128), strings.Repeat("0", 128), true},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := ThingName(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ThingName(%.20q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseCertificateDERAndPEM(t *testing.T) {
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"DER": ca.Cert.Raw, "PEM": ca.CertPEM(), "PEM with CRLF": []byte(strings.ReplaceAll(string(ca.CertPEM()), "\n", "\r\n"))} {
		got, err := ParseCertificate(data)
		if err != nil || !got.Equal(ca.Cert) {
			t.Errorf("%s: got %v, %v", name, got, err)
		}
	}
	for name, data := range map[string][]byte{"empty": nil, "text": []byte("hello"), "key PEM": ca.KeyPEM()} {
		if _, err := ParseCertificate(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCheckDeviceCertificate(t *testing.T) {
	ca, _ := testpki.NewCA(testpki.CAOptions{})
	other, _ := testpki.NewCA(testpki.CAOptions{CommonName: ca.Cert.Subject.CommonName}) // same name, other key
	id := testpki.RandomDeviceID()
	now := time.Now()
	good, _ := ca.IssueDevice(id, now.Add(-time.Minute))
	forged, _ := other.IssueDevice(id, now.Add(-time.Minute))
	expired, _ := ca.IssueDevice(id, now.Add(-48*time.Hour))
	badCN, _ := ca.Issue(testpki.LeafOptions{CommonName: "not-a-device"})
	withinSkew, _ := ca.IssueDevice(id, now.Add(DefaultClockSkew-time.Second))
	beyondSkew, _ := ca.IssueDevice(id, now.Add(DefaultClockSkew+time.Second))

	for label, c := range map[string]*testpki.Pair{"valid": good, "NotBefore ahead of the clock within the skew": withinSkew} {
		name, err := CheckDeviceCertificate(c.Cert, ca.Cert, now, DefaultClockSkew)
		if err != nil || name != strings.ToLower(id) {
			t.Errorf("%s: %q, %v; want accepted as %.8s…", label, name, err, strings.ToLower(id))
		}
	}
	for label, c := range map[string]*testpki.Pair{"signed by a CA with the same name": forged, "expired": expired, "CN not a device ID": badCN} {
		_, err := CheckDeviceCertificate(c.Cert, ca.Cert, now, DefaultClockSkew)
		var refusal *RefusalError
		if !errors.As(err, &refusal) {
			t.Errorf("%s: got %v, want a RefusalError", label, err)
		}
	}
	_, err := CheckDeviceCertificate(beyondSkew.Cert, ca.Cert, now, DefaultClockSkew)
	var notYet *NotYetValidError
	if !errors.As(err, &notYet) || !notYet.NotBefore.Equal(beyondSkew.Cert.NotBefore) {
		t.Errorf("NotBefore beyond the skew: got %v, want a NotYetValidError (not a refusal: it becomes valid)", err)
	}
	if _, err := CheckDeviceCertificate(beyondSkew.Cert, ca.Cert, now, 0); err == nil {
		t.Error("zero skew accepted a certificate valid only from the future")
	}
}

// craft signs a certificate shaped by shape (applied to a valid device template) with ca, for key.
func craft(t testing.TB, ca *testpki.Pair, pub crypto.PublicKey, shape func(tmpl *x509.Certificate)) *x509.Certificate {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: testpki.RandomDeviceID()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(23 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if shape != nil {
		shape(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// rawSubject replaces the template's subject with rdns, so tests can build subjects pkix.Name cannot.
func rawSubject(t testing.TB, rdns pkix.RDNSequence) func(*x509.Certificate) {
	der, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	return func(tmpl *x509.Certificate) { tmpl.RawSubject = der }
}

func TestDeviceIdentityRules(t *testing.T) {
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ecKey := func(c elliptic.Curve) crypto.PublicKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256 := ecKey(elliptic.P256())
	x, y := testpki.RandomDeviceID(), testpki.RandomDeviceID()
	cn := func(v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oidCommonName, Value: v}
	}
	org := pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Contoso"}
	withCN := func(v string) func(*x509.Certificate) {
		return func(tmpl *x509.Certificate) { tmpl.Subject = pkix.Name{CommonName: v} }
	}

	for _, tc := range []struct {
		name      string
		pub       crypto.PublicKey
		shape     func(*x509.Certificate)
		wantThing string // "" = refused
		wantIn    string // in the refusal reason
	}{
		{"upper-case device ID (as Azure Sphere issues it)", p256, withCN(x), strings.ToLower(x), ""},
		{"lower-case device ID", p256, withCN(strings.ToLower(x)), strings.ToLower(x), ""},
		{"mixed-case device ID", p256, withCN("a" + strings.Repeat("B", 127)), "", "mixes upper- and lower-case"},
		{"127 hexadecimal characters", p256, withCN(x[:127]), "", "127 characters"},
		{"one CN among other attributes", p256, rawSubject(t, pkix.RDNSequence{{org}, {cn(x)}}), strings.ToLower(x), ""},
		{"two CNs in two RDNs (X first, Y last)", p256, rawSubject(t, pkix.RDNSequence{{cn(x)}, {cn(y)}}), "", "2 CN attributes"},
		{"two CNs in one multi-valued RDN", p256, rawSubject(t, pkix.RDNSequence{{cn(x), cn(y)}}), "", "2 CN attributes"},
		{"the same CN twice", p256, rawSubject(t, pkix.RDNSequence{{cn(x)}, {cn(x)}}), "", "2 CN attributes"},
		{"no CN", p256, rawSubject(t, pkix.RDNSequence{{org}}), "", "0 CN attributes"},
		{"CA:TRUE", p256, func(c *x509.Certificate) { c.Subject.CommonName = x; c.IsCA = true }, "", "is a CA"},
		{"basicConstraints absent", p256, func(c *x509.Certificate) { c.Subject.CommonName = x; c.BasicConstraintsValid = false }, strings.ToLower(x), ""},
		{"keyUsage without digitalSignature", p256, func(c *x509.Certificate) { c.Subject.CommonName = x; c.KeyUsage = x509.KeyUsageKeyAgreement }, "", "digitalSignature"},
		{"keyUsage absent", p256, func(c *x509.Certificate) { c.Subject.CommonName = x; c.KeyUsage = 0 }, strings.ToLower(x), ""},
		{"extendedKeyUsage serverAuth only", p256, func(c *x509.Certificate) {
			c.Subject.CommonName = x
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, "", "clientAuth"},
		{"extendedKeyUsage with an unknown purpose only", p256, func(c *x509.Certificate) {
			c.Subject.CommonName = x
			c.ExtKeyUsage = nil
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 2, 3, 4}}
		}, "", "clientAuth"},
		{"extendedKeyUsage any", p256, func(c *x509.Certificate) {
			c.Subject.CommonName = x
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
		}, strings.ToLower(x), ""},
		{"extendedKeyUsage absent", p256, func(c *x509.Certificate) { c.Subject.CommonName = x; c.ExtKeyUsage = nil }, strings.ToLower(x), ""},
		{"EC P-384 key", ecKey(elliptic.P384()), withCN(x), strings.ToLower(x), ""},
		{"EC P-521 key", ecKey(elliptic.P521()), withCN(x), strings.ToLower(x), ""},
		{"EC P-224 key", ecKey(elliptic.P224()), withCN(x), "", "P-224"},
		{"RSA 2048 key", rsaKey.Public(), withCN(x), "", "RSA"},
		{"Ed25519 key", edPub, withCN(x), "", "Ed25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := craft(t, ca, tc.pub, tc.shape)
			thing, err := DeviceIdentity(cert)
			if tc.wantThing != "" {
				if err != nil || thing != tc.wantThing {
					t.Fatalf("DeviceIdentity = %.12q, %v; want accepted as %.12q", thing, err, tc.wantThing)
				}
				if _, err := CheckDeviceCertificate(cert, ca.Cert, time.Now(), DefaultClockSkew); err != nil {
					t.Errorf("CheckDeviceCertificate refused what DeviceIdentity accepts: %v", err)
				}
				return
			}
			var refusal *RefusalError
			if !errors.As(err, &refusal) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("DeviceIdentity = %.12q, %v; want a RefusalError containing %q", thing, err, tc.wantIn)
			}
			if _, err := CheckDeviceCertificate(cert, ca.Cert, time.Now(), DefaultClockSkew); !errors.As(err, &refusal) {
				t.Errorf("CheckDeviceCertificate = %v, want the refusal", err)
			}
		})
	}
}

func TestCheckCA(t *testing.T) {
	now := time.Now()
	ca, _ := testpki.NewCA(testpki.CAOptions{})
	leaf, _ := testpki.NewCA(testpki.CAOptions{NotCA: true})
	old, _ := testpki.NewCA(testpki.CAOptions{NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(-time.Hour)})
	if err := CheckCA(ca.Cert, now); err != nil {
		t.Errorf("valid CA refused: %v", err)
	}
	if err := CheckCA(leaf.Cert, now); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf: %v", err)
	}
	if err := CheckCA(old.Cert, now); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
}
