package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
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

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

var moto *motoserver.Server

func TestMain(m *testing.M) {
	os.Exit(motoserver.RunTests(m, &moto))
}

// TestWiringProvisionsThroughTheLambdaRuntimePath builds the handler exactly as main does (environment of the
// stack, AWS_ENDPOINT_URL pointing at moto) and invokes it through aws-lambda-go with the raw JSON AWS IoT
// publishes, so event decoding, configuration and the SDK set-up are all the production ones.
func TestWiringProvisionsThroughTheLambdaRuntimePath(t *testing.T) {
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	for _, kv := range moto.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ctx := context.Background()
	admin := iot.New(iot.Options{
		Region:       motoserver.Region,
		BaseEndpoint: aws.String(moto.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""),
	})
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := admin.RegisterCACertificate(ctx, &iot.RegisterCACertificateInput{
		CaCertificate: aws.String(string(ca.CertPEM())), SetAsActive: true, AllowAutoRegistration: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String("device-policy"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	dev, err := ca.IssueDevice(testpki.RandomDeviceID(), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := admin.RegisterCertificate(ctx, &iot.RegisterCertificateInput{
		CertificatePem: aws.String(string(dev.CertPEM())), CaCertificatePem: aws.String(string(ca.CertPEM())),
		Status: types.CertificateStatusPendingActivation,
	})
	if err != nil {
		t.Fatal(err)
	}

	// The deny-list table as the stack declares it, with another device on it.
	db := dynamoClient()
	createTable(t, db, "deny-list", contract.DenyListKey)
	deniedDev, err := ca.IssueDevice(testpki.RandomDeviceID(), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	deniedThing := strings.ToLower(deniedDev.Cert.Subject.CommonName)
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("deny-list"),
		Item: map[string]ddbtypes.AttributeValue{contract.DenyListKey: &ddbtypes.AttributeValueMemberS{Value: deniedThing}}}); err != nil {
		t.Fatal(err)
	}
	deniedCert, err := admin.RegisterCertificate(ctx, &iot.RegisterCertificateInput{
		CertificatePem: aws.String(string(deniedDev.CertPEM())), CaCertificatePem: aws.String(string(ca.CertPEM())),
		Status: types.CertificateStatusPendingActivation,
	})
	if err != nil {
		t.Fatal(err)
	}

	env := map[string]string{
		contract.EnvCACertificateIDs:  *reg.CertificateId,
		contract.EnvCACertificatesPEM: string(ca.CertPEM()),
		contract.EnvDevicePolicyName:  "device-policy",
		contract.EnvProvisionedBy:     "WiringTestStack",
		contract.EnvDenyListTable:     "deny-list",
	}
	for k, v := range queuedPath(t, db) {
		env[k] = v
	}
	h, err := newApp(ctx, func(k string) string { return env[k] }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"certificateId":"%s","caCertificateId":"%s","timestamp":%d,"certificateStatus":"PENDING_ACTIVATION",`+
		`"awsAccountId":"%s","certificateRegistrationTimestamp":null}`, *cert.CertificateId, *reg.CertificateId, time.Now().UnixMilli(), motoserver.AccountID)
	if _, err := lambda.NewHandler(h.invoke).Invoke(ctx, []byte(payload)); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	out, err := admin.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: cert.CertificateId})
	if err != nil {
		t.Fatal(err)
	}
	if out.CertificateDescription.Status != types.CertificateStatusActive {
		t.Errorf("certificate status = %s, want ACTIVE", out.CertificateDescription.Status)
	}
	thing, err := admin.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(strings.ToLower(dev.Cert.Subject.CommonName))})
	if err != nil {
		t.Fatalf("thing not created: %v", err)
	}
	if thing.Attributes[contract.AttrProvisionedBy] != "WiringTestStack" {
		t.Errorf("thing attributes = %v", thing.Attributes)
	}

	// The device on the deny-list: its certificate is revoked, no thing is made for it.
	payload = fmt.Sprintf(`{"certificateId":"%s","caCertificateId":"%s","timestamp":%d,"certificateStatus":"PENDING_ACTIVATION",`+
		`"awsAccountId":"%s","certificateRegistrationTimestamp":null}`, *deniedCert.CertificateId, *reg.CertificateId, time.Now().UnixMilli(), motoserver.AccountID)
	if _, err := lambda.NewHandler(h.invoke).Invoke(ctx, []byte(payload)); err != nil {
		t.Fatalf("Invoke (denied device): %v", err)
	}
	out, err = admin.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: deniedCert.CertificateId})
	if err != nil {
		t.Fatal(err)
	}
	if out.CertificateDescription.Status != types.CertificateStatusRevoked {
		t.Errorf("certificate of the denied device is %s, want REVOKED", out.CertificateDescription.Status)
	}
	if _, err := admin.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(deniedThing)}); err == nil {
		t.Errorf("a thing was created for the denied device %s", deniedThing)
	}
}

func TestWiringFailsFastWithoutTheStackEnvironment(t *testing.T) {
	_, err := newApp(context.Background(), func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), contract.EnvCACertificateIDs) {
		t.Fatalf("newHandler error = %v, want one naming %s", err, contract.EnvCACertificateIDs)
	}
}
