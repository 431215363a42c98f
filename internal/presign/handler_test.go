package presign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

const thing = "0a1b2c"

type published struct {
	topic   string
	payload []byte
}

type publishFunc func(ctx context.Context, topic string, payload []byte) error

func (f publishFunc) Publish(ctx context.Context, topic string, payload []byte) error {
	return f(ctx, topic, payload)
}

// newTestHandler signs with the real S3 presign client (static credentials, no network) and records what it publishes.
func newTestHandler(t *testing.T, pubErr error) (*Handler, *[]published, *bytes.Buffer) {
	t.Helper()
	client := s3.New(s3.Options{
		Region:                     "eu-west-1",
		Credentials:                credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
	var out []published
	pub := publishFunc(func(_ context.Context, topic string, payload []byte) error {
		if pubErr != nil {
			return pubErr
		}
		out = append(out, published{topic, payload})
		return nil
	})
	metrics := &bytes.Buffer{}
	now := time.Unix(1_800_000_000, 0)
	h := NewHandler(s3.NewPresignClient(client), pub, Config{
		Bucket: "demo-bucket", TopicRoot: "devices", MaxPutBytes: 1 << 20, Expiry: 15 * time.Minute, ProvisionedBy: "SphereJitr",
	}, WithClock(func() time.Time { return now }), WithMetricsOutput(metrics))
	return h, &out, metrics
}

func n(v int64) *int64 { return &v }

func TestAcceptedPutIsSignedForItsLengthAndPrefix(t *testing.T) {
	h, out, metrics := newTestHandler(t, nil)
	err := h.Handle(context.Background(), Event{Thing: thing, Operation: "PUT", Name: "logs/hello.txt", ContentLength: n(42), ClientToken: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(*out) != 1 || (*out)[0].topic != "devices/"+thing+"/s3/url/accepted" {
		t.Fatalf("published %+v", *out)
	}
	var r contract.S3URLReply
	if err := json.Unmarshal((*out)[0].payload, &r); err != nil {
		t.Fatal(err)
	}
	if r.Key != "devices/"+thing+"/logs/hello.txt" || r.Method != "PUT" || r.ContentLength != 42 || r.ClientToken != "t1" {
		t.Errorf("reply %+v", r)
	}
	if r.ExpiresAt != 1_800_000_000+15*60 {
		t.Errorf("expiresAt %d", r.ExpiresAt)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if signed := strings.Split(q.Get("X-Amz-SignedHeaders"), ";"); !contains(signed, "content-length") {
		t.Errorf("X-Amz-SignedHeaders %v: content-length is not signed, S3 would take any size", signed)
	}
	if q.Get("X-Amz-Expires") != "900" {
		t.Errorf("X-Amz-Expires %q, want 900", q.Get("X-Amz-Expires"))
	}
	if !strings.Contains(u.Path, "/devices/"+thing+"/logs/hello.txt") {
		t.Errorf("URL path %s", u.Path)
	}
	for k := range q {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-checksum") || strings.HasPrefix(strings.ToLower(k), "x-amz-sdk-checksum") {
			t.Errorf("URL carries %s: the device would have to send a checksum", k)
		}
	}
	if !strings.Contains(metrics.String(), `"UrlIssued":1`) {
		t.Errorf("metrics %s", metrics)
	}
}

func TestAcceptedGet(t *testing.T) {
	h, out, _ := newTestHandler(t, nil)
	if err := h.Handle(context.Background(), Event{Thing: thing, Operation: "GET", Name: "hello.txt"}); err != nil {
		t.Fatal(err)
	}
	var r contract.S3URLReply
	_ = json.Unmarshal((*out)[0].payload, &r)
	if (*out)[0].topic != "devices/"+thing+"/s3/url/accepted" || r.Method != "GET" || r.ContentLength != 0 || r.URL == "" {
		t.Errorf("%s %+v", (*out)[0].topic, r)
	}
}

func TestRefusedRequestsAreAnsweredOnRejected(t *testing.T) {
	cases := map[string]Event{
		"parent segment":     {Operation: "GET", Name: "../other/hello.txt"},
		"inner parent":       {Operation: "GET", Name: "a/../../b"},
		"leading slash":      {Operation: "GET", Name: "/hello.txt"},
		"trailing slash":     {Operation: "GET", Name: "dir/"},
		"empty segment":      {Operation: "GET", Name: "a//b"},
		"dot segment":        {Operation: "GET", Name: "./b"},
		"empty name":         {Operation: "GET", Name: ""},
		"space":              {Operation: "GET", Name: "a b"},
		"percent":            {Operation: "GET", Name: "a%2F..%2Fb"},
		"backslash":          {Operation: "GET", Name: `..\b`},
		"too long":           {Operation: "GET", Name: strings.Repeat("a", MaxNameLength+1)},
		"PUT without length": {Operation: "PUT", Name: "x"},
		"PUT over the cap":   {Operation: "PUT", Name: "x", ContentLength: n(1<<20 + 1)},
		"PUT of zero bytes":  {Operation: "PUT", Name: "x", ContentLength: n(0)},
		"GET with a length":  {Operation: "GET", Name: "x", ContentLength: n(5)},
		"unknown operation":  {Operation: "DELETE", Name: "x"},
		"lower-case op":      {Operation: "put", Name: "x", ContentLength: n(1)},
		"token with a quote": {Operation: "GET", Name: "x", ClientToken: `a"b`},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			h, out, _ := newTestHandler(t, nil)
			e.Thing = thing
			e.ClientToken = strings.TrimSpace(e.ClientToken)
			if err := h.Handle(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			if len(*out) != 1 || (*out)[0].topic != "devices/"+thing+"/s3/url/rejected" {
				t.Fatalf("published %+v", *out)
			}
			var r contract.S3URLReply
			_ = json.Unmarshal((*out)[0].payload, &r)
			if r.Reason == "" || r.URL != "" {
				t.Errorf("reply %+v", r)
			}
		})
	}
}

func TestKeysStayUnderTheThingPrefix(t *testing.T) {
	for _, name := range []string{"a", "a/b/c.txt", "x..y", "...a", "a.b-c_d"} {
		key, err := ObjectKey(thing, name)
		if err != nil {
			t.Errorf("%q refused: %v", name, err)
			continue
		}
		if !strings.HasPrefix(key, "devices/"+thing+"/") || strings.Contains("/"+key+"/", "/../") {
			t.Errorf("%q → %q escapes the prefix", name, key)
		}
	}
}

func TestNoThingNoAnswer(t *testing.T) {
	for _, th := range []string{"", "a/b", "+", "#", strings.Repeat("a", 129)} {
		h, out, metrics := newTestHandler(t, nil)
		if err := h.Handle(context.Background(), Event{Thing: th, Operation: "GET", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		if len(*out) != 0 || !strings.Contains(metrics.String(), MetricDropped) {
			t.Errorf("thing %q: published %+v", th, *out)
		}
	}
}

func TestPublishFailureIsAnError(t *testing.T) {
	h, _, _ := newTestHandler(t, errors.New("HTTP 503"))
	err := h.Handle(context.Background(), Event{Thing: thing, Operation: "GET", Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "publish answer to devices/"+thing+"/s3/url/accepted") {
		t.Fatalf("error %v", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	good := map[string]string{
		contract.EnvBucketName: "b", contract.EnvDeviceTopicRoot: "devices", contract.EnvProvisionedBy: "SphereJitr",
		contract.EnvPresignMaxBytes: "1048576", contract.EnvPresignExpirySec: "900",
	}
	cfg, err := ConfigFromEnv(func(k string) string { return good[k] })
	if err != nil || cfg.MaxPutBytes != 1<<20 || cfg.Expiry != 15*time.Minute || cfg.Bucket != "b" {
		t.Fatalf("%+v %v", cfg, err)
	}
	for k, bad := range map[string]string{
		contract.EnvBucketName: "", contract.EnvPresignMaxBytes: "0", contract.EnvPresignExpirySec: "30",
		contract.EnvDeviceTopicRoot: "a/b",
	} {
		env := map[string]string{}
		for kk, v := range good {
			env[kk] = v
		}
		env[k] = bad
		if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: error %v", k, bad, err)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, e := range xs {
		if e == x {
			return true
		}
	}
	return false
}
