package localaws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// presenceEvent is a lifecycle event as AWS IoT publishes it ("Lifecycle events", Connect/Disconnect events).
type presenceEvent struct {
	ClientID                  string `json:"clientId"`
	Timestamp                 int64  `json:"timestamp"`
	EventType                 string `json:"eventType"`
	SessionIdentifier         string `json:"sessionIdentifier"`
	PrincipalIdentifier       string `json:"principalIdentifier"`
	IPAddress                 string `json:"ipAddress"`
	VersionNumber             int64  `json:"versionNumber"`
	DisconnectReason          string `json:"disconnectReason"`
	ClientInitiatedDisconnect *bool  `json:"clientInitiatedDisconnect"`
}

// TestPresenceEventsReachSubscribersTheirPolicyAllows: a client whose certificate has a policy allowing the
// presence topics receives the connected and disconnected events of another device, with AWS's fields; the
// device's connectivity in the fleet index follows; a device with only the device policy may not subscribe.
func TestPresenceEventsReachSubscribersTheirPolicyAllows(t *testing.T) {
	lw := &lineWriter{t: t}
	tw := startEmulator(t, timeline.New(lw))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	devices := connectFleet(t, tw, 2)
	monitor, device := devices[0], devices[1]
	monitor.Disconnect()
	device.Disconnect()

	doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:%[1]s:topicfilter/$aws/events/presence/*"},`+
		`{"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:us-east-1:%[1]s:topic/$aws/events/presence/*"}]}`, "123456789012")
	if _, err := tw.IoT.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String("presence-monitor"), PolicyDocument: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	certARN := "arn:aws:iot:us-east-1:123456789012:cert/" + devicesim.CertificateID(monitor.Certificate().Cert)
	if _, err := tw.IoT.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String("presence-monitor"), Target: aws.String(certARN)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // one CONNECT per second per client id
	mon, err := monitor.ConnectOnce(monitor.Thing, monitor.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Disconnect(0)
	events := make(chan presenceEvent, 16)
	tok := mon.SubscribeMultiple(map[string]byte{"$aws/events/presence/connected/" + device.Thing: 1, "$aws/events/presence/disconnected/" + device.Thing: 1},
		func(_ paho.Client, m paho.Message) {
			var ev presenceEvent
			if err := json.Unmarshal(m.Payload(), &ev); err != nil {
				t.Errorf("event on %s: %v: %s", m.Topic(), err, m.Payload())
			}
			if !strings.HasSuffix(m.Topic(), "/"+ev.EventType+"/"+ev.ClientID) {
				t.Errorf("event %+v on topic %s", ev, m.Topic())
			}
			events <- ev
		})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("monitor subscribe: %v", tok.Error())
	}

	c, err := device.ConnectOnce(device.Thing, device.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	connected := next(t, events)
	c.Disconnect(250) // paho writes the DISCONNECT packet only if given time to (0 just closes: CONNECTION_LOST)
	disconnected := next(t, events)
	certID := devicesim.CertificateID(device.Certificate().Cert)
	if connected.EventType != "connected" || connected.PrincipalIdentifier != certID || connected.IPAddress != "127.0.0.1" ||
		connected.SessionIdentifier == "" || connected.VersionNumber < 1 || connected.ClientInitiatedDisconnect != nil {
		t.Errorf("connected event %+v", connected)
	}
	if disconnected.EventType != "disconnected" || disconnected.DisconnectReason != "CLIENT_INITIATED_DISCONNECT" ||
		disconnected.ClientInitiatedDisconnect == nil || !*disconnected.ClientInitiatedDisconnect ||
		disconnected.SessionIdentifier != connected.SessionIdentifier || disconnected.VersionNumber != connected.VersionNumber {
		t.Errorf("disconnected event %+v after %+v", disconnected, connected)
	}
	if err := tw.Broker.FlushConnectivity(ctx); err != nil {
		t.Fatal(err)
	}
	if st, found, err := env.moto.GetConnectivity(ctx, device.Thing); err != nil || !found || st.Connected || st.DisconnectReason != "CLIENT_INITIATED_DISCONNECT" {
		t.Errorf("fleet index: %+v found=%v %v; want disconnected, CLIENT_INITIATED_DISCONNECT", st, found, err)
	}

	// The device policy does not let a device watch the others.
	time.Sleep(1100 * time.Millisecond)
	c, err = device.ConnectOnce(device.Thing, device.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	topic := "$aws/events/presence/connected/" + monitor.Thing
	tok = c.Subscribe(topic, 1, func(paho.Client, paho.Message) { t.Error("a device received another device's presence event") })
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("no SUBACK")
	}
	if st := tok.(*paho.SubscribeToken); tok.Error() != nil || st.Result()[topic] != 0x80 {
		t.Errorf("a device's subscription to another device's presence: SUBACK %v, %v; want the failure code 0x80", st.Result(), tok.Error())
	}
}

func next(t *testing.T, events chan presenceEvent) presenceEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no presence event within 10 s")
		return presenceEvent{}
	}
}
