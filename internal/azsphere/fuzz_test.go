package azsphere

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// FuzzDeviceCertificate feeds arbitrary bytes, as DER or PEM, through the certificate checker. Whatever it
// accepts must meet every identity rule when read back from the parsed certificate; whatever it refuses must be
// a RefusalError (or a NotYetValidError); nothing panics. The seed corpus in testdata holds certificates only
// (no key): a valid device certificate and one breaking each rule.
func FuzzDeviceCertificate(f *testing.F) {
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		f.Fatal(err)
	}
	good, err := ca.IssueDevice(testpki.RandomDeviceID(), time.Now().Add(-time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Cert.Raw)
	f.Add(good.CertPEM())
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		cert, err := ParseCertificate(data)
		if err != nil {
			return
		}
		thing, idErr := DeviceIdentity(cert)
		_, checkErr := CheckDeviceCertificate(cert, ca.Cert, now, DefaultClockSkew)
		var refusal *RefusalError
		var notYet *NotYetValidError
		if checkErr != nil && !errors.As(checkErr, &refusal) && !errors.As(checkErr, &notYet) {
			t.Fatalf("CheckDeviceCertificate error %T %v, want a RefusalError or NotYetValidError", checkErr, checkErr)
		}
		if idErr != nil {
			if !errors.As(idErr, &refusal) {
				t.Fatalf("DeviceIdentity error %T, want a RefusalError", idErr)
			}
			if checkErr == nil {
				t.Fatal("CheckDeviceCertificate accepted a certificate DeviceIdentity refuses")
			}
			return
		}
		var cns []string
		for _, atv := range cert.Subject.Names {
			if atv.Type.Equal(oidCommonName) {
				s, _ := atv.Value.(string)
				cns = append(cns, s)
			}
		}
		if len(cns) != 1 || strings.ToLower(cns[0]) != thing || len(thing) != DeviceIDLength {
			t.Fatalf("accepted thing %.16q for CN attributes %q", thing, cns)
		}
		if cns[0] != strings.ToLower(cns[0]) && cns[0] != strings.ToUpper(cns[0]) {
			t.Fatalf("accepted a mixed-case CN %.16q", cns[0])
		}
		if cert.BasicConstraintsValid && cert.IsCA {
			t.Fatal("accepted a CA certificate")
		}
		key, ok := cert.PublicKey.(*ecdsa.PublicKey)
		if !ok || key.Curve.Params().BitSize < elliptic.P256().Params().BitSize {
			t.Fatalf("accepted a %s key", cert.PublicKeyAlgorithm)
		}
	})
}
