package s3gate

import (
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// S3Gate stands in front of moto's S3 for the presigned URLs the functions sign, and enforces what S3 enforces
// and moto does not: the SigV4 signature (so a PUT whose Content-Length differs from the signed one is refused),
// the expiry, and the signer's IAM permission on the object (a presigned URL acts as its signer). Requests it lets
// through, and requests that are not presigned, are proxied to moto unchanged.
type S3Gate struct {
	srv      *http.Server
	addr     string
	keys     *identity.Registry
	timeline *timeline.Timeline
	mu       sync.Mutex
	skew     time.Duration // added to the clock: tests age URLs past their expiry without waiting
	expire   int           // the next presigned requests judged as if their URL had expired (tests)
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
		if code, msg := g.check(r); code != "" {
			g.timeline.Event("s3", "%s %s refused: %s (%s)", r.Method, r.URL.Path, code, msg)
			writeS3Error(w, http.StatusForbidden, code, msg)
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

// check returns S3's error code and message for a presigned request S3 would refuse, or "" to let it through.
func (g *S3Gate) check(r *http.Request) (code, msg string) {
	if r.URL.Query().Get("X-Amz-Signature") == "" {
		return "", ""
	}
	a, _, err := identity.ParseSigV4(r)
	if err != nil {
		return "AuthorizationQueryParametersError", err.Error()
	}
	pr, ok := g.keys.Lookup(a.AccessKeyID)
	if !ok {
		// Not one of the functions the emulator runs (a test or tool signing with moto's keys): moto's leniency.
		return "", ""
	}
	if err := a.Verify(r, pr.Secret(), "UNSIGNED-PAYLOAD", false); err != nil {
		return "SignatureDoesNotMatch", err.Error()
	}
	if g.now().After(a.Date.Add(a.Expires)) || g.expiredForTest() {
		return "AccessDenied", "Request has expired"
	}
	action := map[string]string{http.MethodPut: "s3:PutObject", http.MethodGet: "s3:GetObject", http.MethodHead: "s3:GetObject"}[r.Method]
	resource := "arn:aws:s3:::" + strings.TrimPrefix(r.URL.Path, "/")
	if action == "" || !policy.Allowed(policy.Request{Action: action, Resource: resource}, pr.Policy) {
		return "AccessDenied", fmt.Sprintf("%s is not authorized to perform %s on %s (its role policy)", pr.Function, action, resource)
	}
	return "", ""
}

func writeS3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName xml.Name `xml:"Error"`
		Code    string   `xml:"Code"`
		Message string   `xml:"Message"`
	}{Code: code, Message: msg})
}
