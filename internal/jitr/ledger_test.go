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
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
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

// ledgerTableInput is the ledger as the stack declares it (infra/jitr.go): keyed by certificate id, with the sparse
// index of pending retirements.
func ledgerTableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName: aws.String(name),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String(contract.LedgerKey), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String(contract.LedgerRetirementPending), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String(contract.LedgerQueuedAt), AttributeType: ddbtypes.ScalarAttributeTypeN},
		},
		KeySchema:   []ddbtypes.KeySchemaElement{{AttributeName: aws.String(contract.LedgerKey), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode: ddbtypes.BillingModePayPerRequest,
		GlobalSecondaryIndexes: []ddbtypes.GlobalSecondaryIndex{{
			IndexName: aws.String(contract.LedgerRetirementIndex),
			KeySchema: []ddbtypes.KeySchemaElement{
				{AttributeName: aws.String(contract.LedgerRetirementPending), KeyType: ddbtypes.KeyTypeHash},
				{AttributeName: aws.String(contract.LedgerQueuedAt), KeyType: ddbtypes.KeyTypeRange},
			},
			Projection: &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeInclude, NonKeyAttributes: []string{contract.LedgerRetirement}},
		}},
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

// deliverAll hands the events to HandleRegistrations as one batch, and the records it reports failed again (put
// back behind another delivery's claim) until none is, as the queue would.
func deliverAll(t testing.TB, h *jitr.Handler, evs ...jitr.Event) {
	t.Helper()
	for range 5 {
		var batch events.SQSEvent
		for i, e := range evs {
			body, _ := json.Marshal(e)
			batch.Records = append(batch.Records, events.SQSMessage{MessageId: fmt.Sprint("m", i), Body: string(body)})
		}
		resp, err := h.HandleRegistrations(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		var again []jitr.Event
		for _, f := range resp.BatchItemFailures {
			var i int
			fmt.Sscanf(f.ItemIdentifier, "m%d", &i)
			again = append(again, evs[i])
		}
		if evs = again; len(evs) == 0 {
			return
		}
	}
	t.Fatalf("records still failing after 5 deliveries: %v", evs)
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
			// The two in one batch: the first is not taken for a duplicate of the second.
			other := f.device(t, testpki.RandomDeviceID(), time.Now().Add(-time.Hour))
			bogus = f.event(other)
			tc.event(f, &bogus)
			deliverAll(t, h, bogus, f.event(other))
			if got := f.status(t, other); got != types.CertificateStatusActive {
				t.Errorf("after the %s event and the genuine one in one batch the certificate is %s, want ACTIVE", tc.name, got)
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

// TestReconcilerReadsTheWorkLeftNotTheFleet fills the ledger with a settled fleet and a few retirements left
// undone: one reconciler pass reads those (through the sparse index) and queues them again, whatever the fleet.
func TestReconcilerReadsTheWorkLeftNotTheFleet(t *testing.T) {
	f := newFixture(t, testRetryPolicy)
	ctx := context.Background()
	if _, err := ledgerClient().CreateTable(ctx, ledgerTableInput(testLedger)); err != nil {
		t.Fatal(err)
	}
	queues := sqs.New(sqs.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: adminCredentials})
	cfg := f.cfg
	cfg.LedgerTable = testLedger
	for _, q := range []*string{&cfg.RegistrationQueueURL, &cfg.RetirementQueueURL} {
		out, err := queues.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("q%d-%d", len(*q), time.Now().UnixNano()))})
		if err != nil {
			t.Fatal(err)
		}
		*q = aws.ToString(out.QueueUrl)
	}
	logs := &syncBuffer{}
	h := jitr.NewHandler(newIoTClient(nil, testRetryPolicy, f.principal.Credentials()), cfg, jitr.WithLedger(ledgerClient()),
		jitr.WithQueues(queues), jitr.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), jitr.WithMetricsOutput(f.metrics))

	const fleet, overdue, recent = 300, 3, 2
	put := func(i int, pending bool, queuedAt time.Time) {
		id := fmt.Sprintf("%064x", i)
		req, _ := json.Marshal(contract.RetirementRequest{Thing: fmt.Sprint("thing-", i), CertificateID: id})
		item := map[string]ddbtypes.AttributeValue{
			contract.LedgerKey:        &ddbtypes.AttributeValueMemberS{Value: id},
			contract.LedgerState:      &ddbtypes.AttributeValueMemberS{Value: contract.LedgerDone},
			contract.LedgerRetired:    &ddbtypes.AttributeValueMemberBOOL{Value: !pending},
			contract.LedgerRetirement: &ddbtypes.AttributeValueMemberS{Value: string(req)},
			contract.LedgerQueuedAt:   &ddbtypes.AttributeValueMemberN{Value: fmt.Sprint(queuedAt.Unix())},
		}
		if pending {
			item[contract.LedgerRetirementPending] = &ddbtypes.AttributeValueMemberS{Value: contract.LedgerPending}
		}
		if _, err := ledgerClient().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(testLedger), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range fleet {
		put(i, false, time.Now().Add(-time.Hour))
	}
	for i := range overdue {
		put(fleet+i, true, time.Now().Add(-2*time.Hour))
	}
	// Half an hour is a retirement put back through a long storm's backlog, not one lost: left alone.
	for i := range recent {
		put(fleet+overdue+i, true, time.Now().Add(-30*time.Minute))
	}

	if err := h.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	var line struct{ RetirementsRequeued, ReconcileReads int }
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, `"msg":"reconciled"`) {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	if line.RetirementsRequeued != overdue {
		t.Errorf("retirements requeued %d, want %d (logs %s)", line.RetirementsRequeued, overdue, logs)
	}
	if line.ReconcileReads != overdue {
		t.Errorf("one pass read %d ledger items of %d, want the %d retirements left to do", line.ReconcileReads, fleet+overdue+recent, overdue)
	}
	attrs, err := queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(cfg.RetirementQueueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
	if err != nil {
		t.Fatal(err)
	}
	if got := attrs.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)]; got != fmt.Sprint(overdue) {
		t.Errorf("retirement queue holds %s messages, want %d", got, overdue)
	}
	// Queued again, they are due again only retirementLostAfter later: the next pass reads nothing.
	logs.buf.Reset()
	if err := h.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"reconcileReads":0`) {
		t.Errorf("second pass: %s, want no ledger item read", logs)
	}
}
