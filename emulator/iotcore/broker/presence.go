package broker

// What AWS IoT Core tells about connections, besides the connections themselves:
//
//   - the connectivity of each client id in the fleet index (connected, timestamp, disconnectReason), which the
//     emulator records in moto through its control endpoint (testkit/moto/indexing.py), asynchronously and in
//     batches so a storm's connects do not wait for moto;
//   - the lifecycle events on $aws/events/presence/connected|disconnected/<clientId>, published as AWS IoT itself
//     to the subscribers whose policy allows them to receive it;
//   - AWS IoT's v2 log entries (Connect, Disconnect, Publish-In, Subscribe), at the level the account's logging
//     options (GetV2LoggingOptions) ask for, in the AWSIotLogsV2 log group of moto's CloudWatch Logs.
//
// [lifecycle]: AWS IoT Core developer guide, "Lifecycle events", "Connect/Disconnect events"
// (https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html)
// [cwl]: "CloudWatch Logs AWS IoT log entries", "Message broker log entries"
// (https://docs.aws.amazon.com/iot/latest/developerguide/cwl-format.html)

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sphere-jitr/sphere-jitr/emulator/cwlogs"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// The disconnect reasons of AWS IoT [lifecycle] the broker reports (testkit/moto/indexing.py lists them all).
const (
	ReasonAuthError                 = "AUTH_ERROR"                  // authentication or authorization failed: certificate no longer ACTIVE, a publish or subscribe the policy denies
	ReasonClientInitiatedDisconnect = "CLIENT_INITIATED_DISCONNECT" // the client sent DISCONNECT
	ReasonClientError               = "CLIENT_ERROR"                // the client broke a protocol rule or limit (QoS 2, payload over 128 KB, topic too deep, ...)
	ReasonConnectionLost            = "CONNECTION_LOST"             // the connection was cut
	ReasonDuplicateClientID         = "DUPLICATE_CLIENTID"          // another connection took the client id over
	ReasonKeepAliveTimeout          = "MQTT_KEEP_ALIVE_TIMEOUT"     // nothing from the client for 1.5 × its keep-alive
	ReasonServerInitiatedDisconnect = "SERVER_INITIATED_DISCONNECT" // the broker closed
	ReasonThrottled                 = "THROTTLED"                   // the client exceeded a throughput limit
)

// PresenceTopicPrefix is the root of the lifecycle events' topics. [lifecycle]
const PresenceTopicPrefix = "$aws/events/presence/"

// IoTLogGroup is the log group AWS IoT writes its v2 log entries to. [cwl]
const IoTLogGroup = "AWSIotLogsV2"

// connectivityQueue bounds the connectivity reports waiting for moto; beyond it reports are dropped and counted.
const connectivityQueue = 1 << 16

// loggingPoll is how often the broker reads the account's logging options (AWS applies a change within minutes).
const loggingPoll = time.Second

// loggingAPI reads the account's AWS IoT logging options.
type loggingAPI interface {
	GetV2LoggingOptions(ctx context.Context, in *iot.GetV2LoggingOptionsInput, optFns ...func(*iot.Options)) (*iot.GetV2LoggingOptionsOutput, error)
}

var _ loggingAPI = (*iot.Client)(nil)

// PresenceOptions configures what the broker reports about connections. Every part is optional.
type PresenceOptions struct {
	// ReportConnectivity records connection states in the fleet index (motoserver.(*Server).SetConnectivity).
	ReportConnectivity func(ctx context.Context, states ...motoserver.Connectivity) error
	// Logs receives the v2 log entries; Logging says at which level the account logs (none while it is not
	// configured or disabled).
	Logs    *cwlogs.Shipper
	Logging loggingAPI
}

// presence is the broker's account of connections: who holds each client id, the connectivity reports waiting for
// moto, the account's log level.
type presence struct {
	b       *Broker
	opts    PresenceOptions
	reports chan motoserver.Connectivity
	dropped atomic.Int64
	unsent  atomic.Int64 // reports queued or in a call not yet answered
	level   atomic.Int32 // verbosity of the account's logging (logVerbosity), 0 when off

	mu      sync.Mutex
	holder  map[string]*mqtt.Client // client id → the connection that holds it now
	version map[string]int64        // client id → versionNumber of its last connection
	conns   sync.Map                // *mqtt.Client → *connection
}

// connection is what the lifecycle events and log entries say of one admitted connection.
type connection struct {
	sessionID string
	principal string // certificate id
	ip        string
	port      int
	version   int64
}

// logVerbosity orders AWS IoT's log levels; an entry is written when its level's verbosity is at most the account's.
var logVerbosity = map[iottypes.LogLevel]int32{iottypes.LogLevelError: 1, iottypes.LogLevelWarn: 2, iottypes.LogLevelInfo: 3, iottypes.LogLevelDebug: 4}

func newPresence(b *Broker, opts PresenceOptions) *presence {
	p := &presence{b: b, opts: opts, reports: make(chan motoserver.Connectivity, connectivityQueue),
		holder: map[string]*mqtt.Client{}, version: map[string]int64{}}
	if opts.ReportConnectivity != nil {
		go p.sendReports()
	}
	if opts.Logs != nil && opts.Logging != nil {
		p.readLogging()
		go p.pollLogging()
	}
	return p
}

// sendReports sends the queued connectivity reports in batches until the broker closes.
func (p *presence) sendReports() {
	for {
		var batch []motoserver.Connectivity
		select {
		case <-p.b.ctx.Done():
			return
		case c := <-p.reports:
			batch = append(batch, c)
		}
		// Whatever else is queued goes in the same call.
		for more := true; more && len(batch) < 1000; {
			select {
			case c := <-p.reports:
				batch = append(batch, c)
			default:
				more = false
			}
		}
		ctx, cancel := context.WithTimeout(p.b.ctx, 30*time.Second)
		if err := p.opts.ReportConnectivity(ctx, batch...); err != nil {
			p.b.opts.Log.Warn("connectivity not recorded in the fleet index", "clients", len(batch), "error", err)
		}
		cancel()
		p.unsent.Add(-int64(len(batch)))
	}
}

// FlushConnectivity waits until the connectivity reports queued so far have been answered by moto (tests).
func (b *Broker) FlushConnectivity(ctx context.Context) error {
	for b.presence.unsent.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func (p *presence) report(c motoserver.Connectivity) {
	if p.opts.ReportConnectivity == nil {
		return
	}
	p.unsent.Add(1)
	select {
	case p.reports <- c:
	default:
		p.unsent.Add(-1)
		p.dropped.Add(1)
	}
}

func (p *presence) pollLogging() {
	t := time.NewTicker(loggingPoll)
	defer t.Stop()
	for {
		select {
		case <-p.b.ctx.Done():
			return
		case <-t.C:
			p.readLogging()
		}
	}
}

// readLogging reads the account's logging options: NotConfigured, disabled or DISABLED mean no entries.
func (p *presence) readLogging() {
	ctx, cancel := context.WithTimeout(p.b.ctx, 10*time.Second)
	defer cancel()
	out, err := p.opts.Logging.GetV2LoggingOptions(ctx, &iot.GetV2LoggingOptionsInput{})
	var notConfigured *iottypes.NotConfiguredException
	switch {
	case errors.As(err, &notConfigured):
		p.level.Store(0)
	case err != nil:
		return // keep what was read last
	case out.DisableAllLogs:
		p.level.Store(0)
	default:
		p.level.Store(logVerbosity[out.DefaultLogLevel])
	}
}

// entry is one AWS IoT v2 log entry: the common attributes and the message broker's. [cwl]
type entry struct {
	Timestamp        string `json:"timestamp"`
	LogLevel         string `json:"logLevel"`
	TraceID          string `json:"traceId"`
	AccountID        string `json:"accountId"`
	Status           string `json:"status"`
	EventType        string `json:"eventType"`
	Protocol         string `json:"protocol"`
	TopicName        string `json:"topicName,omitempty"`
	ClientID         string `json:"clientId"`
	PrincipalID      string `json:"principalId,omitempty"`
	SourceIP         string `json:"sourceIp,omitempty"`
	SourcePort       int    `json:"sourcePort,omitempty"`
	DisconnectReason string `json:"disconnectReason,omitempty"`
	Reason           string `json:"reason,omitempty"`
	Details          string `json:"details,omitempty"`
}

// write writes a log entry if the account logs at its level.
func (p *presence) write(level iottypes.LogLevel, e entry) {
	if p.opts.Logs == nil || p.level.Load() < logVerbosity[level] {
		return
	}
	now := time.Now().UTC()
	e.Timestamp, e.LogLevel, e.TraceID, e.AccountID, e.Protocol = now.Format("2006-01-02 15:04:05.000"), string(level), uuid(), p.b.account, "MQTT"
	line, _ := json.Marshal(e)
	p.opts.Logs.Put(IoTLogGroup, "iot-core-emulator", now, string(line))
}

// remote splits a client's remote address.
func remote(cl *mqtt.Client) (string, int) {
	host, port, err := net.SplitHostPort(cl.Net.Remote)
	if err != nil {
		return cl.Net.Remote, 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// connected is called once the CONNACK of an admitted connection is sent: the client id is connected.
func (p *presence) connected(cl *mqtt.Client, s *session) {
	ip, port := remote(cl)
	p.mu.Lock()
	p.version[cl.ID]++
	c := &connection{sessionID: uuid(), principal: s.certID, ip: ip, port: port, version: p.version[cl.ID]}
	p.holder[cl.ID] = cl
	p.mu.Unlock()
	p.conns.Store(cl, c)
	now := time.Now()
	p.report(motoserver.Connectivity{ClientID: cl.ID, Connected: true, Timestamp: now.UnixMilli(), AccountID: p.b.account, Region: p.b.region})
	p.publish(cl.ID, "connected", map[string]any{"clientId": cl.ID, "timestamp": now.UnixMilli(), "eventType": "connected",
		"sessionIdentifier": c.sessionID, "principalIdentifier": c.principal, "ipAddress": ip, "versionNumber": c.version})
	p.write(iottypes.LogLevelInfo, entry{Status: "Success", EventType: "Connect", ClientID: cl.ID, PrincipalID: c.principal, SourceIP: ip, SourcePort: port})
}

// refused is called for a CONNECT the broker refused: an authentication failure (the certificate is unknown,
// pending, revoked or inactive) or an authorization failure (the policy or the thing attachment).
func (p *presence) refused(cl *mqtt.Client, principal, why string) {
	reason := "AUTHORIZATION_FAILURE"
	if strings.HasPrefix(why, "unknown certificate") || strings.HasPrefix(why, "certificate ") || strings.HasPrefix(why, "no client certificate") {
		reason = "AUTHENTICATION_FAILURE"
	}
	ip, port := remote(cl)
	p.write(iottypes.LogLevelError, entry{Status: "Failure", EventType: "Connect", ClientID: cl.ID, PrincipalID: principal,
		SourceIP: ip, SourcePort: port, Reason: reason, Details: why})
}

// denied is called for a PUBLISH or SUBSCRIBE the client's policy does not allow.
func (p *presence) denied(cl *mqtt.Client, s *session, eventType, topic string) {
	ip, port := remote(cl)
	p.write(iottypes.LogLevelError, entry{Status: "Failure", EventType: eventType, TopicName: topic, ClientID: cl.ID, PrincipalID: s.certID,
		SourceIP: ip, SourcePort: port, Reason: "AUTHORIZATION_FAILURE", Details: "Authorization Failure"})
}

// disconnected is called when an admitted connection ends, with the error mochi ended it with.
func (p *presence) disconnected(cl *mqtt.Client, err error) {
	v, ok := p.conns.LoadAndDelete(cl)
	if !ok {
		return
	}
	c := v.(*connection)
	reason := disconnectReason(cl, err)
	p.mu.Lock()
	// A connection that lost its client id to a newer one does not change the id's connectivity: the newer
	// connection holds it.
	holds := p.holder[cl.ID] == cl
	if holds {
		delete(p.holder, cl.ID)
	}
	p.mu.Unlock()
	now := time.Now()
	if holds {
		p.report(motoserver.Connectivity{ClientID: cl.ID, Connected: false, Timestamp: now.UnixMilli(), DisconnectReason: reason, AccountID: p.b.account, Region: p.b.region})
	}
	p.publish(cl.ID, "disconnected", map[string]any{"clientId": cl.ID, "timestamp": now.UnixMilli(), "eventType": "disconnected",
		"sessionIdentifier": c.sessionID, "principalIdentifier": c.principal, "clientInitiatedDisconnect": reason == ReasonClientInitiatedDisconnect,
		"disconnectReason": reason, "versionNumber": c.version})
	p.write(iottypes.LogLevelInfo, entry{Status: "Success", EventType: "Disconnect", ClientID: cl.ID, PrincipalID: c.principal,
		SourceIP: c.ip, SourcePort: c.port, DisconnectReason: reason, Details: disconnectDetails[reason]})
}

// disconnectDetails is the plain text of each reason in the Disconnect log entry.
var disconnectDetails = map[string]string{
	ReasonAuthError: "Authentication or authorization failure", ReasonClientInitiatedDisconnect: "Client initiated disconnect",
	ReasonClientError: "Client error", ReasonConnectionLost: "Connection lost", ReasonDuplicateClientID: "Duplicate client ID",
	ReasonKeepAliveTimeout: "MQTT keep alive timeout", ReasonServerInitiatedDisconnect: "Server initiated disconnect", ReasonThrottled: "Throttled",
}

// publish sends a lifecycle event as AWS IoT; clients whose id holds a wildcard get none. [lifecycle]
func (p *presence) publish(clientID, kind string, ev map[string]any) {
	if strings.ContainsAny(clientID, "#+") {
		return
	}
	payload, _ := json.Marshal(ev)
	_ = p.b.Publish(PresenceTopicPrefix+kind+"/"+clientID, payload)
}

// disconnectReason maps how mochi ended a connection (the first cause it was stopped with, else the read error) to
// AWS IoT's disconnectReason. [lifecycle]
func disconnectReason(cl *mqtt.Client, err error) string {
	cause := cl.StopCause()
	if cause == nil {
		cause = err
	}
	if cause == nil {
		return ReasonClientInitiatedDisconnect
	}
	if errors.Is(cause, errRevoked) {
		return ReasonAuthError
	}
	var code packets.Code
	if errors.As(cause, &code) {
		switch code.Code {
		case packets.CodeDisconnect.Code, packets.CodeDisconnectWillMessage.Code:
			return ReasonClientInitiatedDisconnect
		case packets.ErrSessionTakenOver.Code:
			return ReasonDuplicateClientID
		case packets.ErrServerShuttingDown.Code:
			return ReasonServerInitiatedDisconnect
		case packets.ErrNotAuthorized.Code:
			return ReasonAuthError
		case packets.ErrQuotaExceeded.Code:
			// mochi's "too many pending writes" shares the quota-exceeded code: a client that does not read.
			if code.Reason == packets.ErrPendingClientWritesExceeded.Reason {
				return ReasonThrottled
			}
			return ReasonClientError
		case packets.ErrKeepAliveTimeout.Code:
			return ReasonKeepAliveTimeout
		}
		return ReasonClientError
	}
	if errors.Is(cause, os.ErrDeadlineExceeded) {
		return ReasonKeepAliveTimeout
	}
	var ne net.Error
	if errors.As(cause, &ne) && ne.Timeout() {
		return ReasonKeepAliveTimeout
	}
	return ReasonConnectionLost
}

// uuid is a random RFC 4122 version 4 identifier, as AWS IoT's session identifiers and trace ids are.
func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// principalOf is the certificate id of a client's TLS certificate, or "" without one.
func principalOf(cl *mqtt.Client) string {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
		return ""
	}
	sum := sha256.Sum256(tc.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}
