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

// TestFleetScope: with scope "fleet" a device gets a GET of fleet/<name>, the same object for every device, with
// the same name rules and expiry as its own objects; it can never get a PUT there, and a scope it does not know is
// refused naming the field rather than read as its own prefix.
func TestFleetScope(t *testing.T) {
	cases := []struct {
		name    string
		e       Event
		key     string // the key of an accepted request
		naming  string // what the reason of a refused one names
		refuses string // and what else it says
	}{
		{name: "GET of the fleet file", e: Event{Operation: "GET", Scope: "fleet", Name: "notice.txt"}, key: "fleet/notice.txt"},
		{name: "GET under a folder", e: Event{Operation: "GET", Scope: "fleet", Name: "fw/v2/notes.txt"}, key: "fleet/fw/v2/notes.txt"},
		{name: "explicit device scope", e: Event{Operation: "GET", Scope: "", Name: "notice.txt"}, key: "devices/" + thing + "/notice.txt"},
		{name: "PUT", e: Event{Operation: "PUT", Scope: "fleet", Name: "notice.txt", ContentLength: n(5)}, naming: "scope", refuses: "read-only"},
		{name: "PUT without a length", e: Event{Operation: "PUT", Scope: "fleet", Name: "notice.txt"}, naming: "contentLength"},
		{name: "unknown operation", e: Event{Operation: "DELETE", Scope: "fleet", Name: "notice.txt"}, naming: "operation"},
		{name: "GET with a length", e: Event{Operation: "GET", Scope: "fleet", Name: "notice.txt", ContentLength: n(5)}, naming: "contentLength"},
		{name: "into a device's prefix", e: Event{Operation: "GET", Scope: "fleet", Name: "../devices/" + thing + "/x"}, naming: "name", refuses: ".."},
		{name: "leading slash", e: Event{Operation: "GET", Scope: "fleet", Name: "/notice.txt"}, naming: "name", refuses: "start or end with /"},
		{name: "empty segment", e: Event{Operation: "GET", Scope: "fleet", Name: "a//b"}, naming: "name"},
		{name: "empty name", e: Event{Operation: "GET", Scope: "fleet", Name: ""}, naming: "name"},
		{name: "too long", e: Event{Operation: "GET", Scope: "fleet", Name: strings.Repeat("a", MaxNameLength+1)}, naming: "name", refuses: "longer"},
		{name: "longest name", e: Event{Operation: "GET", Scope: "fleet", Name: strings.Repeat("a", MaxNameLength)}, key: "fleet/" + strings.Repeat("a", MaxNameLength)},
		{name: "capitalised scope", e: Event{Operation: "GET", Scope: "Fleet", Name: "notice.txt"}, naming: "scope"},
		{name: "scope with the slash", e: Event{Operation: "GET", Scope: "fleet/", Name: "notice.txt"}, naming: "scope"},
		{name: "devices scope", e: Event{Operation: "PUT", Scope: "devices", Name: "x", ContentLength: n(5)}, naming: "scope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, out, _ := newTestHandler(t, nil)
			c.e.Thing, c.e.ClientToken = thing, "tok-f"
			if err := h.Handle(context.Background(), c.e); err != nil {
				t.Fatal(err)
			}
			if len(*out) != 1 {
				t.Fatalf("published %d answers, want 1", len(*out))
			}
			var r contract.S3URLReply
			if err := json.Unmarshal((*out)[0].payload, &r); err != nil {
				t.Fatal(err)
			}
			if r.ClientToken != "tok-f" {
				t.Errorf("clientToken %q not echoed", r.ClientToken)
			}
			if c.key == "" {
				if (*out)[0].topic != contract.S3URLReplyTopic("devices", thing, contract.ReplyRejected) || r.URL != "" {
					t.Fatalf("answered on %s with %+v, want a rejection", (*out)[0].topic, r)
				}
				if !strings.Contains(r.Reason, c.naming) || !strings.Contains(r.Reason, c.refuses) {
					t.Errorf("reason %q, want one naming %s and saying %q", r.Reason, c.naming, c.refuses)
				}
				return
			}
			if (*out)[0].topic != contract.S3URLReplyTopic("devices", thing, contract.ReplyAccepted) {
				t.Fatalf("answered on %s with %+v, want accepted", (*out)[0].topic, r)
			}
			if r.Key != c.key || r.Method != "GET" || r.ContentLength != 0 || r.ExpiresAt != 1_800_000_000+15*60 {
				t.Errorf("reply %+v, want a GET of %s expiring with the device's own URLs", r, c.key)
			}
			u, err := url.Parse(r.URL)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(u.Path, "/"+c.key) || u.Query().Get("X-Amz-Expires") != "900" {
				t.Errorf("URL %s: not a 900 s URL of %s", r.URL, c.key)
			}
		})
	}
}
