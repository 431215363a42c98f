// Package dataplane is the emulator's AWS IoT data endpoint (HTTPS Publish), which moto does not serve: it checks
// the caller's SigV4 signature and its role, then publishes into the broker.
package dataplane

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// Endpoint is the emulator's AWS IoT data endpoint for the functions' HTTPS Publish calls
// (POST /topics/{topic}?qos=N, SigV4 service iotdata), served over TLS with the broker's certificate. moto's
// iot-data Publish only records the message, so the emulator serves the endpoint itself: it checks the caller's
// signature and its role's iot:Publish on the topic ARN, then publishes into the broker as AWS IoT does.
type Endpoint struct {
	srv      *http.Server
	addr     string
	keys     *identity.Registry
	region   string
	account  string
	timeline *timeline.Timeline
	mu       sync.Mutex
	publish  func(topic string, payload []byte) error
}

// Start listens on a free loopback port with the given TLS certificate.
func Start(cert tls.Certificate, keys *identity.Registry, region, account string, tl *timeline.Timeline) (*Endpoint, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	d := &Endpoint{addr: l.Addr().String(), keys: keys, region: region, account: account, timeline: tl}
	d.srv = &http.Server{Handler: http.HandlerFunc(d.serve), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = d.srv.Serve(tls.NewListener(l, d.srv.TLSConfig)) }()
	return d, nil
}

// Addr is host:port, what the stack's IoT endpoint lookup resolves to in the emulator.
func (d *Endpoint) Addr() string { return d.addr }

// Deliver sets where accepted messages go (the broker, which starts after the deployment).
func (d *Endpoint) Deliver(publish func(topic string, payload []byte) error) {
	d.mu.Lock()
	d.publish = publish
	d.mu.Unlock()
}

// Close stops the endpoint.
func (d *Endpoint) Close() error { return d.srv.Close() }

func (d *Endpoint) serve(w http.ResponseWriter, r *http.Request) {
	rawTopic, ok := strings.CutPrefix(r.URL.EscapedPath(), "/topics/")
	if r.Method != http.MethodPost || !ok {
		http.Error(w, `{"message":"only POST /topics/{topic} is served"}`, http.StatusMethodNotAllowed)
		return
	}
	topic, err := url.PathUnescape(rawTopic)
	body, rerr := io.ReadAll(io.LimitReader(r.Body, 128<<10))
	if err != nil || rerr != nil || topic == "" {
		http.Error(w, `{"message":"bad topic or body"}`, http.StatusBadRequest)
		return
	}
	a, signed, err := identity.ParseSigV4(r)
	if !signed || err != nil {
		http.Error(w, `{"message":"missing or malformed SigV4 authentication"}`, http.StatusForbidden)
		return
	}
	pr, ok := d.keys.Lookup(a.AccessKeyID)
	if !ok {
		http.Error(w, `{"message":"unknown access key"}`, http.StatusForbidden)
		return
	}
	sum := sha256.Sum256(body)
	if err := a.Verify(r, pr.Secret(), hex.EncodeToString(sum[:]), true); err != nil {
		http.Error(w, `{"message":"signature does not match"}`, http.StatusForbidden)
		return
	}
	arn := fmt.Sprintf("arn:aws:iot:%s:%s:topic/%s", d.region, d.account, topic)
	if !policy.Allowed(policy.Request{Action: "iot:Publish", Resource: arn}, pr.Policy) {
		d.timeline.Event("iot-data", "publish by %s on %s refused: its role does not allow iot:Publish there", pr.Function, topic)
		http.Error(w, `{"message":"not authorized to perform iot:Publish on `+arn+`"}`, http.StatusForbidden)
		return
	}
	d.mu.Lock()
	publish := d.publish
	d.mu.Unlock()
	if publish == nil || publish(topic, body) != nil {
		http.Error(w, `{"message":"broker unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("{}"))
}
