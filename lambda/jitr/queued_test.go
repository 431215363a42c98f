package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

var adminCreds = credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")

func sqsClient() *sqs.Client {
	return sqs.New(sqs.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: adminCreds})
}

func dynamoClient() *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: adminCreds})
}

// createTable creates an on-demand table keyed by the string attribute key, as the stack declares its tables.
func createTable(t *testing.T, db *dynamodb.Client, name, key string) {
	t.Helper()
	if _, err := db.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(key), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(key), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
}

// queuedPath creates the ledger table and the two queues in moto as the stack declares them and returns the
// environment naming them.
func queuedPath(t *testing.T, db *dynamodb.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	createTable(t, db, "ledger", contract.LedgerKey)
	// The ledger's sparse index of pending retirements, as the stack declares it: the reconciler reads it.
	if _, err := db.UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: aws.String("ledger"),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String(contract.LedgerRetirementPending), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String(contract.LedgerQueuedAt), AttributeType: ddbtypes.ScalarAttributeTypeN}},
		GlobalSecondaryIndexUpdates: []ddbtypes.GlobalSecondaryIndexUpdate{{Create: &ddbtypes.CreateGlobalSecondaryIndexAction{
			IndexName: aws.String(contract.LedgerRetirementIndex),
			KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: aws.String(contract.LedgerRetirementPending), KeyType: ddbtypes.KeyTypeHash},
				{AttributeName: aws.String(contract.LedgerQueuedAt), KeyType: ddbtypes.KeyTypeRange}},
			Projection: &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeInclude, NonKeyAttributes: []string{contract.LedgerRetirement}},
		}}},
	}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{contract.EnvLedgerTable: "ledger", contract.EnvIoTRateLimits: `{"DescribeCertificate":5,"UpdateCertificate":5}`}
	for key, name := range map[string]string{contract.EnvRegistrationQueueURL: "registrations", contract.EnvRetirementQueueURL: "retirements"} {
		out, err := sqsClient().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		env[key] = aws.ToString(out.QueueUrl)
	}
	return env
}

// TestQueuedPathThroughTheLambdaRuntime drives the three kinds of invocation the stack makes through the
// production wiring against moto: a registration batch with the same event twice (AWS IoT re-publishes it at
// every connection attempt) activates the certificate once and queues its retirement; a second delivery of the
// event spends no AWS IoT call; the retirement batch retires the device's older certificate; the schedule's event
// runs the reconciler.
func TestQueuedPathThroughTheLambdaRuntime(t *testing.T) {
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	for _, kv := range moto.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ctx := context.Background()
	admin := iot.New(iot.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: adminCreds})
	db := dynamoClient()
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := admin.RegisterCACertificate(ctx, &iot.RegisterCACertificateInput{CaCertificate: aws.String(string(ca.CertPEM())), SetAsActive: true, AllowAutoRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String("device-policy"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	createTable(t, db, "deny-list", contract.DenyListKey)
	env := queuedPath(t, db)
	env[contract.EnvCACertificateIDs], env[contract.EnvCACertificatesPEM] = *reg.CertificateId, string(ca.CertPEM())
	env[contract.EnvDevicePolicyName], env[contract.EnvProvisionedBy], env[contract.EnvDenyListTable] = "device-policy", "WiringTestStack", "deny-list"
	a, err := newApp(ctx, func(k string) string { return env[k] }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(payload []byte) []byte {
		t.Helper()
		out, err := lambda.NewHandler(a.invoke).Invoke(ctx, payload)
		if err != nil {
			t.Fatalf("Invoke: %v", err)
		}
		return out
	}
	register := func(notBefore time.Time, dev string) string {
		t.Helper()
		pair, err := ca.IssueDevice(dev, notBefore)
		if err != nil {
			t.Fatal(err)
		}
		out, err := admin.RegisterCertificate(ctx, &iot.RegisterCertificateInput{CertificatePem: aws.String(string(pair.CertPEM())),
			CaCertificatePem: aws.String(string(ca.CertPEM())), Status: types.CertificateStatusPendingActivation})
		if err != nil {
			t.Fatal(err)
		}
		return *out.CertificateId
	}
	event := func(id string) string {
		return fmt.Sprintf(`{"certificateId":"%s","caCertificateId":"%s","timestamp":%d,"certificateStatus":"PENDING_ACTIVATION","awsAccountId":"%s"}`,
			id, *reg.CertificateId, time.Now().UnixMilli(), motoserver.AccountID)
	}
	batch := func(queueKey string, bodies ...string) []byte {
		var records []map[string]any
		for i, b := range bodies {
			records = append(records, map[string]any{"messageId": fmt.Sprint("m", i), "receiptHandle": fmt.Sprint("r", i), "body": b,
				"attributes": map[string]string{"SentTimestamp": fmt.Sprint(time.Now().UnixMilli())}, "eventSource": "aws:sqs",
				"eventSourceARN": "arn:aws:sqs:" + motoserver.Region + ":" + motoserver.AccountID + ":" + env[queueKey][strings.LastIndex(env[queueKey], "/")+1:]})
		}
		payload, _ := json.Marshal(map[string]any{"Records": records})
		return payload
	}
	iotCalls := func() int {
		q, err := moto.Quotas(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range q.Calls {
			n += c
		}
		return n
	}
	status := func(id string) types.CertificateStatus {
		out, err := admin.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)}, func(o *iot.Options) { o.APIOptions = append(o.APIOptions, motoserver.Internal) })
		if err != nil {
			return ""
		}
		return out.CertificateDescription.Status
	}

	dev := testpki.RandomDeviceID()
	old := register(time.Now().Add(-2*time.Hour), dev)
	cur := register(time.Now().Add(-time.Hour), dev)
	// Both certificates of the device, the newer delivered twice in one batch.
	out := invoke(batch(contract.EnvRegistrationQueueURL, event(old), event(cur), event(cur)))
	if !strings.Contains(string(out), `"batchItemFailures":[]`) && !strings.Contains(string(out), `"batchItemFailures":null`) {
		t.Errorf("registration batch answered %s, want no failures", out)
	}
	if status(old) != types.CertificateStatusActive || status(cur) != types.CertificateStatusActive {
		t.Fatalf("after the registration batch: old %s, current %s; want both ACTIVE (retirement deferred)", status(old), status(cur))
	}
	// A later delivery of the settled event: dropped before any AWS IoT call.
	before := iotCalls()
	invoke(batch(contract.EnvRegistrationQueueURL, event(cur)))
	if spent := iotCalls() - before; spent != 0 {
		t.Errorf("a duplicate event spent %d AWS IoT calls, want 0", spent)
	}
	// The retirements were queued; the retirement batch retires the older certificate.
	msgs, err := sqsClient().ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(env[contract.EnvRetirementQueueURL]), MaxNumberOfMessages: 10,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
	if err != nil || len(msgs.Messages) != 2 {
		t.Fatalf("retirement queue: %v messages, %v; want 2 (one per activation)", len(msgs.Messages), err)
	}
	var bodies []string
	for _, m := range msgs.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	invoke(batch(contract.EnvRetirementQueueURL, bodies...))
	if status(old) != "" || status(cur) != types.CertificateStatusActive {
		t.Errorf("after the retirement batch: old %q, current %s; want old deleted, current ACTIVE", status(old), status(cur))
	}
	// The reconciler finds nothing to do: nothing pending, every retirement done.
	invoke([]byte(`{"version":"0","detail-type":"` + contract.ScheduledEventDetailType + `","source":"aws.events","detail":{}}`))
	items, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("ledger")})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items.Items {
		// The retired certificate is marked deleted: presented again, it is a new registration to handle.
		want := contract.LedgerDone
		if k, _ := it[contract.LedgerKey].(*ddbtypes.AttributeValueMemberS); k != nil && k.Value == old {
			want = contract.LedgerDeleted
		}
		if s, _ := it[contract.LedgerState].(*ddbtypes.AttributeValueMemberS); s == nil || s.Value != want {
			t.Errorf("ledger item %v: state %v, want %s", it, s, want)
		}
		if r, _ := it[contract.LedgerRetired].(*ddbtypes.AttributeValueMemberBOOL); r == nil || !r.Value {
			t.Errorf("ledger item %v: retirement not recorded as done", it)
		}
	}
}
