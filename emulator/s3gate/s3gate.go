package s3gate

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// S3Gate stands in front of moto's S3 and authenticates and authorizes every request as S3 does, which moto does
// not: a request signed with SigV4 (a presigned URL or an Authorization header) must come from a known access key
// (a function's own, or the emulator's admin key motoserver.AccessKeyID, which acts as the account's root user),
// carry a matching signature (so a PUT whose Content-Length differs from the signed one is refused), sign every
// x-amz-* header it sends and be used before it expires; the caller must then be allowed the action by its role
// policy (functions) and by the bucket policy (an explicit Deny wins; an unsigned request gets only what the
// bucket policy grants Principal "*"); and ACL headers are refused when the bucket has ACLs disabled. What passes
// is proxied to moto unchanged.
type S3Gate struct {
	srv      *http.Server
	addr     string
	keys     *identity.Registry
	timeline *timeline.Timeline
	mu       sync.Mutex
	skew     time.Duration          // added to the clock: tests age URLs past their expiry without waiting
	expire   int                    // the next presigned requests judged as if their URL had expired (tests)
	buckets  map[string]BucketRules // by bucket name (ApplyTemplate); others get defaultBucketRules
}

// StartS3Gate listens with TLS (cert, the emulator's server certificate, as S3 serves HTTPS only to devices that
// check it) on a free loopback port and proxies to moto at motoURL.
func StartS3Gate(motoURL string, cert tls.Certificate, keys *identity.Registry, tl *timeline.Timeline) (*S3Gate, error) {
	target, err := url.Parse(motoURL)
	if err != nil {
		return nil, fmt.Errorf("moto URL: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	g := &S3Gate{addr: l.Addr().String(), keys: keys, timeline: tl}
	proxy := httputil.NewSingleHostReverseProxy(target)
	g.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rej := g.check(r); rej != nil {
			g.timeline.Event("s3", "%s %s refused: %s (%s)", r.Method, r.URL.Path, rej.Code, rej.Message)
			writeS3Error(w, rej)
			return
		}
		proxy.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = g.srv.Serve(l) }()
	return g, nil
}

// URL is the gate's base URL, the S3 endpoint the functions sign for: https on the host name of the emulator's
// server certificate, so the C device app checks it as it checks S3.
func (g *S3Gate) URL() string {
	_, port, _ := net.SplitHostPort(g.addr)
	return "https://localhost:" + port
}

// Advance moves the gate's clock forward (tests: an expired URL without waiting for it).
func (g *S3Gate) Advance(d time.Duration) {
	g.mu.Lock()
	g.skew += d
	g.mu.Unlock()
}

// ExpireNext judges the next n presigned requests as if their URL had expired before use (tests: a device that
// used its URL too late must ask for a new one).
func (g *S3Gate) ExpireNext(n int) {
	g.mu.Lock()
	g.expire = n
	g.mu.Unlock()
}

func (g *S3Gate) expiredForTest() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.expire > 0 {
		g.expire--
		return true
	}
	return false
}

func (g *S3Gate) now() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return time.Now().Add(g.skew)
}

// Close stops the gate.
func (g *S3Gate) Close() error { return g.srv.Close() }

// s3Refusal is S3's error answer to a request it refuses: status, code, message and the extra elements S3 adds
// for some codes.
type s3Refusal struct {
	Status           int
	Code             string
	Message          string
	AWSAccessKeyID   string // InvalidAccessKeyId, SignatureDoesNotMatch
	HeadersNotSigned string // AccessDenied for unsigned x-amz-* headers
	ArgumentName     string // InvalidArgument
	ArgumentValue    string
}

// check returns S3's answer to a request S3 would refuse, or nil to let it through: authentication, then
// authorization against the role and bucket policies, then the bucket's ACL settings.
func (g *S3Gate) check(r *http.Request) *s3Refusal {
	caller, rej := g.authenticate(r)
	if rej != nil {
		return rej
	}
	bucket, action, resource := s3Operation(r)
	rules := g.bucketRules(bucket)
	if rej := rules.authorize(caller, action, resource); rej != nil {
		return rej
	}
	return rules.checkACL(r)
}

func (g *S3Gate) bucketRules(bucket string) BucketRules {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.buckets[bucket]; ok {
		return b
	}
	return defaultBucketRules
}

// maxSkew is how far the time of a request signed in its Authorization header may be from S3's clock.
const maxSkew = 15 * time.Minute

// authenticate identifies the signer of r as S3 does: no signature is an anonymous caller; any signature must be
// well formed, by a known key, match the request, sign every x-amz-* header sent and be in time.
func (g *S3Gate) authenticate(r *http.Request) (s3Caller, *s3Refusal) {
	q := r.URL.Query()
	presigned := q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential")
	auth := r.Header.Get("Authorization")
	switch {
	case presigned && auth != "":
		return s3Caller{}, &s3Refusal{Status: http.StatusBadRequest, Code: "InvalidArgument",
			Message:      "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
			ArgumentName: "Authorization", ArgumentValue: auth}
	case !presigned && auth == "" && q.Has("AWSAccessKeyId") && q.Has("Signature"), strings.HasPrefix(auth, "AWS "):
		return s3Caller{}, &s3Refusal{Status: http.StatusBadRequest, Code: "InvalidRequest",
			Message: "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."}
	case !presigned && auth == "":
		return s3Caller{Anonymous: true}, nil
	case auth != "" && !strings.HasPrefix(auth, identity.SigV4Algorithm+" "):
		return s3Caller{}, &s3Refusal{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: "Unsupported Authorization Type",
			ArgumentName: "Authorization", ArgumentValue: auth}
	}
	a, _, err := identity.ParseSigV4(r)
	if err != nil {
		if presigned {
			return s3Caller{}, &s3Refusal{Status: http.StatusBadRequest, Code: "AuthorizationQueryParametersError", Message: err.Error()}
		}
		return s3Caller{}, &s3Refusal{Status: http.StatusBadRequest, Code: "AuthorizationHeaderMalformed", Message: "The authorization header is malformed; " + err.Error()}
	}
	var caller s3Caller
	var secret string
	if a.AccessKeyID == motoserver.AccessKeyID {
		caller, secret = s3Caller{Admin: true}, motoserver.SecretAccessKey
	} else if pr, ok := g.keys.Lookup(a.AccessKeyID); ok {
		caller, secret = s3Caller{Function: pr}, pr.Secret()
	} else {
		return s3Caller{}, &s3Refusal{Status: http.StatusForbidden, Code: "InvalidAccessKeyId",
			Message: "The AWS Access Key Id you provided does not exist in our records.", AWSAccessKeyID: a.AccessKeyID}
	}
	if unsigned := unsignedHeaders(r, a.SignedHeaders); unsigned != "" {
		return s3Caller{}, &s3Refusal{Status: http.StatusForbidden, Code: "AccessDenied",
			Message: "There were headers present in the request which were not signed", HeadersNotSigned: unsigned}
	}
	payloadHash := "UNSIGNED-PAYLOAD"
	if !a.Presigned {
		if payloadHash = r.Header.Get("X-Amz-Content-Sha256"); payloadHash == "" {
			return s3Caller{}, &s3Refusal{Status: http.StatusBadRequest, Code: "InvalidRequest", Message: "Missing required header for this request: x-amz-content-sha256"}
		}
	} else if h := q.Get("X-Amz-Content-Sha256"); h != "" {
		payloadHash = h
	}
	if err := a.Verify(r, secret, payloadHash, false); err != nil {
		return s3Caller{}, &s3Refusal{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch",
			Message: "The request signature we calculated does not match the signature you provided. Check your key and signing method.", AWSAccessKeyID: a.AccessKeyID}
	}
	now := g.now()
	if a.Presigned && (now.After(a.Date.Add(a.Expires)) || g.expiredForTest()) {
		return s3Caller{}, &s3Refusal{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Request has expired"}
	}
	if !a.Presigned && (now.Sub(a.Date) > maxSkew || a.Date.Sub(now) > maxSkew) {
		return s3Caller{}, &s3Refusal{Status: http.StatusForbidden, Code: "RequestTimeTooSkewed",
			Message: "The difference between the request time and the current time is too large."}
	}
	if rej := checkPayloadHash(r, payloadHash); rej != nil {
		return s3Caller{}, rej
	}
	return caller, nil
}

// unsignedHeaders lists, comma-separated, the headers S3 requires signed that the signature leaves out: host and
// every x-amz-* header sent.
func unsignedHeaders(r *http.Request, signed []string) string {
	in := map[string]bool{}
	for _, h := range signed {
		in[h] = true
	}
	var out []string
	if !in["host"] {
		out = append(out, "host")
	}
	for name := range r.Header {
		if h := strings.ToLower(name); strings.HasPrefix(h, "x-amz-") && !in[h] {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// checkPayloadHash compares a signed body hash with the body (the signature covers the header, not the body).
func checkPayloadHash(r *http.Request, payloadHash string) *s3Refusal {
	if len(payloadHash) != 64 || strings.Trim(payloadHash, "0123456789abcdef") != "" || r.Body == nil {
		return nil // UNSIGNED-PAYLOAD or a streaming mode: nothing to compare here
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return &s3Refusal{Status: http.StatusBadRequest, Code: "IncompleteBody", Message: "You did not provide the number of bytes specified by the Content-Length HTTP header"}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != payloadHash {
		return &s3Refusal{Status: http.StatusBadRequest, Code: "XAmzContentSHA256Mismatch", Message: "The provided 'x-amz-content-sha256' header does not match what was computed."}
	}
	return nil
}

func writeS3Error(w http.ResponseWriter, rej *s3Refusal) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(rej.Status)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName          xml.Name `xml:"Error"`
		Code             string   `xml:"Code"`
		Message          string   `xml:"Message"`
		AWSAccessKeyID   string   `xml:"AWSAccessKeyId,omitempty"`
		HeadersNotSigned string   `xml:"HeadersNotSigned,omitempty"`
		ArgumentName     string   `xml:"ArgumentName,omitempty"`
		ArgumentValue    string   `xml:"ArgumentValue,omitempty"`
	}{Code: rej.Code, Message: rej.Message, AWSAccessKeyID: rej.AWSAccessKeyID, HeadersNotSigned: rej.HeadersNotSigned,
		ArgumentName: rej.ArgumentName, ArgumentValue: rej.ArgumentValue})
}
