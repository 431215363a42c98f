// Package fleet simulates Azure Sphere MT3620 devices against AWS IoT Core (or the local emulator): each boot makes a
// new key and certificate with the device ID as CN, the device connects with just-in-time-registration retries
// (exponential backoff, full jitter), then does what the device app does: telemetry on its own topics, a shadow
// update and read, an upload and a download through presigned S3 URLs it asks for over MQTT at run time.
package devicesim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// Backoff is the device's reconnect policy: exponential from Base up to Max, full jitter.
type Backoff struct {
	Base, Max time.Duration
}

// Delay returns the wait before retry number attempt (1 for the first retry).
func (b Backoff) Delay(attempt int) time.Duration {
	ceiling := b.Base << min(attempt-1, 20)
	if ceiling > b.Max || ceiling <= 0 {
		ceiling = b.Max
	}
	return time.Duration(rand.Int64N(int64(ceiling))) + b.Base/4
}

// DefaultTopicRoot is the topic root of a device whose Config names none: the stack's default
// (infra.DefaultTopicRoot, which TestTopicsAreTheProducts pins it to), so a simulator run without the stack's
// outputs still publishes where the device policy allows.
const DefaultTopicRoot = contract.DefaultDeviceTopicRoot

// Config is what every simulated device is given.
type Config struct {
	Endpoint       string         // host:port of the MQTT broker
	ServerCAs      *x509.CertPool // trust anchors for the broker (Amazon roots in AWS)
	ServerName     string         // TLS name of the broker; default the endpoint host
	TopicRoot      string         // first level of the device's own topics; default DefaultTopicRoot
	S3             bool           // upload and download devices/<thing>/hello.txt through runtime URLs asked for over MQTT
	URLTimeout     time.Duration  // how long to wait for an answer to a URL request; default 5 s
	Backoff        Backoff        // default 250 ms .. 4 s
	MaxAttempts    int            // connect attempts per boot; default 40
	ConnectTimeout time.Duration  // default 10 s
	Timeline       *timeline.Timeline
}

// Device is one simulated MT3620.
type Device struct {
	Name  string // for people: device-1, device-2, ...
	ID    string // Azure Sphere device ID, upper case as in the certificate CN
	Thing string // thing name = MQTT client id = lower-case device ID

	cfg      Config
	ca       *testpki.Pair
	cert     *testpki.Pair
	history  []*testpki.Pair
	boots    int
	lastNB   time.Time
	client   paho.Client
	mu       sync.Mutex
	replies  map[string]chan []byte
	Sessions []Session // one per boot that connected
}

// Session records one boot's connection, for the timeline and the benchmark.
type Session struct {
	Boot          int
	CertificateID string
	FirstAttempt  time.Time
	Connected     time.Time
	Attempts      int
}

// NewDevice returns a device with a fresh device ID whose certificates the tenant CA issues.
func NewDevice(name string, ca *testpki.Pair, cfg Config) *Device {
	if cfg.TopicRoot == "" {
		cfg.TopicRoot = DefaultTopicRoot
	}
	if cfg.Backoff.Base == 0 {
		cfg.Backoff = Backoff{Base: 250 * time.Millisecond, Max: 4 * time.Second}
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 40
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.URLTimeout == 0 {
		cfg.URLTimeout = 5 * time.Second
	}
	id := testpki.RandomDeviceID()
	thing, _ := azsphere.ThingName(id)
	return &Device{Name: name, ID: id, Thing: thing, cfg: cfg, ca: ca, replies: map[string]chan []byte{}}
}

// Certificate is the device's current certificate and key.
func (d *Device) Certificate() *testpki.Pair { return d.cert }

// SetMaxAttempts changes the connect attempts per boot (Config.MaxAttempts) from the next Connect on, and returns
// what it was.
func (d *Device) SetMaxAttempts(n int) (previous int) {
	previous, d.cfg.MaxAttempts = d.cfg.MaxAttempts, n
	return previous
}

// Certificates are the certificates of every boot so far, oldest first.
func (d *Device) Certificates() []*testpki.Pair { return d.history }

// Boot is what the OS does at every boot: a new key pair and certificate, same CN. NotBefore strictly increases
// from one boot to the next (whole seconds, as in X.509), so the newest certificate is always identifiable.
func (d *Device) Boot() error {
	nb := time.Now().Add(-time.Second).Truncate(time.Second)
	if !nb.After(d.lastNB) {
		wait := time.Until(d.lastNB.Add(2 * time.Second))
		time.Sleep(wait)
		nb = d.lastNB.Add(time.Second)
	}
	cert, err := d.ca.IssueDevice(d.ID, nb)
	if err != nil {
		return fmt.Errorf("issue device certificate: %w", err)
	}
	d.cert, d.lastNB = cert, nb
	d.history = append(d.history, cert)
	d.boots++
	d.cfg.Timeline.Event(d.Name, "boot %d: new key and certificate %s (CN = device ID %s, thing %s)",
		d.boots, timeline.Short(CertificateID(cert.Cert)), timeline.Short(d.ID), timeline.Short(d.Thing))
	return nil
}

// ErrGaveUp means the device used all its connect attempts of this boot.
var ErrGaveUp = errors.New("no connection after all attempts")

// Connect connects as the device's thing with JITR retries: the first connection of a new certificate is refused
// while it is registered and activated, so the device backs off (with jitter) and tries again.
func (d *Device) Connect(ctx context.Context) error {
	s := Session{Boot: d.boots, CertificateID: CertificateID(d.cert.Cert), FirstAttempt: time.Now()}
	for attempt := 1; attempt <= d.cfg.MaxAttempts; attempt++ {
		s.Attempts = attempt
		client, err := d.ConnectOnce(d.Thing, d.cert)
		if err == nil {
			s.Connected = time.Now()
			d.client = client
			d.Sessions = append(d.Sessions, s)
			d.cfg.Timeline.Event(d.Name, "connected as thing %s on attempt %d, %s after the first",
				timeline.Short(d.Thing), attempt, s.Connected.Sub(s.FirstAttempt).Round(time.Millisecond))
			return nil
		}
		wait := d.cfg.Backoff.Delay(attempt)
		d.cfg.Timeline.Event(d.Name, "connect attempt %d refused (%s); retry in %s", attempt, describeRefusal(err), wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	return fmt.Errorf("%s: %w", d.Name, ErrGaveUp)
}

// describeRefusal says what the device saw, in the terms of the flow: AWS IoT drops the connection without a
// CONNACK when it registers a certificate or refuses one.
func describeRefusal(err error) string {
	if strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "connection reset") {
		return "connection closed without CONNACK"
	}
	return err.Error()
}

// ConnectOnce makes one MQTT connection with the given client id and certificate, as the device's TLS stack
// would, and returns the connected client. Tests use it to try what a device must not be able to do.
func (d *Device) ConnectOnce(clientID string, cert *testpki.Pair) (paho.Client, error) {
	host := d.cfg.ServerName
	if host == "" {
		host = hostOf(d.cfg.Endpoint)
	}
	opts := paho.NewClientOptions().
		AddBroker("ssl://" + d.cfg.Endpoint).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(d.cfg.ConnectTimeout).
		SetKeepAlive(60 * time.Second).
		SetOrderMatters(false).
		SetTLSConfig(&tls.Config{
			RootCAs:      d.cfg.ServerCAs,
			ServerName:   host,
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Cert.Raw}, PrivateKey: cert.Key, Leaf: cert.Cert}},
		}).
		SetDefaultPublishHandler(d.onMessage)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(d.cfg.ConnectTimeout + time.Second) {
		c.Disconnect(0)
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

func (d *Device) onMessage(_ paho.Client, m paho.Message) {
	d.mu.Lock()
	ch := d.replies[m.Topic()]
	d.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m.Payload():
		default:
		}
	}
}

// Client is the connected MQTT client of the current boot, or nil.
func (d *Device) Client() paho.Client { return d.client }

// TelemetryTopic is the device's telemetry topic.
func (d *Device) TelemetryTopic() string { return contract.TelemetryTopic(d.cfg.TopicRoot, d.Thing) }

// ShadowTopic returns $aws/things/<thing>/shadow/<suffix>.
func (d *Device) ShadowTopic(suffix string) string { return contract.ShadowTopic(d.Thing, suffix) }

// RunSession does what the device app does once connected: telemetry, shadow update and read, S3 up and down.
func (d *Device) RunSession(ctx context.Context) error {
	if d.client == nil {
		return errors.New("not connected")
	}
	if err := d.publishTelemetry(); err != nil {
		return err
	}
	if err := d.syncShadow(ctx); err != nil {
		return err
	}
	if d.cfg.S3 {
		if err := d.RoundTripS3(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (d *Device) publishTelemetry() error {
	msg, _ := json.Marshal(map[string]any{"deviceId": d.ID, "boot": d.boots, "uptimeMs": 1200, "temperatureC": 21.5 + rand.Float64()})
	tok := d.client.Publish(d.TelemetryTopic(), 1, false, msg)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publish telemetry: %v", tok.Error())
	}
	d.cfg.Timeline.Event(d.Name, "telemetry published to %s", contract.TelemetryTopic(d.cfg.TopicRoot, timeline.Short(d.Thing)))
	return nil
}

// request publishes a shadow request and waits for its accepted or rejected reply.
func (d *Device) request(ctx context.Context, op string, payload []byte) ([]byte, error) {
	accepted, rejected := make(chan []byte, 4), make(chan []byte, 4)
	d.mu.Lock()
	d.replies[d.ShadowTopic(op+"/accepted")] = accepted
	d.replies[d.ShadowTopic(op+"/rejected")] = rejected
	d.mu.Unlock()
	tok := d.client.Publish(d.ShadowTopic(op), 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("shadow %s: publish: %v", op, tok.Error())
	}
	select {
	case a := <-accepted:
		return a, nil
	case r := <-rejected:
		return nil, fmt.Errorf("shadow %s rejected: %s", op, r)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(15 * time.Second):
		return nil, fmt.Errorf("shadow %s: no reply", op)
	}
}

func (d *Device) syncShadow(ctx context.Context) error {
	filters := map[string]byte{}
	for _, s := range []string{"update/accepted", "update/rejected", "update/delta", "get/accepted", "get/rejected"} {
		filters[d.ShadowTopic(s)] = 1
	}
	tok := d.client.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("subscribe to shadow replies: %v", tok.Error())
	}
	for f, code := range tok.(*paho.SubscribeToken).Result() {
		if code == 0x80 {
			return fmt.Errorf("subscribe to %s refused", f)
		}
	}
	token := fmt.Sprintf("%s-%d", d.Thing[:8], d.boots)
	update, _ := json.Marshal(map[string]any{
		"state":       map[string]any{"reported": map[string]any{"firmware": "1.0.0", "boot": d.boots, "certificateId": CertificateID(d.cert.Cert)}},
		"clientToken": token,
	})
	acc, err := d.request(ctx, "update", update)
	if err != nil {
		return err
	}
	var upd struct {
		Version int `json:"version"`
	}
	_ = json.Unmarshal(acc, &upd)
	got, err := d.request(ctx, "get", []byte(`{"clientToken":"`+token+`"}`))
	if err != nil {
		return err
	}
	var doc struct {
		State struct {
			Reported struct {
				Boot int `json:"boot"`
			} `json:"reported"`
		} `json:"state"`
		Version int `json:"version"`
	}
	if err := json.Unmarshal(got, &doc); err != nil || doc.State.Reported.Boot != d.boots {
		return fmt.Errorf("shadow get: reported boot %d, want %d (%s)", doc.State.Reported.Boot, d.boots, got)
	}
	d.cfg.Timeline.Event(d.Name, "shadow update accepted (version %d); get returns reported.boot = %d", upd.Version, doc.State.Reported.Boot)
	return nil
}

// ErrURLTimeout means no answer came to a URL request in time (the function failed or is unavailable).
var ErrURLTimeout = errors.New("no answer to the URL request")

// URLRejectedError is a request the presign function refused, with its reason.
type URLRejectedError struct{ Reason string }

func (e *URLRejectedError) Error() string { return "URL request rejected: " + e.Reason }

// S3URLTopic returns the device's URL request topic, or with an outcome its reply topic.
func (d *Device) S3URLTopic(outcome string) string {
	if outcome == "" {
		return contract.S3URLRequestTopic(d.cfg.TopicRoot, d.Thing)
	}
	return contract.S3URLReplyTopic(d.cfg.TopicRoot, d.Thing, outcome)
}

// RequestURL asks the presign service for a URL over the device's MQTT connection, as the device app does, and
// waits for the answer that carries its client token.
func (d *Device) RequestURL(ctx context.Context, req contract.S3URLRequest) (contract.S3URLReply, error) {
	if d.client == nil {
		return contract.S3URLReply{}, errors.New("not connected")
	}
	accepted, rejected := make(chan []byte, 4), make(chan []byte, 4)
	d.mu.Lock()
	d.replies[d.S3URLTopic(contract.ReplyAccepted)] = accepted
	d.replies[d.S3URLTopic(contract.ReplyRejected)] = rejected
	d.mu.Unlock()
	filter := d.S3URLTopic("+")
	tok := d.client.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()[filter] == 0x80 {
		return contract.S3URLReply{}, fmt.Errorf("subscribe to %s refused", filter)
	}
	req.ClientToken = fmt.Sprintf("%s-%d", d.Thing[:8], rand.Int64N(1<<40))
	payload, _ := json.Marshal(req)
	if pt := d.client.Publish(d.S3URLTopic(""), 1, false, payload); !pt.WaitTimeout(10*time.Second) || pt.Error() != nil {
		return contract.S3URLReply{}, fmt.Errorf("publish URL request: %v", pt.Error())
	}
	deadline := time.After(d.cfg.URLTimeout)
	for {
		var (
			msg []byte
			ok  bool
		)
		select {
		case msg = <-accepted:
			ok = true
		case msg = <-rejected:
		case <-ctx.Done():
			return contract.S3URLReply{}, ctx.Err()
		case <-deadline:
			return contract.S3URLReply{}, ErrURLTimeout
		}
		var r contract.S3URLReply
		if json.Unmarshal(msg, &r) != nil || r.ClientToken != req.ClientToken {
			continue // an answer to an earlier request that timed out
		}
		if !ok {
			return r, &URLRejectedError{Reason: r.Reason}
		}
		return r, nil
	}
}

// HTTPError is an S3 answer other than 200.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// Transfer sends one request to a presigned URL and returns the body of a 200 answer. The URL's server is checked
// against the device's trust anchors, as the C device app checks S3 against Amazon's roots.
func (d *Device) Transfer(ctx context.Context, method, url string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.cfg.ServerCAs, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{Status: resp.StatusCode, Body: string(got)}
	}
	return got, nil
}

// ObjectName is the name the device uploads under devices/<thing>/.
const ObjectName = "hello.txt"

// RoundTripS3 is the device app's S3 step: ask for a PUT URL signed for the exact length, upload, ask for a GET
// URL, download and compare. A rejection, no answer or a refused transfer (403: an expired URL) leads to a new
// request after a backoff, never to giving up at once.
func (d *Device) RoundTripS3(ctx context.Context) error {
	body := []byte(fmt.Sprintf("hello from %s, boot %d\n", d.ID, d.boots))
	var last error
	for attempt := 1; attempt <= 6; attempt++ {
		if attempt > 1 {
			wait := d.cfg.Backoff.Delay(attempt - 1)
			d.cfg.Timeline.Event(d.Name, "S3 attempt %d failed (%v); new URL in %s", attempt-1, last, wait.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		if last = d.s3Once(ctx, body); last == nil {
			return nil
		}
	}
	return fmt.Errorf("S3: %w", last)
}

func (d *Device) s3Once(ctx context.Context, body []byte) error {
	put, err := d.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationPut, Name: ObjectName, ContentLength: int64(len(body))})
	if err != nil {
		return err
	}
	d.cfg.Timeline.Event(d.Name, "S3: runtime PUT URL for %s over %s (%d bytes signed, expires in %s)",
		shortKey(put.Key), shortKey(d.S3URLTopic("")), put.ContentLength, time.Until(time.Unix(put.ExpiresAt, 0)).Round(time.Minute))
	if _, err := d.Transfer(ctx, http.MethodPut, put.URL, body); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	get, err := d.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationGet, Name: ObjectName})
	if err != nil {
		return err
	}
	got, err := d.Transfer(ctx, http.MethodGet, get.URL, nil)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if !bytes.Equal(got, body) {
		return fmt.Errorf("download: %d bytes differ from the %d uploaded", len(got), len(body))
	}
	d.cfg.Timeline.Event(d.Name, "S3: uploaded %d bytes to %s with the runtime PUT URL, downloaded them back with the runtime GET URL", len(body), shortKey(put.Key))
	return nil
}

// shortKey abbreviates the thing name inside a key or topic for the timeline.
func shortKey(s string) string {
	parts := strings.Split(s, "/")
	if len(parts) > 1 {
		parts[1] = timeline.Short(parts[1])
	}
	return strings.Join(parts, "/")
}

// Disconnect closes the current connection (as a reboot does).
func (d *Device) Disconnect() {
	if d.client != nil {
		d.client.Disconnect(100)
		d.client = nil
	}
}
