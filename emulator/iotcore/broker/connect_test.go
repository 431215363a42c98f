package broker

import (
	"testing"
	"time"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// TestIssuingCARemembersOnlyWhatVerified: a chain that verified to a deployed CA is answered from memory while
// every certificate of it is valid, and verified again (and refused) once its leaf has expired; a certificate of
// another CA is refused every time, and a chain is remembered by its exact DER, never by its names.
func TestIssuingCARemembersOnlyWhatVerified(t *testing.T) {
	tenant, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := testpki.NewCA(testpki.CAOptions{CommonName: tenant.Cert.Subject.CommonName})
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{opts: Options{Deployment: &deploy.Deployment{CAs: []deploy.CA{{ID: "tenant", Cert: tenant.Cert}}}}}
	now := time.Now()
	id := testpki.RandomDeviceID()
	short, err := tenant.Issue(testpki.LeafOptions{CommonName: id, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if ca, ok := b.issuingCA(short.Cert, nil); !ok || ca.ID != "tenant" {
		t.Fatalf("tenant device certificate: CA %q, %v; want tenant", ca.ID, ok)
	}
	if i, ok := b.chains.get(chainKeyOf(short.Cert, nil), now); !ok || i != 0 {
		t.Fatalf("verified chain not remembered: %d, %v", i, ok)
	}
	if _, ok := b.chains.get(chainKeyOf(short.Cert, nil), now.Add(3*time.Second)); ok {
		t.Error("a remembered chain answers after its leaf expired")
	}
	twin, err := foreign.IssueDevice(id, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if ca, ok := b.issuingCA(twin.Cert, nil); ok {
			t.Fatalf("a certificate of another CA with the same names chains to %q", ca.ID)
		}
	}
	time.Sleep(time.Until(short.Cert.NotAfter.Add(time.Second)))
	if ca, ok := b.issuingCA(short.Cert, nil); ok {
		t.Errorf("an expired certificate chains to %q", ca.ID)
	}
}
