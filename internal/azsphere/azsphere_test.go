package azsphere

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sphere-jitr/sphere-jitr/emulator/testpki"
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
	future, _ := ca.IssueDevice(id, now.Add(time.Hour))
	badCN, _ := ca.Issue(testpki.LeafOptions{CommonName: "not-a-device"})

	name, err := CheckDeviceCertificate(good.Cert, ca.Cert, now)
	if err != nil || name != strings.ToLower(id) {
		t.Fatalf("good certificate: %q, %v", name, err)
	}
	for label, c := range map[string]*testpki.Pair{"signed by a CA with the same name": forged, "expired": expired, "not yet valid": future, "CN not a device ID": badCN} {
		_, err := CheckDeviceCertificate(c.Cert, ca.Cert, now)
		var refusal *RefusalError
		if !errors.As(err, &refusal) {
			t.Errorf("%s: got %v, want a RefusalError", label, err)
		}
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
