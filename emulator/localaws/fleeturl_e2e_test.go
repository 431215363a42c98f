package localaws_test

// End-to-end test of the fleet file's fallback: the image's baked GET URL of fleet/<name> has expired (images reach
// devices through cloud deployments weeks after `make device-image` signed it, for 7 days at most), so the device
// asks the presign function, over MQTT with "scope":"fleet", for a runtime URL of the same object.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// bakedURLLifetime is the longest a SigV4 presigned URL lives (7 days), what `make device-image EXPIRES=168h` bakes.
const bakedURLLifetime = 7 * 24 * time.Hour

func TestExpiredBakedFleetURLFallsBackToARuntimeURL(t *testing.T) {
	lw := &lineWriter{t: t}
	tw := startEmulator(t, timeline.New(lw))
	d := connectFleet(t, tw, 1)[0]
	ctx := context.Background()
	bucket := tw.Info().Bucket
	const name = "notice.txt"
	key := contract.FleetObjectPrefix + name
	notice := []byte("maintenance window: Sunday 02:00 UTC\n")

	// The operator uploads the fleet file (`aws s3 cp notice.txt s3://<bucket>/fleet/notice.txt`), signing with the
	// account's credentials through the S3 gate.
	operator := operatorS3(tw)
	if _, err := operator.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(notice)}); err != nil {
		t.Fatalf("operator upload of %s: %v", key, err)
	}

	// The image's URL: a GET of the fleet file signed by the operator for 7 days, 8 days ago.
	baked := presignGetAt(t, tw, bucket, key, time.Now().Add(-bakedURLLifetime-24*time.Hour), bakedURLLifetime)
	_, err := d.Transfer(ctx, http.MethodGet, baked, nil)
	var he *devicesim.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden || !strings.Contains(he.Body, "Request has expired") {
		t.Fatalf("the baked URL signed 8 days ago for 7: %v, want 403 Request has expired", err)
	}
	// The same URL signed an hour ago is good: the refusal above is the expiry, not the object or the signature.
	if got, err := d.Transfer(ctx, http.MethodGet, presignGetAt(t, tw, bucket, key, time.Now().Add(-time.Hour), bakedURLLifetime), nil); err != nil || !bytes.Equal(got, notice) {
		t.Fatalf("a baked URL still in time: %q, %v; want the fleet file", got, err)
	}

	// The device asks for the fleet file with the request the C app sends (s3_url_request.c): GET, scope fleet, the
	// name from the baked URL. Through the template's rule and the real presign function under aws-lambda-rie.
	reply, err := d.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationGet, Scope: contract.S3URLScopeFleet, Name: name})
	if err != nil {
		t.Fatalf("runtime URL of the fleet file: %v", err)
	}
	if reply.Key != key || reply.Method != contract.S3OperationGet || reply.ExpiresAt <= time.Now().Unix() {
		t.Errorf("reply %+v, want a GET of %s that has not expired", reply, key)
	}
	if u, err := url.Parse(reply.URL); err != nil || u.Path != "/"+bucket+"/"+key {
		t.Errorf("runtime URL %s is not the URL of %s/%s", reply.URL, bucket, key)
	}
	got, err := d.Transfer(ctx, http.MethodGet, reply.URL, nil)
	if err != nil {
		t.Fatalf("GET with the runtime URL (signed with the presign function's role): %v", err)
	}
	if !bytes.Equal(got, notice) {
		t.Errorf("runtime URL read %q, want the fleet file %q", got, notice)
	}

	// No device writes the fleet file: a PUT with scope fleet gets no URL, and the reason names the scope.
	_, err = d.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationPut, Scope: contract.S3URLScopeFleet, Name: name, ContentLength: 5})
	var rej *devicesim.URLRejectedError
	if !errors.As(err, &rej) || !strings.Contains(rej.Reason, "scope") {
		t.Errorf("PUT with scope fleet: %v, want a rejection naming scope", err)
	}
	// Nor can a fleet name reach a device's objects.
	_, err = d.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationGet, Scope: contract.S3URLScopeFleet, Name: "../" + contract.DeviceObjectPrefix + d.Thing + "/" + devicesim.ObjectName})
	if !errors.As(err, &rej) || !strings.Contains(rej.Reason, "name") {
		t.Errorf("GET of fleet/../devices/<thing>/…: %v, want a rejection naming name", err)
	}
	if _, err := operator.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		t.Errorf("the fleet file after the refused PUT: %v", err)
	}
	if n := strings.Count(lw.String(), "invocation failed"); n != 0 {
		t.Errorf("%d failed invocations on the timeline, want none", n)
	}
}

// gateHTTP is an HTTP client that trusts the S3 gate's server certificate (the emulator's server CA).
func gateHTTP(tw *localaws.Emulator) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(tw.ServerCA.Cert)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 30 * time.Second}
}

// operatorS3 is an S3 client of the gate with the account's credentials, as the operator's AWS CLI would be.
func operatorS3(tw *localaws.Emulator) *s3.Client {
	return s3.New(s3.Options{
		Region: motoserver.Region, BaseEndpoint: aws.String(tw.S3Gate.URL()), UsePathStyle: true, HTTPClient: gateHTTP(tw),
		Credentials:                credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired, ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// presignGetAt signs, with the account's credentials, a GET of bucket/key through the gate at signedAt for
// lifetime: what cmd/deviceconfig bakes into the image, at the time the image was built.
func presignGetAt(t *testing.T, tw *localaws.Emulator, bucket, key string, signedAt time.Time, lifetime time.Duration) string {
	t.Helper()
	q := url.Values{"X-Amz-Expires": {strconv.FormatInt(int64(lifetime/time.Second), 10)}}
	req, err := http.NewRequest(http.MethodGet, tw.S3Gate.URL()+"/"+bucket+"/"+key+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := aws.Credentials{AccessKeyID: motoserver.AccessKeyID, SecretAccessKey: motoserver.SecretAccessKey}
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, "UNSIGNED-PAYLOAD", "s3", motoserver.Region, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}
