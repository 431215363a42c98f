package jitr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// testLedger is the ledger table of the queued-path tests.
const testLedger = "sphere-jitr-test-ledger"

// ledgerClient is a DynamoDB client of the fixture's moto with the fixture's own credentials: the role's ledger
// grant is checked by the stacks tests, not here (the fixture pins every table of the template to the deny-list).
func ledgerClient() *dynamodb.Client { return newDenyListClient(nil, adminCredentials) }

// withLedger creates the ledger table as the stack declares it and returns a handler of the fixture that claims
// and settles certificates in it. Without queues, Handle retires older certificates itself.
func (f *fixture) withLedger(t testing.TB) *jitr.Handler {
	t.Helper()
	if _, err := ledgerClient().CreateTable(context.Background(), ledgerTableInput(testLedger)); err != nil {
		t.Fatalf("create ledger table: %v", err)
	}
	cfg := f.cfg
	cfg.LedgerTable = testLedger
	return jitr.NewHandler(newIoTClient(f.rec, testRetryPolicy, f.principal.Credentials()), cfg,
		jitr.WithDenyList(newDenyListClient(f.deny, f.principal.Credentials())), jitr.WithLedger(ledgerClient()),
		jitr.WithLogger(slog.New(slog.NewJSONHandler(f.logs, nil))), jitr.WithMetricsOutput(f.metrics))
}

// ledgerTableInput is the ledger as the stack declares it (infra/jitr.go): keyed by certificate id.
func ledgerTableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(contract.LedgerKey), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(contract.LedgerKey), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}
}

// ledgerItem returns the certificate's ledger item, nil when there is none.
func ledgerItem(t testing.TB, id string) map[string]ddbtypes.AttributeValue {
	t.Helper()
	out, err := ledgerClient().GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(testLedger),
		Key: map[string]ddbtypes.AttributeValue{contract.LedgerKey: &ddbtypes.AttributeValueMemberS{Value: id}}, ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

// render prints an item's attributes and values, keys sorted.
func render(item map[string]ddbtypes.AttributeValue) string {
	keys := slices.Sorted(maps.Keys(item))
	var b strings.Builder
	for _, k := range keys {
		var v any
		switch a := item[k].(type) {
		case *ddbtypes.AttributeValueMemberS:
			v = a.Value
		case *ddbtypes.AttributeValueMemberN:
			v = a.Value
		case *ddbtypes.AttributeValueMemberBOOL:
			v = a.Value
		default:
			v = a
		}
		fmt.Fprintf(&b, "%s=%v ", k, v)
	}
	return "{" + strings.TrimSpace(b.String()) + "}"
}

// deliver hands the events to HandleRegistrations as one batch of the registration queue and fails the test on a
// batch item failure.
func deliver(t testing.TB, h *jitr.Handler, evs ...jitr.Event) {
	t.Helper()
	var batch events.SQSEvent
	for i, e := range evs {
		body, _ := json.Marshal(e)
		batch.Records = append(batch.Records, events.SQSMessage{MessageId: fmt.Sprint("m", i), ReceiptHandle: fmt.Sprint("r", i), Body: string(body)})
	}
	resp, err := h.HandleRegistrations(context.Background(), batch)
	if err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("HandleRegistrations = %v, %v; want no failure", resp.BatchItemFailures, err)
	}
}

// TestRefusedOrIgnoredEventLeavesTheLedgerAsItWas delivers an event that names a real certificate but is refused
// or ignored, then the certificate's genuine event: the first must not mark the certificate settled, or the
// genuine one is dropped as its duplicate and the device waits.
func TestRefusedOrIgnoredEventLeavesTheLedgerAsItWas(t *testing.T) {
	for _, tc := range []struct {
		name  string
		event func(f *fixture, e *jitr.Event)
	}{
		{"no caCertificateId", func(_ *fixture, e *jitr.Event) { e.CACertificateID = "" }},
		{"empty certificateStatus", func(_ *fixture, e *jitr.Event) { e.CertificateStatus = "" }},
		{"another account", func(_ *fixture, e *jitr.Event) { e.AWSAccountID = "210987654321" }},
		{"a CA not the stack's", func(f *fixture, e *jitr.Event) { _, e.CACertificateID = f.registerCA(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, testRetryPolicy)
			h := f.withLedger(t)
			cert := f.device(t, testpki.RandomDeviceID(), time.Now().Add(-time.Hour))
			bogus := f.event(cert)
			tc.event(f, &bogus)

			deliver(t, h, bogus)
			if item := ledgerItem(t, cert); item != nil {
				t.Errorf("after the %s event the ledger holds %s for the certificate, want nothing (as it was)", tc.name, render(item))
			}
			deliver(t, h, f.event(cert))
			if got := f.status(t, cert); got != types.CertificateStatusActive {
				t.Errorf("after the genuine event the certificate is %s, want ACTIVE", got)
			}
			f.assertInvariant(t)
		})
	}
}

// TestIgnoredEventPutsBackAClaimItTookOver: an event ignored after DescribeCertificate (another account) that
// took over a lapsed claim of an interrupted delivery puts that claim back, retirement record included, rather
// than deleting it.
func TestIgnoredEventPutsBackAClaimItTookOver(t *testing.T) {
	f := newFixture(t, testRetryPolicy)
	h := f.withLedger(t)
	cert := f.device(t, testpki.RandomDeviceID(), time.Now().Add(-time.Hour))
	lapsed := map[string]ddbtypes.AttributeValue{
		contract.LedgerKey:        &ddbtypes.AttributeValueMemberS{Value: cert},
		contract.LedgerState:      &ddbtypes.AttributeValueMemberS{Value: contract.LedgerInflight},
		contract.LedgerLeaseUntil: &ddbtypes.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(-time.Minute).Unix())},
		contract.LedgerExpiresAt:  &ddbtypes.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(time.Hour).Unix())},
		contract.LedgerRetired:    &ddbtypes.AttributeValueMemberBOOL{Value: false},
		contract.LedgerRetirement: &ddbtypes.AttributeValueMemberS{Value: `{"thing":"t"}`},
	}
	if _, err := ledgerClient().PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(testLedger), Item: lapsed}); err != nil {
		t.Fatal(err)
	}
	bogus := f.event(cert)
	bogus.AWSAccountID = "210987654321"
	deliver(t, h, bogus)
	got := ledgerItem(t, cert)
	for k, want := range lapsed {
		if render(map[string]ddbtypes.AttributeValue{k: got[k]}) != render(map[string]ddbtypes.AttributeValue{k: want}) {
			t.Errorf("ledger item %s, want %s (as it was)", render(got), render(lapsed))
			break
		}
	}
	if len(got) != len(lapsed) {
		t.Errorf("ledger item %s, want exactly %s", render(got), render(lapsed))
	}
}

// TestCertificatePresentedAgainAfterItsRetirementIsRevoked: a device presents a certificate that the retirement
// of its newer one deleted. AWS IoT registers it anew (same id, PENDING_ACTIVATION) and publishes its event; it
// is the device's older certificate, so it is revoked, never activated, and not dropped as a duplicate of its
// earlier settlement (which would leave it PENDING for good, every connection attempt costing an event).
func TestCertificatePresentedAgainAfterItsRetirementIsRevoked(t *testing.T) {
	f := newFixture(t, testRetryPolicy)
	h := f.withLedger(t)
	dev := testpki.RandomDeviceID()
	oldPair, err := f.ca.IssueDevice(dev, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old := f.register(t, oldPair)
	deliver(t, h, f.event(old))
	cur := f.device(t, dev, time.Now().Add(-time.Hour))
	deliver(t, h, f.event(cur))
	if f.status(t, old) != "" || f.status(t, cur) != types.CertificateStatusActive {
		t.Fatalf("rotation: old %q, current %s; want old deleted, current ACTIVE", f.status(t, old), f.status(t, cur))
	}

	if again := f.register(t, oldPair); again != old {
		t.Fatalf("registered again under id %s, want %s", again, old)
	}
	f.rec.reset()
	deliver(t, h, f.event(old))
	if got := f.status(t, old); got != types.CertificateStatusRevoked {
		t.Errorf("the old certificate presented again is %q, want REVOKED", got)
	}
	calls, _ := f.rec.snapshot()
	for _, c := range calls {
		if in, ok := c.input.(*iot.UpdateCertificateInput); ok && in.NewStatus == types.CertificateStatusActive {
			t.Errorf("the old certificate presented again was activated (calls %v)", ops(calls))
		}
	}
	if got := f.status(t, cur); got != types.CertificateStatusActive {
		t.Errorf("the device's newer certificate is %q, want ACTIVE", got)
	}
	if got := f.thingPrincipals(t, thingOf(dev)); len(got) != 1 || got[0] != cur {
		t.Errorf("thing principals %v, want only the newer certificate %s", got, cur[:8])
	}
	f.assertInvariant(t)
}
