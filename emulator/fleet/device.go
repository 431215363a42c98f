// Package fleet simulates Azure Sphere MT3620 devices against AWS IoT Core (or the local emulator): each boot makes a
// new key and certificate with the device ID as CN, the device connects with just-in-time-registration retries
// (exponential backoff, full jitter), then does what the device app does: telemetry on its own topics, a shadow
// update and read, an upload and a download through presigned S3 URLs.
package fleet

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

	"github.com/sphere-jitr/sphere-jitr/emulator/testpki"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
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

// Presigner returns the presigned URLs a device image is configured with (`make device-image` bakes them in).
type Presigner func(ctx context.Context, thing string) (putURL, getURL string, err error)

// Config is what every simulated device is given.
type Config struct {
	Endpoint       string         // host:port of the MQTT broker
	ServerCAs      *x509.CertPool // trust anchors for the broker (Amazon roots in AWS)
	ServerName     string         // TLS name of the broker; default the endpoint host
	TopicRoot      string         // first level of the device's own topics; default "devices"
	Presign        Presigner      // nil skips the S3 step
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
		cfg.TopicRoot = "devices"
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
	id := testpki.RandomDeviceID()
	thing, _ := azsphere.ThingName(id)
	return &Device{Name: name, ID: id, Thing: thing, cfg: cfg, ca: ca, replies: map[string]chan []byte{}}
}

// Certificate is the device's current certificate and key.
func (d *Device) Certificate() *testpki.Pair { return d.cert }

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
func (d *Device) TelemetryTopic() string { return d.cfg.TopicRoot + "/" + d.Thing + "/telemetry" }

// ShadowTopic returns $aws/things/<thing>/shadow/<suffix>.
func (d *Device) ShadowTopic(suffix string) string {
	return "$aws/things/" + d.Thing + "/shadow/" + suffix
}

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
	if d.cfg.Presign != nil {
		if err := d.roundTripS3(ctx); err != nil {
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
	d.cfg.Timeline.Event(d.Name, "telemetry published to %s/%s/telemetry", d.cfg.TopicRoot, timeline.Short(d.Thing))
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

func (d *Device) roundTripS3(ctx context.Context) error {
	putURL, getURL, err := d.cfg.Presign(ctx, d.Thing)
	if err != nil {
		return fmt.Errorf("presign: %w", err)
	}
	body := []byte(fmt.Sprintf("hello from %s, boot %d\n", d.ID, d.boots))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, putURL, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("S3 upload: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("S3 upload: HTTP %d", resp.StatusCode)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, getURL, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("S3 download: %w", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		return fmt.Errorf("S3 download: HTTP %d, %d bytes, equal to upload: %v (%v)", resp.StatusCode, len(got), bytes.Equal(got, body), err)
	}
	d.cfg.Timeline.Event(d.Name, "S3: uploaded %d bytes with the presigned PUT, downloaded them back with the presigned GET", len(body))
	return nil
}

// Disconnect closes the current connection (as a reboot does).
func (d *Device) Disconnect() {
	if d.client != nil {
		d.client.Disconnect(100)
		d.client = nil
	}
}
