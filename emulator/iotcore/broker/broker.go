// Package broker is the MQTT-over-TLS server that behaves like AWS IoT Core for the devices: the CONNECT check
// and just-in-time registration (connect.go), AWS IoT's protocol limits (limits.go), the IoT policy on every
// PUBLISH, SUBSCRIBE and RECEIVE, revocation of open connections (revocation.go), the rules engine's topic filters
// and the shadow bridge.
package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iot"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/shadow"
	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// brokerIoTAPI is the part of the IoT control plane the broker consults on each connection.
type brokerIoTAPI interface {
	DescribeCertificate(ctx context.Context, in *iot.DescribeCertificateInput, optFns ...func(*iot.Options)) (*iot.DescribeCertificateOutput, error)
	RegisterCertificate(ctx context.Context, in *iot.RegisterCertificateInput, optFns ...func(*iot.Options)) (*iot.RegisterCertificateOutput, error)
	ListPrincipalThings(ctx context.Context, in *iot.ListPrincipalThingsInput, optFns ...func(*iot.Options)) (*iot.ListPrincipalThingsOutput, error)
	ListAttachedPolicies(ctx context.Context, in *iot.ListAttachedPoliciesInput, optFns ...func(*iot.Options)) (*iot.ListAttachedPoliciesOutput, error)
	GetPolicy(ctx context.Context, in *iot.GetPolicyInput, optFns ...func(*iot.Options)) (*iot.GetPolicyOutput, error)
	// for dropping the connections of revoked certificates (revocation.go)
	ListCertificates(ctx context.Context, in *iot.ListCertificatesInput, optFns ...func(*iot.Options)) (*iot.ListCertificatesOutput, error)
	ListTargetsForPolicy(ctx context.Context, in *iot.ListTargetsForPolicyInput, optFns ...func(*iot.Options)) (*iot.ListTargetsForPolicyOutput, error)
}

var _ brokerIoTAPI = (*iot.Client)(nil)

// Options configures the MQTT broker that stands in for AWS IoT Core.
type Options struct {
	Deployment  *deploy.Deployment
	IoT         brokerIoTAPI
	Shadow      *shadow.Client
	Certificate tls.Certificate // the broker's TLS server certificate
	// OnRule receives each message that matches a deployed topic rule (the rules engine's action).
	OnRule   func(rule deploy.Rule, topic string, payload []byte)
	Timeline *timeline.Timeline
	Log      *slog.Logger // broker internals; default discards
	// RegistryPoll is how often open connections are checked against the registry; default RevocationPollInterval.
	RegistryPoll time.Duration
	// Presence is what the broker reports about connections: connectivity, lifecycle events, v2 logs (presence.go).
	Presence PresenceOptions
	// Changes is the registry's change feed (registrycache.go): with it the broker keeps its registry reads in
	// memory and acts on each change as it comes; without it, it reads the registry on every CONNECT and polls.
	Changes ChangeFeed
}

// Broker is an MQTT-over-TLS server on loopback that behaves like AWS IoT Core for the JITR flow.
type Broker struct {
	opts     Options
	srv      *mqtt.Server
	addr     string
	region   string
	account  string
	sessions sync.Map // *mqtt.Client → *session
	policies sync.Map // policy name → *policy.Policy
	// lookups bounds the registry calls of connections in progress: a fleet retrying at once would otherwise
	// flood moto, a single process, and starve the function that provisions the fleet.
	lookups chan struct{}
	// relookups is the same budget for certificates whose registry entry changed since the broker read it (a device
	// retrying after its activation): they do not queue behind a storm's unknown certificates.
	relookups chan struct{}
	rate      connectRate // one CONNECT per second per client id (limits.go)
	// presence reports connects and disconnects: fleet index, lifecycle events, v2 logs (presence.go).
	presence *presence
	reg      registryCache // the registry's answers, while the change feed is live (registrycache.go)
	chains   chainCache    // chains that verified to a deployed CA (connect.go)
	// ctx ends when the broker closes, so admissions in progress stop waiting for the registry.
	ctx    context.Context
	cancel context.CancelFunc
}

// registrySlotWait is how long a connection waits for a registry slot before it is refused as AWS IoT refuses
// when it is overloaded; the device retries with backoff, which is what spreads a storm out.
const registrySlotWait = 3 * time.Second

// session is what the broker knows about an admitted connection.
type session struct {
	thing   string
	certID  string
	certARN string
	vars    map[string]string
	mu      sync.Mutex
	// policies and policyNames (same order) are the policies attached to the certificate; the registry poll
	// withdraws detached ones (revocation.go). Read them under mu.
	policies    []*policy.Policy
	policyNames []string
	pending     map[string]bool // SUBSCRIBE filters already judged by iot:Subscribe, awaiting mochi's ACL call
	will        *willMessage    // the Last Will, published by the broker under the policy (limits.go)
	revoked     bool            // the certificate left ACTIVE: the connection was dropped, its will is not sent
}

// currentPolicies returns the policies attached to the session's certificate now.
func (s *session) currentPolicies() []*policy.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policies
}

// Start listens on 127.0.0.1 (a free port) and serves until Close.
func Start(opts Options) (*Broker, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(discard{}, nil))
	}
	d := opts.Deployment
	b := &Broker{opts: opts, region: d.Resolver.Pseudo["AWS::Region"], account: d.Resolver.Pseudo["AWS::AccountId"],
		lookups: make(chan struct{}, 4), relookups: make(chan struct{}, 4)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.presence = newPresence(b, opts.Presence)
	for name, p := range d.Policies {
		b.policies.Store(name, p)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: opts.Log})
	srv.Options.Capabilities.MaximumClients = 1 << 20
	applyCapabilities(srv.Options.Capabilities)
	b.srv = srv
	// The limits hook runs first: it must see a session before the broker's hook forgets it on disconnect.
	if err := srv.AddHook(&strictHook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("add limits hook: %w", err)
	}
	if err := srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("add broker hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "iot-core", Address: "127.0.0.1:0", TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{opts.Certificate},
		ClientAuth:   tls.RequireAnyClientCert, // the chain is judged per connection, as AWS IoT does with its registry
		MinVersion:   tls.VersionTLS12,
		// "Clients must send the Server Name Indication (SNI) TLS extension ... Connection attempts that don't
		// include the SNI are refused." (https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html)
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if hello.ServerName == "" {
				return nil, errNoSNI
			}
			return nil, nil
		},
	}})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	// Devices reach the broker by name, so that their TLS stack sends SNI (none is sent for an IP address).
	_, port, err := net.SplitHostPort(tcp.Address())
	if err != nil {
		return nil, fmt.Errorf("listener address: %w", err)
	}
	b.addr = net.JoinHostPort("localhost", port)
	for i, rule := range d.Rules {
		rule := rule
		err := srv.Subscribe(rule.TopicFilter, i+1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			if opts.OnRule != nil {
				opts.OnRule(rule, pk.TopicName, append([]byte(nil), pk.Payload...))
			}
		})
		if err != nil {
			return nil, fmt.Errorf("rule %s: %w", rule.Name, err)
		}
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	poll := opts.RegistryPoll
	if poll <= 0 {
		poll = RevocationPollInterval
	}
	go b.watchRegistry(poll)
	if opts.Changes != nil {
		go b.followChanges(opts.Changes)
	}
	return b, nil
}

// Addr is the broker's host:port, by name (localhost) so that clients send SNI.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and drops every connection.
func (b *Broker) Close() error {
	b.cancel()
	return b.srv.Close()
}

// Publish sends a message as AWS IoT itself (events, shadow replies); receivers are still checked by policy.
func (b *Broker) Publish(topic string, payload []byte) error {
	return b.srv.Publish(topic, payload, false, 0)
}

func (b *Broker) arn(kind, name string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:%s/%s", b.region, b.account, kind, name)
}

func (b *Broker) session(cl *mqtt.Client) *session {
	s, ok := b.sessions.Load(cl)
	if !ok {
		return nil
	}
	return s.(*session)
}

// hook connects mochi's callbacks to the broker.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "aws-iot-core" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablished, mqtt.OnACLCheck,
		mqtt.OnSubscribe, mqtt.OnPublished, mqtt.OnDisconnect}, []byte{b})
}

func (h *hook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	s, reason := h.b.admit(h.b.ctx, cl)
	if s != nil {
		if why := h.b.enforceConnect(cl, s); why != "" {
			s, reason = nil, why
		}
	}
	if s == nil {
		h.b.opts.Timeline.Event(actorIoT, "connect refused (%s): %s", timeline.Short(cl.ID), reason)
		h.b.presence.refused(cl, principalOf(cl), reason)
		return errRefused
	}
	h.b.sessions.Store(cl, s)
	h.b.opts.Timeline.Event(actorIoT, "connected: thing %s, certificate %s ACTIVE", timeline.Short(cl.ID), timeline.Short(s.certID))
	return nil
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.b.session(cl) != nil
}

// OnSessionEstablished runs once the CONNACK is sent: the client id is connected (presence.go).
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if s := h.b.session(cl); s != nil {
		h.b.presence.connected(cl, s)
	}
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	h.b.presence.disconnected(cl, err)
	h.b.sessions.Delete(cl)
}

// OnSubscribe judges each filter with iot:Subscribe; mochi then asks OnACLCheck once per filter, which consumes
// the verdict (OnACLCheck cannot otherwise tell a SUBSCRIBE from a delivery).
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	s := h.b.session(cl)
	if s == nil {
		return pk
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range pk.Filters {
		// The limits hook ran first; session.policies is read under s.mu, which is held here.
		s.pending[f.Filter] = policy.Allowed(policy.Request{Action: "iot:Subscribe", Resource: h.b.arn("topicfilter", f.Filter), Vars: s.vars}, s.policies...)
		if !s.pending[f.Filter] {
			h.b.presence.denied(cl, s, "Subscribe", f.Filter)
		}
	}
	return pk
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.b.session(cl)
	if s == nil {
		return false
	}
	if write {
		return policy.Allowed(policy.Request{Action: "iot:Publish", Resource: h.b.arn("topic", topic), Vars: s.vars}, s.currentPolicies()...)
	}
	s.mu.Lock()
	verdict, isSubscribe := s.pending[topic]
	delete(s.pending, topic)
	s.mu.Unlock()
	if isSubscribe {
		return verdict
	}
	return policy.Allowed(policy.Request{Action: "iot:Receive", Resource: h.b.arn("topic", topic), Vars: s.vars}, s.currentPolicies()...)
}

// OnPublished bridges shadow requests to moto's shadow service and publishes its answers.
func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if h.b.opts.Shadow == nil || !strings.HasPrefix(pk.TopicName, "$aws/things/") {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replies, ok := shadow.HandleRequest(ctx, h.b.opts.Shadow, pk.TopicName, pk.Payload)
	if !ok {
		return
	}
	for _, r := range replies {
		_ = h.b.Publish(r.Topic, r.Payload)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
