package localaws_test

// fleetctl why against the emulator: each reason a device is or is not connected, produced for real (devices over
// MQTT/TLS, the real JITR function, IAM enforced), and the verdict fleetctl reads from the registry, the fleet index
// the broker feeds, AWS IoT's v2 logs the broker writes, the functions' log groups and the queues.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// withIoTLogging is the template as `cdk synth -c iotLogging=INFO` shapes its account-settings resource: AWS IoT
// logging at INFO with a role (the role's ARN only: AWS IoT, not the emulator, would assume it).
func withIoTLogging(base *stacktemplate.Template) *stacktemplate.Template {
	t := base.Clone()
	for _, id := range t.OfType(contract.AccountSettingsResourceType) {
		t.Resources[id].Properties[contract.PropLogLevel] = "INFO"
		t.Resources[id].Properties[contract.PropLogRoleARN] = "arn:aws:iam::123456789012:role/SphereJitr-IoTLogging"
	}
	return t
}

// startWhy starts the emulator on a template and writes its info file for fleetctl -emulator.
func startWhy(t *testing.T, template *stacktemplate.Template, lw *lineWriter) (*localaws.Emulator, string) {
	t.Helper()
	tw, err := env.setup.Start(context.Background(), localaws.Options{Template: template, Workers: 2, Timeline: timeline.New(lw)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tw.Stop)
	data, err := json.Marshal(tw.Info())
	if err != nil {
		t.Fatal(err)
	}
	info := filepath.Join(t.TempDir(), "emulator.json")
	if err := os.WriteFile(info, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return tw, info
}

type whyVerdict struct {
	Case     string `json:"case"`
	Summary  string `json:"summary"`
	Reason   string `json:"reason"`
	Fix      string `json:"fix"`
	Evidence []struct {
		Source string `json:"source"`
		Text   string `json:"text"`
	} `json:"evidence"`
}

// why runs fleetctl why (its text for the test log, its JSON for the checks) after the emulator has written what
// it owes: connectivity reports and log lines.
func why(t *testing.T, tw *localaws.Emulator, info, id string) whyVerdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tw.Broker.FlushConnectivity(ctx); err != nil {
		t.Fatal(err)
	}
	tw.LogShipper.Flush()
	runFleetctl(t, info, "why", id)
	out, _ := runFleetctl(t, info, "why", id, "-json")
	var v whyVerdict
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("why -json: %v\n%s", err, out)
	}
	return v
}

func wantCase(t *testing.T, v whyVerdict, want string, texts ...string) {
	t.Helper()
	if v.Case != want {
		t.Errorf("verdict %q, want %q: %s", v.Case, want, v.Summary)
	}
	all := v.Summary + "\n" + v.Reason
	for _, e := range v.Evidence {
		all += "\n" + e.Text
	}
	for _, s := range texts {
		if !strings.Contains(all, s) {
			t.Errorf("verdict %q does not mention %q:\n%s", v.Case, s, all)
		}
	}
}

// silentConnect opens an MQTT 3.1.1 connection with the given keep-alive and then says nothing, as a device whose
// app hung: the broker must drop it after 1.5 × the keep-alive (MQTT_KEEP_ALIVE_TIMEOUT).
func silentConnect(t *testing.T, tw *localaws.Emulator, clientID string, cert *testpki.Pair, keepAlive uint16) *tls.Conn {
	t.Helper()
	cfg := deviceConfig(tw, nil)
	conn, err := tls.Dial("tcp", tw.Broker.Addr(), &tls.Config{RootCAs: cfg.ServerCAs, ServerName: "localhost", MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Cert.Raw}, PrivateKey: cert.Key, Leaf: cert.Cert}}})
	if err != nil {
		t.Fatal(err)
	}
	var vh bytes.Buffer
	vh.Write([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, byte(keepAlive >> 8), byte(keepAlive)})
	vh.Write([]byte{byte(len(clientID) >> 8), byte(len(clientID))})
	vh.WriteString(clientID)
	pkt := []byte{0x10}
	for n := vh.Len(); ; {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if n == 0 {
			break
		}
	}
	pkt = append(pkt, vh.Bytes()...)
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK %x, %v", ack, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestWhyExplainsEachCase produces, in one emulator with AWS IoT logging on, a device of each kind — connected,
// never seen, refused (bad CN), deny-listed, certificate revoked, certificate inactive, taken over by a duplicate
// client id, dropped for keep-alive — and checks fleetctl why's verdict and the evidence it names.
func TestWhyExplainsEachCase(t *testing.T) {
	lw := &lineWriter{t: t}
	tw, info := startWhy(t, withIoTLogging(env.template), lw)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := deviceConfig(tw, timeline.New(lw))
	connected := func(name string) *devicesim.Device {
		d := devicesim.NewDevice(name, env.tenantCA, cfg)
		if err := d.Boot(); err != nil {
			t.Fatal(err)
		}
		if err := d.Connect(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return d
	}

	// Keep-alive first: the broker waits 1.5 × 30 s (AWS IoT's smallest keep-alive) before it drops the silent
	// connection, while the other cases run.
	sleeper := connected("sleeper")
	sleeper.Disconnect()
	time.Sleep(1100 * time.Millisecond) // one CONNECT per second per client id
	silent := silentConnect(t, tw, sleeper.Thing, sleeper.Certificate(), 30)
	droppedAt := time.Now().Add(45 * time.Second)

	t.Run("connected", func(t *testing.T) {
		d := connected("online")
		defer d.Disconnect()
		wantCase(t, why(t, tw, info, d.ID), "connected", "connectivity.connected is true", "Connect Success")
	})
	t.Run("never seen", func(t *testing.T) {
		wantCase(t, why(t, tw, info, testpki.RandomDeviceID()), "never-seen", "no record")
	})
	t.Run("refused", func(t *testing.T) {
		d := devicesim.NewDevice("bad-cn", env.tenantCA, cfg)
		bad, err := env.tenantCA.Issue(testpki.LeafOptions{CommonName: "not-an-azure-sphere-device"})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if c, err := d.ConnectOnce(d.Thing, bad); err == nil {
				c.Disconnect(0)
				t.Fatal("a certificate with a bad CN connected")
			}
			tw.DrainFunction()
			time.Sleep(1100 * time.Millisecond)
		}
		wantCase(t, why(t, tw, info, d.ID), "refused", "subject CN is not an Azure Sphere device ID", "AUTHENTICATION_FAILURE")
	})
	t.Run("deny-listed", func(t *testing.T) {
		d := connected("stolen")
		runFleetctl(t, info, "revoke", d.ID, "-reason", "reported stolen", "-quiet")
		waitClosed(t, d)
		wantCase(t, why(t, tw, info, d.ID), "denied", "reported stolen")
	})
	for _, st := range []iottypes.CertificateStatus{iottypes.CertificateStatusRevoked, iottypes.CertificateStatusInactive} {
		t.Run("certificate "+string(st), func(t *testing.T) {
			d := connected("set-" + strings.ToLower(string(st)))
			id := devicesim.CertificateID(d.Certificate().Cert)
			if _, err := tw.IoT.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: st}); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, d)
			wantCase(t, why(t, tw, info, d.ID), strings.ToLower(string(st)), "certificate "+id[:12]+" is "+string(st))
		})
	}
	t.Run("publish outside its policy", func(t *testing.T) {
		d := connected("stray")
		d.Client().Publish("devices/someone-else/telemetry", 1, false, []byte("{}")).WaitTimeout(5 * time.Second)
		waitClosed(t, d)
		wantCase(t, why(t, tw, info, d.ID), "disconnected", "AUTH_ERROR", "refused its publish to devices/someone-else/telemetry")
	})
	t.Run("duplicate client id", func(t *testing.T) {
		d := connected("cloned")
		defer d.Disconnect()
		time.Sleep(1100 * time.Millisecond)
		twin, err := d.ConnectOnce(d.Thing, d.Certificate())
		if err != nil {
			t.Fatal(err)
		}
		defer twin.Disconnect(0)
		waitClosed(t, d)
		wantCase(t, why(t, tw, info, d.ID), "duplicate-id", "DUPLICATE_CLIENTID")
		if c, found, err := env.moto.GetConnectivity(ctx, d.Thing); err != nil || !found || !c.Connected {
			t.Errorf("fleet index after the takeover: %+v found=%v %v; want connected (the twin holds the client id)", c, found, err)
		}
	})
	t.Run("keep-alive timeout", func(t *testing.T) {
		time.Sleep(time.Until(droppedAt))
		_ = silent.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := silent.Read(make([]byte, 1)); err == nil {
			t.Fatal("the silent connection is still open after 1.5 × its keep-alive")
		}
		v := why(t, tw, info, sleeper.ID)
		wantCase(t, v, "disconnected", "MQTT_KEEP_ALIVE_TIMEOUT")
		if c, _, err := env.moto.GetConnectivity(ctx, sleeper.Thing); err != nil || c.Connected || c.DisconnectReason != "MQTT_KEEP_ALIVE_TIMEOUT" {
			t.Errorf("fleet index: %+v %v; want disconnected, MQTT_KEEP_ALIVE_TIMEOUT", c, err)
		}
	})
}

// waitClosed waits until the broker has closed the device's connection.
func waitClosed(t *testing.T, d *devicesim.Device) {
	t.Helper()
	for i := 0; i < 400 && d.Client().IsConnectionOpen(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if d.Client().IsConnectionOpen() {
		t.Fatal("the broker kept the connection open")
	}
}

// registrationDenied is the template whose JITR role grants the thing-principal attachments on thing/* instead of
// cert/* (IAM denies the attachment, as in TestAttachmentGrantedOnThingIsDeniedAndDeadLettered), with AWS IoT
// logging on; redrive turns the registration queue's redrive to the dead-letter queue after two short receives.
func registrationDenied(t *testing.T, redrive bool) *stacktemplate.Template {
	variant := withIoTLogging(env.template)
	spec, err := stacktemplate.ReadStack(variant)
	if err != nil {
		t.Fatal(err)
	}
	stacktemplate.MoveGrant(variant, spec.Function, []string{"iot:AttachThingPrincipal", "iot:DetachThingPrincipal"}, ":cert/*", ":thing/*")
	if redrive {
		for _, id := range variant.OfType("AWS::SQS::Queue") {
			if strings.HasPrefix(id, "JitrRegistrationQueue") {
				variant.Resources[id].Properties["VisibilityTimeout"] = float64(1)
				variant.Resources[id].Properties["RedrivePolicy"].(map[string]any)["maxReceiveCount"] = float64(2)
			}
		}
	}
	return variant
}

// TestWhyPendingAndDeadLettered: a device whose certificate the JITR function cannot activate (its role lacks the
// grant) is PENDING_ACTIVATION, with the function's AccessDenied for that certificate as the evidence; once the
// registration queue redrives the event, the verdict is dead-lettered, and why leaves the message in the queue.
func TestWhyPendingAndDeadLettered(t *testing.T) {
	for _, redrive := range []bool{false, true} {
		name := map[bool]string{false: "pending", true: "dead-lettered"}[redrive]
		t.Run(name, func(t *testing.T) {
			lw := &lineWriter{t: t}
			tw, info := startWhy(t, registrationDenied(t, redrive), lw)
			cfg := deviceConfig(tw, timeline.New(lw))
			cfg.MaxAttempts = 3
			d := devicesim.NewDevice("stuck", env.tenantCA, cfg)
			if err := d.Boot(); err != nil {
				t.Fatal(err)
			}
			if err := d.Connect(context.Background()); !errors.Is(err, devicesim.ErrGaveUp) {
				t.Fatalf("Connect = %v, want ErrGaveUp", err)
			}
			if redrive {
				tw.DrainFunction()
			} else {
				waitForLine(t, tw, "AccessDenied")
			}
			v := why(t, tw, info, d.ID)
			wantCase(t, v, name, "PENDING_ACTIVATION", "AccessDenied")
			if redrive {
				// why peeked: the message is still there for the redrive.
				if records, err := tw.DeadLetters(context.Background()); err != nil || len(records) == 0 {
					t.Errorf("dead-letter queue after why: %d message(s), %v; why must leave them", len(records), err)
				}
			}
		})
	}
}

// waitForLine waits until the JITR function's log group holds a line containing text.
func waitForLine(t *testing.T, tw *localaws.Emulator, text string) {
	t.Helper()
	group := tw.Deployment.JITR().LogGroup
	for i := 0; i < 600; i++ {
		tw.LogShipper.Flush()
		out, err := tw.Logs.FilterLogEvents(context.Background(), filterInput(group, text))
		if err == nil && len(out.Events) > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no line with %q in log group %s", text, group)
}

func filterInput(group, text string) *cloudwatchlogs.FilterLogEventsInput {
	return &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), FilterPattern: aws.String(`"` + text + `"`)}
}
