package s3gate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// gateFixture is a gate in front of a real moto, with the demo bucket's rules read from the stack's template
// snapshot, one function key whose role may read and write devices/*, and a second bucket whose policy is public.
type gateFixture struct {
	gate    *S3Gate
	http    *http.Client
	fn      *identity.Identity
	bucket  string // rules from the template: ACLs disabled, public access blocked, TLS-only policy
	open    string // a policy granting Principal "*" GetObject on public/* and denying everyone DeleteObject
	timelog *bytes.Buffer
}

func startGateFixture(t *testing.T) *gateFixture {
	t.Helper()
	ctx := context.Background()
	moto, err := motoserver.Start(ctx, motoserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(moto.Stop)
	f := &gateFixture{bucket: "demo-bucket", open: "open-bucket", timelog: &bytes.Buffer{}}
	direct := s3.NewFromConfig(motoserver.AWSConfig(moto.URL), func(o *s3.Options) { o.UsePathStyle = true })
	for _, b := range []string{f.bucket, f.open} {
		if _, err := direct.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"devices/dev-b/x", "config/x", "public/x", "private/x"} {
		for _, b := range []string{f.bucket, f.open} {
			if _, err := direct.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k), Body: strings.NewReader("seed")}); err != nil {
				t.Fatal(err)
			}
		}
	}

	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: "gate test CA"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	keys := identity.NewRegistry(moto)
	const roleDoc = `{"Statement":[{"Effect":"Allow","Action":["s3:PutObject","s3:GetObject"],"Resource":"arn:aws:s3:::demo-bucket/devices/*"}]}`
	role, err := policy.Parse([]byte(roleDoc))
	if err != nil {
		t.Fatal(err)
	}
	f.fn, err = keys.Register(ctx, "presign-function", motoserver.Principal{
		AccessKeyID: motoserver.FunctionAccessKey("PresignFunction"), RoleArn: "arn:aws:iam::" + motoserver.AccountID + ":role/presign-function",
		SessionName: "presign-function", Policies: []json.RawMessage{json.RawMessage(roleDoc)},
	}, role)
	if err != nil {
		t.Fatal(err)
	}
	f.gate, err = StartS3Gate(moto.URL, tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}, keys, timeline.New(f.timelog))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.gate.Close() })

	// The demo bucket as the stack declares it.
	root, err := motoserver.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "stacks", "testdata", "SphereJitr.template.snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := stacktemplate.ParseTemplate(data)
	if err != nil {
		t.Fatal(err)
	}
	ids := tpl.OfType("AWS::S3::Bucket")
	if len(ids) != 1 {
		t.Fatalf("template buckets %v, want one", ids)
	}
	res := stacktemplate.NewResolver(tpl, "SphereJitr", motoserver.Region, motoserver.AccountID)
	res.Fallback = func(logicalID, attr string) (string, bool) { // the roles the bucket policy names
		return "arn:aws:iam::" + motoserver.AccountID + ":role/" + logicalID, true
	}
	res.Refs[ids[0]] = f.bucket
	res.Attrs[ids[0]+".Arn"] = "arn:aws:s3:::" + f.bucket
	if err := f.gate.ApplyTemplate(tpl, res); err != nil {
		t.Fatal(err)
	}
	if got := f.gate.bucketRules(f.bucket); !got.OwnerEnforced || !got.BlockPublicAcls || len(got.Policy) == 0 {
		t.Fatalf("demo bucket rules from the template: %+v", got)
	}

	// The open bucket's policy lives in moto too (as a bucket policy lives in S3): moto checks it, with the
	// object's ACL, before serving an unsigned GET.
	const openDoc = `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::open-bucket/public/*"},
		{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"s3:DeleteObject","Resource":"arn:aws:s3:::open-bucket/*"}]}`
	openPolicy, err := parseBucketPolicy([]byte(openDoc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(f.open), Policy: aws.String(openDoc)}); err != nil {
		t.Fatal(err)
	}
	f.gate.mu.Lock()
	f.gate.buckets[f.open] = BucketRules{Policy: openPolicy}
	f.gate.mu.Unlock()

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	f.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return f
}

// client is an SDK S3 client of the gate signing with creds (real SigV4 through the SDK's signer).
func (f *gateFixture) client(creds aws.CredentialsProvider) *s3.Client {
	return s3.New(s3.Options{
		Region: motoserver.Region, BaseEndpoint: aws.String(f.gate.URL()), UsePathStyle: true, Credentials: creds, HTTPClient: f.http,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired, ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

func (f *gateFixture) admin() *s3.Client {
	return f.client(credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""))
}

func (f *gateFixture) function() *s3.Client {
	return f.client(credentials.NewStaticCredentialsProvider(f.fn.AccessKeyID(), f.fn.Secret(), ""))
}

// presignPut is a URL the function signs, as the presign function does, for a PUT of n bytes.
func (f *gateFixture) presignPut(t *testing.T, c *s3.Client, bucket, key string, n int64) string {
	t.Helper()
	req, err := s3.NewPresignClient(c).PresignPutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ContentLength: aws.Int64(n)})
	if err != nil {
		t.Fatal(err)
	}
	return req.URL
}

type s3Answer struct {
	Status           int
	Code             string `xml:"Code"`
	Message          string `xml:"Message"`
	HeadersNotSigned string `xml:"HeadersNotSigned"`
	Body             string
}

// do sends a raw request to the gate.
func (f *gateFixture) do(t *testing.T, method, rawURL string, header http.Header, body string) s3Answer {
	t.Helper()
	if !strings.HasPrefix(rawURL, "https://") {
		rawURL = f.gate.URL() + rawURL
	}
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := s3Answer{Status: resp.StatusCode, Body: string(data)}
	if resp.StatusCode >= 300 {
		_ = xml.Unmarshal(data, &a)
	}
	return a
}

func sdkError(err error) (status int, code string) {
	var ae smithy.APIError
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	return status, code
}

// TestS3GateIsAsStrictAsS3 tries, one rule each, what S3 refuses and the emulator's S3 used to serve.
func TestS3GateIsAsStrictAsS3(t *testing.T) {
	f := startGateFixture(t)
	ctx := context.Background()
	want := func(t *testing.T, got s3Answer, status int, code string) {
		t.Helper()
		if got.Status != status || got.Code != code {
			t.Fatalf("HTTP %d %s (%s), want %d %s", got.Status, got.Code, got.Message, status, code)
		}
	}

	t.Run("unsigned requests are anonymous and the bucket policy grants anonymous callers nothing", func(t *testing.T) {
		want(t, f.do(t, http.MethodPut, "/demo-bucket/devices/dev-b/new", nil, "planted"), 403, "AccessDenied")
		want(t, f.do(t, http.MethodPut, "/demo-bucket/devices/dev-b/x", nil, "overwrite"), 403, "AccessDenied")
		want(t, f.do(t, http.MethodPut, "/demo-bucket/config/x", nil, "overwrite"), 403, "AccessDenied")
		want(t, f.do(t, http.MethodGet, "/demo-bucket?list-type=2", nil, ""), 403, "AccessDenied")
		want(t, f.do(t, http.MethodGet, "/demo-bucket/devices/dev-b/x", nil, ""), 403, "AccessDenied")
	})

	t.Run("a bucket policy for Principal * lets anonymous callers do what it allows, no more", func(t *testing.T) {
		if got := f.do(t, http.MethodGet, "/open-bucket/public/x", nil, ""); got.Status != 200 || got.Body != "seed" {
			t.Fatalf("anonymous GET of public/x: %+v", got)
		}
		want(t, f.do(t, http.MethodGet, "/open-bucket/private/x", nil, ""), 403, "AccessDenied")
		want(t, f.do(t, http.MethodPut, "/open-bucket/public/y", nil, "new"), 403, "AccessDenied")
	})

	t.Run("an explicit Deny in the bucket policy binds even the account's root", func(t *testing.T) {
		_, err := f.admin().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(f.open), Key: aws.String("private/x")})
		if status, code := sdkError(err); status != 403 || code != "AccessDenied" {
			t.Fatalf("root DELETE under a Deny: %v, want 403 AccessDenied", err)
		}
	})

	t.Run("an unknown access key is InvalidAccessKeyId", func(t *testing.T) {
		forged := f.client(credentials.NewStaticCredentialsProvider("AKIAMADEUPMADEUP0000", "made-up", ""))
		u, err := url.Parse(f.presignPut(t, forged, f.bucket, "devices/dev-b/x", 4))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("X-Amz-Signature", strings.Repeat("0", 64))
		u.RawQuery = q.Encode()
		want(t, f.do(t, http.MethodPut, u.String(), nil, "evil"), 403, "InvalidAccessKeyId")
		_, err = forged.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(f.bucket)})
		if status, code := sdkError(err); status != 403 || code != "InvalidAccessKeyId" {
			t.Fatalf("ListObjectsV2 with a made-up key: %v", err)
		}
	})

	t.Run("a signature that does not match is SignatureDoesNotMatch", func(t *testing.T) {
		u, err := url.Parse(f.presignPut(t, f.function(), f.bucket, "devices/dev-a/x", 4))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("X-Amz-Signature", strings.Repeat("0", 64))
		u.RawQuery = q.Encode()
		want(t, f.do(t, http.MethodPut, u.String(), nil, "four"), 403, "SignatureDoesNotMatch")
		wrongSecret := f.client(credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, "not-the-secret", ""))
		_, err = wrongSecret.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(f.bucket)})
		if status, code := sdkError(err); status != 403 || code != "SignatureDoesNotMatch" {
			t.Fatalf("admin key, wrong secret: %v", err)
		}
	})

	t.Run("an Authorization header that is not SigV4 or is malformed is refused", func(t *testing.T) {
		want(t, f.do(t, http.MethodGet, "/demo-bucket?list-type=2", http.Header{"Authorization": {"garbage"}}, ""), 400, "InvalidArgument")
		want(t, f.do(t, http.MethodGet, "/demo-bucket?list-type=2", http.Header{"Authorization": {"AWS4-HMAC-SHA256 garbage"}}, ""), 400, "AuthorizationHeaderMalformed")
		want(t, f.do(t, http.MethodGet, "/demo-bucket?list-type=2", http.Header{"Authorization": {"AWS AKIAEXAMPLE:c2lnbmF0dXJl"}}, ""), 400, "InvalidRequest")
	})

	t.Run("x-amz-* headers a presigned URL does not sign are refused", func(t *testing.T) {
		put := f.presignPut(t, f.function(), f.bucket, "devices/dev-a/acl", 4)
		got := f.do(t, http.MethodPut, put, http.Header{"X-Amz-Acl": {"public-read"}}, "four")
		want(t, got, 403, "AccessDenied")
		if got.HeadersNotSigned != "x-amz-acl" || got.Message != "There were headers present in the request which were not signed" {
			t.Fatalf("%+v, want the unsigned x-amz-acl named", got)
		}
		if got := f.do(t, http.MethodPut, put, nil, "four"); got.Status != 200 {
			t.Fatalf("the same URL without the header: %+v", got)
		}
		want(t, f.do(t, http.MethodGet, "/demo-bucket/devices/dev-a/acl", nil, ""), 403, "AccessDenied")
	})

	t.Run("ACLs are refused where the bucket has them disabled (BucketOwnerEnforced)", func(t *testing.T) {
		_, err := f.admin().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(f.bucket), Key: aws.String("devices/dev-a/pub"),
			Body: strings.NewReader("x"), ACL: s3types.ObjectCannedACLPublicRead})
		if status, code := sdkError(err); status != 400 || code != "AccessControlListNotSupported" {
			t.Fatalf("signed x-amz-acl public-read: %v, want 400 AccessControlListNotSupported", err)
		}
		_, err = f.admin().PutObjectAcl(ctx, &s3.PutObjectAclInput{Bucket: aws.String(f.bucket), Key: aws.String("config/x"), ACL: s3types.ObjectCannedACLPublicRead})
		if status, code := sdkError(err); status != 400 || code != "AccessControlListNotSupported" {
			t.Fatalf("PUT ?acl: %v, want 400 AccessControlListNotSupported", err)
		}
		if _, err := f.admin().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(f.bucket), Key: aws.String("devices/dev-a/owned"),
			Body: strings.NewReader("x"), ACL: s3types.ObjectCannedACLBucketOwnerFullControl}); err != nil {
			t.Fatalf("bucket-owner-full-control is the one ACL S3 accepts: %v", err)
		}
	})

	t.Run("a function is authorized against its role policy", func(t *testing.T) {
		if got := f.do(t, http.MethodPut, f.presignPut(t, f.function(), f.bucket, "devices/dev-a/y", 4), nil, "four"); got.Status != 200 {
			t.Fatalf("PUT under devices/: %+v", got)
		}
		want(t, f.do(t, http.MethodPut, f.presignPut(t, f.function(), f.bucket, "config/x", 4), nil, "four"), 403, "AccessDenied")
		_, err := f.function().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(f.bucket)})
		if status, code := sdkError(err); status != 403 || code != "AccessDenied" {
			t.Fatalf("ListObjectsV2 by the function: %v", err)
		}
	})

	t.Run("a header-signed request must be in time, match its signed body hash and use one mechanism", func(t *testing.T) {
		admin := aws.Credentials{AccessKeyID: motoserver.AccessKeyID, SecretAccessKey: motoserver.SecretAccessKey}
		signed := func(t *testing.T, at time.Time, signedBody, sentBody string) *http.Request {
			t.Helper()
			req, err := http.NewRequest(http.MethodPut, f.gate.URL()+"/demo-bucket/devices/dev-a/signed", strings.NewReader(sentBody))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(signedBody))
			req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			if err := v4.NewSigner().SignHTTP(ctx, admin, req, hex.EncodeToString(sum[:]), "s3", motoserver.Region, at); err != nil {
				t.Fatal(err)
			}
			return req
		}
		send := func(t *testing.T, req *http.Request) s3Answer {
			t.Helper()
			resp, err := f.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			a := s3Answer{Status: resp.StatusCode, Body: string(data)}
			_ = xml.Unmarshal(data, &a)
			return a
		}
		if got := send(t, signed(t, time.Now(), "body", "body")); got.Status != 200 {
			t.Fatalf("a well-signed PUT: %+v", got)
		}
		want(t, send(t, signed(t, time.Now().Add(-20*time.Minute), "body", "body")), 403, "RequestTimeTooSkewed")
		want(t, send(t, signed(t, time.Now(), "body", "BODY")), 400, "XAmzContentSHA256Mismatch")
		both := signed(t, time.Now(), "four", "four")
		u, _ := url.Parse(f.presignPut(t, f.function(), f.bucket, "devices/dev-a/signed", 4))
		both.URL.RawQuery = u.RawQuery
		want(t, send(t, both), 400, "InvalidArgument")
	})

	t.Run("the emulator's admin key is the account's root", func(t *testing.T) {
		out, err := f.admin().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(f.bucket)})
		if err != nil || len(out.Contents) < 2 {
			t.Fatalf("admin ListObjectsV2: %v", err)
		}
		get, err := f.admin().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(f.bucket), Key: aws.String("config/x")})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(get.Body)
		get.Body.Close()
		if string(body) != "seed" {
			t.Fatalf("config/x is %q", body)
		}
	})

	// Nothing the refused requests tried reached moto.
	out, err := f.admin().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(f.bucket), Key: aws.String("devices/dev-b/x")})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(body) != "seed" {
		t.Errorf("devices/dev-b/x is %q after the refused writes", body)
	}
}

// TestS3Operation pins the IAM action and resource S3 authorizes a path-style request by.
func TestS3Operation(t *testing.T) {
	cases := []struct{ method, target, bucket, action, resource string }{
		{"GET", "/", "", "s3:ListAllMyBuckets", "*"},
		{"GET", "/b?list-type=2", "b", "s3:ListBucket", "arn:aws:s3:::b"},
		{"HEAD", "/b", "b", "s3:ListBucket", "arn:aws:s3:::b"},
		{"PUT", "/b", "b", "s3:CreateBucket", "arn:aws:s3:::b"},
		{"PUT", "/b?policy", "b", "s3:PutBucketPolicy", "arn:aws:s3:::b"},
		{"DELETE", "/b?policy", "b", "s3:DeleteBucketPolicy", "arn:aws:s3:::b"},
		{"GET", "/b?ownershipControls", "b", "s3:GetBucketOwnershipControls", "arn:aws:s3:::b"},
		{"PUT", "/b?acl", "b", "s3:PutBucketAcl", "arn:aws:s3:::b"},
		{"POST", "/b?delete", "b", "s3:DeleteObject", "arn:aws:s3:::b/*"},
		{"GET", "/b/devices/d/x.txt", "b", "s3:GetObject", "arn:aws:s3:::b/devices/d/x.txt"},
		{"HEAD", "/b/k", "b", "s3:GetObject", "arn:aws:s3:::b/k"},
		{"PUT", "/b/k", "b", "s3:PutObject", "arn:aws:s3:::b/k"},
		{"PUT", "/b/k?acl", "b", "s3:PutObjectAcl", "arn:aws:s3:::b/k"},
		{"DELETE", "/b/k", "b", "s3:DeleteObject", "arn:aws:s3:::b/k"},
		{"POST", "/b/k?uploads", "b", "s3:PutObject", "arn:aws:s3:::b/k"},
		{"DELETE", "/b/k?uploadId=1", "b", "s3:AbortMultipartUpload", "arn:aws:s3:::b/k"},
		{"GET", "/b/a%20b", "b", "s3:GetObject", "arn:aws:s3:::b/a b"},
	}
	for _, c := range cases {
		r, err := http.NewRequest(c.method, "https://localhost"+c.target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, a, res := s3Operation(r); b != c.bucket || a != c.action || res != c.resource {
			t.Errorf("%s %s: %s %s %s, want %s %s %s", c.method, c.target, b, a, res, c.bucket, c.action, c.resource)
		}
	}
}
