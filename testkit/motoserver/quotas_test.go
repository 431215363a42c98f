package motoserver

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// quotaClient is the account's IoT client with the SDK's retries off, so that every throttled answer reaches the
// test; internal adds the header of the emulator's own reads.
func quotaClient(s *Server, internal bool) *iot.Client {
	return iot.New(iot.Options{
		Region: Region, BaseEndpoint: aws.String(s.URL), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	}, func(o *iot.Options) {
		if internal {
			o.APIOptions = append(o.APIOptions, Internal)
		}
	})
}

func startQuotas(t *testing.T, env ...string) (*Server, *iot.Client, string) {
	t.Helper()
	ctx := context.Background()
	s, err := Start(ctx, Options{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c := quotaClient(s, false)
	out, err := c.CreateKeysAndCertificate(ctx, &iot.CreateKeysAndCertificateInput{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ResetQuotas(ctx); err != nil {
		t.Fatal(err)
	}
	return s, c, aws.ToString(out.CertificateId)
}

// throttled reports whether err is AWS IoT's answer over a quota: ThrottlingException, "Rate exceeded", HTTP 400
// as the iot service model declares it.
func throttled(t *testing.T, err error) bool {
	t.Helper()
	var ae smithy.APIError
	if err == nil || !errors.As(err, &ae) || ae.ErrorCode() != "ThrottlingException" {
		return false
	}
	var te *iottypes.ThrottlingException
	var re *smithyhttp.ResponseError
	if !errors.As(err, &te) || ae.ErrorMessage() != "Rate exceeded" || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
		t.Errorf("throttled, but not as AWS IoT answers: %v", err)
	}
	return true
}

// TestQuotaBurstIsThrottled: a burst of DescribeCertificate at the AWS default (10 a second, a bucket of 10) gets
// its first 10 calls through and ThrottlingException for most of the rest, and the figures count both.
func TestQuotaBurstIsThrottled(t *testing.T) {
	ctx := context.Background()
	s, c, id := startQuotas(t)
	const burst, workers = 60, 12
	var mu sync.Mutex
	var ok, limited int
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < burst/workers; i++ {
				_, err := c.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case throttled(t, err):
					limited++
				default:
					t.Errorf("describe certificate: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	st, err := s.Quotas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("burst of %d: %d answered, %d throttled; figures %+v", burst, ok, limited, st)
	if ok < 10 || limited == 0 || ok+limited != burst {
		t.Errorf("burst of %d at 10/s: %d answered, %d throttled; want the bucket's 10 answered and the rest mostly throttled", burst, ok, limited)
	}
	if st.Limits["DescribeCertificate"] != 10 || st.Limits["AttachPolicy"] != 15 || st.Limits["DescribeThing"] != 350 {
		t.Errorf("limits %v, want the AWS defaults", st.Limits)
	}
	if st.Calls["DescribeCertificate"] != ok || st.Throttled["DescribeCertificate"] != limited {
		t.Errorf("figures: calls %d throttled %d, the client saw %d and %d", st.Calls["DescribeCertificate"], st.Throttled["DescribeCertificate"], ok, limited)
	}
	if err := s.ResetQuotas(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Quotas(ctx); err != nil || len(st.Calls)+len(st.Throttled) != 0 {
		t.Errorf("after reset: %+v, %v; want no figures", st, err)
	}
	if _, err := c.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)}); err != nil {
		t.Errorf("describe certificate after reset (the buckets refilled): %v", err)
	}
}

// TestQuotaOverrideAndInternalReads: IOT_QUOTAS and IOT_QUOTA_SCALE set a rate of 2 a second, so the third call of
// a burst is throttled; the emulator's own reads pass an empty bucket uncounted; activation and deletion are dated.
func TestQuotaOverrideAndInternalReads(t *testing.T) {
	ctx := context.Background()
	s, c, id := startQuotas(t, contract.EnvIoTQuotas+`={"DescribeCertificate": 20, "UpdateCertificate": 100, "DeleteCertificate": 100, "UpdateThing": 0}`, contract.EnvIoTQuotaScale+"=0.1")
	in := &iot.DescribeCertificateInput{CertificateId: aws.String(id)}
	for i := 1; i <= 3; i++ {
		_, err := c.DescribeCertificate(ctx, in)
		if i < 3 && err != nil {
			t.Fatalf("call %d of a burst at 2/s: %v", i, err)
		}
		if i == 3 && !throttled(t, err) {
			t.Fatalf("call 3 of a burst at 2/s: %v, want ThrottlingException", err)
		}
	}
	if _, err := quotaClient(s, true).DescribeCertificate(ctx, in); err != nil {
		t.Errorf("the emulator's own read on an empty bucket: %v", err)
	}
	st, err := s.Quotas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Limits["DescribeCertificate"] != 2 || st.Limits["CreateThing"] != 10 {
		t.Errorf("limits %v: want DescribeCertificate 20×0.1 = 2, CreateThing 100×0.1 = 10", st.Limits)
	}
	if _, lifted := st.Limits["UpdateThing"]; lifted {
		t.Errorf("UpdateThing has a limit %v; IOT_QUOTAS set it to 0, which lifts it", st.Limits["UpdateThing"])
	}
	if st.Calls["DescribeCertificate"] != 2 || st.Throttled["DescribeCertificate"] != 1 {
		t.Errorf("figures calls %v throttled %v: want 2 and 1 (the internal read not counted)", st.Calls, st.Throttled)
	}

	for _, status := range []iottypes.CertificateStatus{iottypes.CertificateStatusActive, iottypes.CertificateStatusInactive} {
		if _, err := c.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: status}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String("0" + id[1:])})
	var nf *iottypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("delete an unknown certificate: %v, want ResourceNotFoundException", err)
	}
	if st, err = s.Quotas(ctx); err != nil {
		t.Fatal(err)
	}
	if len(st.Activated) != 1 || st.Activated[id] == 0 || len(st.Deleted) != 1 || st.Deleted[id] < st.Activated[id] {
		t.Errorf("activated %v deleted %v: want %s activated, then deleted (failed calls not dated)", st.Activated, st.Deleted, id)
	}
	if st.Calls["UpdateCertificate"] != 2 || st.Calls["DeleteCertificate"] != 2 {
		t.Errorf("calls %v: want UpdateCertificate 2, DeleteCertificate 2", st.Calls)
	}
}

// TestQuotasOff: IOT_QUOTAS_OFF=1 lifts every quota; calls are still counted.
func TestQuotasOff(t *testing.T) {
	ctx := context.Background()
	s, c, id := startQuotas(t, contract.EnvIoTQuotasOff+"=1")
	for i := 0; i < 15; i++ {
		if _, err := c.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)}); err != nil {
			t.Fatalf("call %d with the quotas off: %v", i+1, err)
		}
	}
	st, err := s.Quotas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Limits) != 0 || st.Calls["DescribeCertificate"] != 15 {
		t.Errorf("limits %v calls %v: want none and 15", st.Limits, st.Calls)
	}
}

// TestTokenBucketModel drives quotas.py's bucket on a fake clock (no wall time): a new bucket holds one second of
// its rate, refills at the rate, and never holds more than one second of it however long it idles.
func TestTokenBucketModel(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	python, err := pythonPath(root, "")
	if err != nil {
		t.Fatal(err)
	}
	const script = `
import quotas
now = [100.0]
q = quotas.Quotas({"DescribeCertificate": 10, "UpdateThing": 0}, clock=lambda: now[0])
def burst(n):
    return sum(q.admit("123456789012", "us-east-1", "DescribeCertificate") for _ in range(n))
got = [burst(25)]          # a fresh bucket: 10
now[0] += 0.5; got.append(burst(25))   # half a second: 5
now[0] += 3600; got.append(burst(25))  # an idle hour: still 10, the cap
got.append(q.admit("210987654321", "us-east-1", "DescribeCertificate"))  # another account: its own bucket
got.append(sum(q.admit("123456789012", "us-east-1", "UpdateThing") for _ in range(500)))  # 0 lifts the quota
print(got, q.snapshot()["calls"], q.snapshot()["throttled"])
`
	cmd := exec.Command(python, "-c", script)
	cmd.Dir = filepath.Join(root, "testkit", "moto")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run the bucket model: %v\n%s", err, out)
	}
	const want = "[10, 5, 10, True, 500] {'DescribeCertificate': 26, 'UpdateThing': 500} {'DescribeCertificate': 50}\n"
	if string(out) != want {
		t.Errorf("bucket model: got %q, want %q", out, want)
	}
}
