package broker

import (
	"bytes"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// The message broker's limits and protocol rules, as AWS IoT Core documents them. Each constant names the page it
// comes from; README's "Where the emulator differs" lists what the broker still does differently.
//
//   - [limits]: AWS IoT Core endpoints and quotas, "Message broker and protocol limits and quotas"
//     (https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits)
//   - [mqtt]: AWS IoT Core developer guide, "MQTT", section "AWS IoT differences from MQTT specifications"
//     (https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-differences)
//   - [retain]: same page, "Using MQTT retained messages"
//     (https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-retain)
//   - [retain-policy]: "Retained message policy examples"
//     (https://docs.aws.amazon.com/iot/latest/developerguide/retained-message-policy-examples.html)
//   - [update-cert]: API reference, UpdateCertificate
//     (https://docs.aws.amazon.com/iot/latest/apireference/API_UpdateCertificate.html)
const (
	// MaxPayloadBytes is the largest PUBLISH payload: "The payload for every PUBLISH message is limited to
	// 128 KB. The AWS IoT service will reject messages larger than this size." [limits]
	MaxPayloadBytes = 128 * 1024
	// MaxQoS is the highest quality of service: "AWS IoT supports MQTT quality of service (QoS) levels 0 and 1
	// only ... When QoS level 2 is requested, the message broker doesn't send a PUBACK or SUBACK." [mqtt]
	MaxQoS = 1
	// MinKeepAliveSeconds: a keep-alive shorter than 30 s (and not 0) is treated as 30 s. [limits]
	MinKeepAliveSeconds = 30
	// MaxKeepAliveSeconds: 0 or a keep-alive longer than 1200 s gets the default, 1200 s. [limits]
	MaxKeepAliveSeconds = 1200
	// ConnectInterval: "Connect requests per second per client ID: 1". [limits]
	ConnectInterval = time.Second
	// MaxTopicSlashes: a topic or topic filter has at most 7 forward slashes (8 levels), the Basic Ingest
	// prefix $aws/rules/<rule>/ excepted. [limits]
	MaxTopicSlashes = 7
	// MaxTopicBytes: a topic or topic filter is at most 256 bytes of UTF-8. [limits]
	MaxTopicBytes = 256
	// MaxFiltersPerSubscribe: "A single SUBSCRIBE request has a limit of 8 subscriptions." [limits]
	MaxFiltersPerSubscribe = 8
	// MaxClientIDBytes: a client ID is at most 128 bytes of UTF-8. [limits]
	MaxClientIDBytes = 128
	// MaxInflight: in-flight unacknowledged QoS 1 messages per client, inbound and outbound; advertised to
	// MQTT 5 clients as Receive Maximum. [limits]
	MaxInflight = 100
	// RevocationPollInterval is how often the broker reads the registry for the certificates and policies of
	// open connections. AWS disconnects "within a few minutes of updating a certificate from the ACTIVE state to
	// any other state" [update-cert]; the emulator does it within this interval, so a test waits seconds.
	RevocationPollInterval = time.Second
)

// basicIngestPrefix is the reserved prefix whose first three slashes the topic depth limit does not count. [limits]
const basicIngestPrefix = "$aws/rules/"

// topicSlashes counts the slashes the depth limit counts.
func topicSlashes(topic string) int {
	n := strings.Count(topic, "/")
	if strings.HasPrefix(strings.ToLower(topic), basicIngestPrefix) {
		n -= 3
	}
	return n
}

// reservedTopic reports a topic AWS IoT reserves for itself ($aws/...): it never stores a retained message
// there ("You can't publish to a reserved topic with the RETAIN flag set" [retain]).
func reservedTopic(topic string) bool { return strings.HasPrefix(topic, "$") }

// topicProblem says why a topic name or filter breaks a broker limit, or "" when it does not.
func topicProblem(topic string) string {
	switch {
	case len(topic) > MaxTopicBytes:
		return "topic longer than 256 bytes"
	case topicSlashes(topic) > MaxTopicSlashes:
		return "topic deeper than 7 slashes"
	}
	return ""
}

// clampKeepAlive is the keep-alive AWS IoT applies for the one a client asks for. [limits]
func clampKeepAlive(asked uint16) uint16 {
	switch {
	case asked == 0 || asked > MaxKeepAliveSeconds:
		return MaxKeepAliveSeconds
	case asked < MinKeepAliveSeconds:
		return MinKeepAliveSeconds
	}
	return asked
}

// applyCapabilities sets what mochi advertises and enforces to AWS IoT Core's values.
func applyCapabilities(c *mqtt.Capabilities) {
	c.MaximumQos = MaxQoS
	c.ReceiveMaximum = MaxInflight
	c.TopicAliasMaximum = 0 // see README: topic aliases are refused, not mapped
	c.Compatibilities.NoInheritedPropertiesOnAck = true
}

// connectRate remembers when each client id last connected, for the one-CONNECT-per-second rule.
type connectRate struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// allow records an admitted CONNECT, or refuses one within ConnectInterval of the last one of the same client id.
func (r *connectRate) allow(clientID string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	if t, ok := r.last[clientID]; ok && now.Sub(t) < ConnectInterval {
		return false
	}
	r.last[clientID] = now
	if len(r.last) > 1<<16 { // forget old entries so a long run does not grow without bound
		for id, t := range r.last {
			if now.Sub(t) >= ConnectInterval {
				delete(r.last, id)
			}
		}
	}
	return true
}

// willMessage is a client's Last Will, held by the broker instead of mochi so that it is published under the
// client's policy, and not at all once its certificate is revoked.
type willMessage struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
}

// checkWill judges a CONNECT's Last Will under the session's policies: the will is a publish the client makes
// later, so it needs iot:Publish on its topic, and iot:RetainPublish too when it is retained [retain-policy].
func (b *Broker) checkWill(w *willMessage, s *session) string {
	if w == nil {
		return ""
	}
	if p := topicProblem(w.topic); p != "" {
		return "last will: " + p
	}
	if w.retain && reservedTopic(w.topic) {
		return "last will: retained message on reserved topic " + w.topic
	}
	pols := s.currentPolicies()
	if !policy.Allowed(policy.Request{Action: "iot:Publish", Resource: b.arn("topic", w.topic), Vars: s.vars}, pols...) {
		return "last will: no attached policy allows iot:Publish on " + w.topic
	}
	if w.retain && !policy.Allowed(policy.Request{Action: "iot:RetainPublish", Resource: b.arn("topic", w.topic), Vars: s.vars}, pols...) {
		return "last will: no attached policy allows iot:RetainPublish on " + w.topic
	}
	return ""
}

// enforceConnect applies the rules of an admitted CONNECT that need its session: the client id's connect rate,
// the keep-alive, and the Last Will under the policy. It returns why the connection is refused, or "".
func (b *Broker) enforceConnect(cl *mqtt.Client, s *session) string {
	if !b.rate.allow(cl.ID, time.Now()) {
		return "more than one CONNECT per second for this client id (throttled)"
	}
	cl.State.Keepalive = clampKeepAlive(cl.State.Keepalive)
	cl.State.ServerKeepalive = cl.Properties.ProtocolVersion == 5
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 {
		w := cl.Properties.Will
		s.will = &willMessage{topic: w.TopicName, payload: append([]byte(nil), w.Payload...), qos: w.Qos, retain: w.Retain}
		// mochi would publish the will itself, unchecked; the broker does it under the policy (publishWill).
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	return b.checkWill(s.will, s)
}

// publishWill publishes a session's Last Will when its connection ended without a DISCONNECT, if the policy
// attached at that moment still allows it and the certificate was not revoked.
func (b *Broker) publishWill(s *session) {
	s.mu.Lock()
	w, revoked := s.will, s.revoked
	s.will = nil
	s.mu.Unlock()
	if w == nil || revoked {
		return
	}
	if why := b.checkWill(w, s); why != "" {
		b.opts.Timeline.Event(actorIoT, "last will of %s not published: %s", timeline.Short(s.thing), why)
		return
	}
	_ = b.srv.Publish(w.topic, w.payload, w.retain, w.qos)
}

// strictHook enforces AWS IoT Core's protocol rules and limits on mochi; it runs before the broker's hook.
type strictHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *strictHook) ID() string { return "aws-iot-core-limits" }

func (h *strictHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnSubscribe, mqtt.OnDisconnect}, []byte{b})
}

// refuse ends a connection for a protocol or policy violation the way AWS IoT does: MQTT 3.1.1 has no
// server DISCONNECT, so the connection is just closed; an MQTT 5 client gets a DISCONNECT with the reason code.
func (h *strictHook) refuse(cl *mqtt.Client, code packets.Code, why string) error {
	h.b.opts.Timeline.Event(actorIoT, "disconnected %s: %s", timeline.Short(cl.ID), why)
	if cl.Properties.ProtocolVersion == 5 {
		_ = h.b.srv.DisconnectClient(cl, code)
	} else {
		cl.Stop(code)
	}
	return packets.ErrRejectPacket
}

// OnPacketRead checks each packet a client sends against the broker's limits and the client's policy.
func (h *strictHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		// Refused before any CONNACK: AWS IoT just closes the connection.
		if len(pk.Connect.ClientIdentifier) > MaxClientIDBytes {
			return pk, packets.ErrRejectPacket
		}
		if pk.Connect.WillFlag && pk.Connect.WillQos > MaxQoS {
			return pk, packets.ErrRejectPacket
		}
	case packets.Publish:
		return pk, h.checkPublish(cl, pk)
	case packets.Subscribe:
		if len(pk.Filters) > MaxFiltersPerSubscribe {
			return pk, h.refuse(cl, packets.ErrQuotaExceeded, "more than 8 topic filters in one SUBSCRIBE")
		}
		for _, f := range pk.Filters {
			if f.Qos > MaxQoS {
				return pk, h.refuse(cl, packets.ErrQosNotSupported, "SUBSCRIBE with QoS 2 on "+f.Filter)
			}
			if p := topicProblem(f.Filter); p != "" {
				return pk, h.refuse(cl, packets.ErrTopicFilterInvalid, p+": "+f.Filter)
			}
		}
	}
	return pk, nil
}

func (h *strictHook) checkPublish(cl *mqtt.Client, pk packets.Packet) error {
	topic := pk.TopicName
	switch {
	case pk.FixedHeader.Qos > MaxQoS:
		return h.refuse(cl, packets.ErrQosNotSupported, "PUBLISH with QoS 2 on "+topic)
	case len(pk.Payload) > MaxPayloadBytes:
		return h.refuse(cl, packets.ErrPacketTooLarge, "payload larger than 128 KB on "+topic)
	}
	if p := topicProblem(topic); p != "" {
		return h.refuse(cl, packets.ErrTopicNameInvalid, p+": "+topic)
	}
	s := h.b.session(cl)
	if s == nil {
		return h.refuse(cl, packets.ErrNotAuthorized, "PUBLISH without a session")
	}
	pols := s.currentPolicies()
	if !policy.Allowed(policy.Request{Action: "iot:Publish", Resource: h.b.arn("topic", topic), Vars: s.vars}, pols...) {
		// Any QoS: AWS IoT closes the connection of an unauthorised publish, it does not drop it silently.
		h.b.presence.denied(cl, s, "Publish-In", topic)
		return h.refuse(cl, packets.ErrNotAuthorized, "not authorised to publish to "+topic)
	}
	if pk.FixedHeader.Retain && reservedTopic(topic) {
		return h.refuse(cl, packets.ErrNotAuthorized, "retained message on reserved topic "+topic)
	}
	if pk.FixedHeader.Retain && !policy.Allowed(policy.Request{Action: "iot:RetainPublish", Resource: h.b.arn("topic", topic), Vars: s.vars}, pols...) {
		return h.refuse(cl, packets.ErrNotAuthorized, "not authorised to publish retained messages to "+topic)
	}
	return nil
}

// OnSubscribe stops retained messages on wildcard filters: "To receive a retained message upon subscription,
// the topic filter in the subscription request must match the retained message topic exactly." [retain]
func (h *strictHook) OnSubscribe(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	for i, f := range pk.Filters {
		if strings.ContainsAny(f.Filter, "+#") {
			pk.Filters[i].RetainHandling = 2 // MQTT 5 "do not send retained messages at subscribe"
		}
	}
	return pk
}

// OnPacketEncode corrects what mochi writes where AWS IoT writes something else.
func (h *strictHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Disconnect:
		if cl.Properties.ProtocolVersion < 5 {
			// MQTT 3.1.1 has no server DISCONNECT: an unknown type makes mochi write nothing and close.
			pk.FixedHeader.Type = packets.Reserved
		}
	case packets.Puback, packets.Pubrec:
		// mochi acknowledges QoS 1 with reason 0x01 ("granted QoS 1"), which is no PUBACK reason code.
		if pk.ReasonCode == packets.CodeGrantedQos1.Code || pk.ReasonCode == packets.CodeGrantedQos2.Code {
			pk.ReasonCode = packets.CodeSuccess.Code
		}
		pk.Properties.User = nil
	case packets.Suback, packets.Unsuback:
		pk.Properties.User = nil // mochi echoes the request's user properties
	case packets.Connack:
		if pk.ReasonCode == packets.CodeSuccess.Code {
			pk.Properties.MaximumQos, pk.Properties.MaximumQosFlag = MaxQoS, true
			pk.Properties.RetainAvailable, pk.Properties.RetainAvailableFlag = 1, true
			pk.Properties.WildcardSubAvailable, pk.Properties.WildcardSubAvailableFlag = 1, true
			pk.Properties.ReceiveMaximum = MaxInflight
		}
	}
	return pk
}

// OnDisconnect publishes the Last Will of a connection that ended without a normal DISCONNECT (err is nil only
// after one), before the broker's hook forgets the session.
func (h *strictHook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	s := h.b.session(cl)
	if s == nil {
		return
	}
	if err == nil {
		s.mu.Lock()
		s.will = nil
		s.mu.Unlock()
		return
	}
	h.b.publishWill(s)
}
