package localaws_test

// End-to-end tests: the template `cdk synth` writes for a generated test tenant CA, deployed into moto by the emulator;
// the real JITR function (./lambda/jitr built for the host) under aws-lambda-rie; simulated devices over MQTT/TLS.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/broker"
	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/shadow"
	"github.com/sphere-jitr/sphere-jitr/emulator/lambdaruntime"
	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

var env struct {
	setup    *localaws.Setup
	template *stacktemplate.Template
	tenantCA *testpki.Pair
	moto     *motoserver.Server
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx := context.Background()
	root, err := motoserver.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "emulator-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setUp(ctx, root, dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e set-up:", err)
		return 1
	}
	defer env.setup.Close()
	return m.Run()
}

// setUp synthesizes the stack with a fresh test tenant CA and prepares the emulator once (functions built, moto
// running); each test starts its own emulator on it.
func setUp(ctx context.Context, root, dir string) error {
	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: "e2e tenant CA"})
	if err != nil {
		return err
	}
	verif, err := ca.IssueVerification("e2e-registration-code")
	if err != nil {
		return err
	}
	if err := ca.WriteFiles(dir, "tenant-ca"); err != nil {
		return err
	}
	if err := verif.WriteFiles(dir, "verification"); err != nil {
		return err
	}
	env.tenantCA = ca
	out := filepath.Join(dir, "cdk.out")
	synth := exec.CommandContext(ctx, "npx", "--no-install", "cdk", "synth", "-q", "-o", out,
		"-c", "tenantCaCerts="+filepath.Join(dir, "tenant-ca.pem"),
		"-c", "verificationCerts="+filepath.Join(dir, "verification.pem"),
		"-c", "tenantId=5e3f2a9c-1b7d-4e0a-9c3b-2d6f8a1e4b70",
		"-c", "certificateMode=DEFAULT")
	synth.Dir = root
	synth.Env = append(os.Environ(), "CDK_DISABLE_VERSION_CHECK=1")
	if msg, err := synth.CombinedOutput(); err != nil {
		return fmt.Errorf("cdk synth (run 'make setup' first): %w\n%s", err, msg)
	}
	if env.setup, err = localaws.Prepare(ctx, localaws.SetupOptions{TemplatePath: filepath.Join(out, "SphereJitr.template.json"), Root: root}); err != nil {
		return err
	}
	env.template, env.moto = env.setup.Template, env.setup.Moto
	return nil
}

// lineWriter sends each timeline line to the test log, so `go test -v` shows the flow.
type lineWriter struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// startEmulator deploys the synthesized template into a clean moto and starts broker and function.
func startEmulator(t *testing.T, tl *timeline.Timeline) *localaws.Emulator {
	t.Helper()
	return startEmulatorWith(t, tl, env.template)
}

// startEmulatorWith is startEmulator with another template (a variant of the synthesized one).
func startEmulatorWith(t *testing.T, tl *timeline.Timeline, template *stacktemplate.Template) *localaws.Emulator {
	t.Helper()
	tw, err := env.setup.Start(context.Background(), localaws.Options{Template: template, Workers: 2, Timeline: tl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tw.Stop)
	return tw
}

func deviceConfig(tw *localaws.Emulator, tl *timeline.Timeline) devicesim.Config {
	pool := x509.NewCertPool()
	pool.AddCert(tw.ServerCA.Cert)
	return devicesim.Config{
		Endpoint:  tw.Broker.Addr(),
		ServerCAs: pool,
		TopicRoot: tw.Info().TopicRoot,
		S3:        true,
		Backoff:   devicesim.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second},
		Timeline:  tl,
	}
}

// nextBootRefused boots the device again (a new certificate, auto-registered) and returns that certificate's status
// once the function has handled it; it fails the test unless the device gives up connecting, within 8 attempts for
// this boot. who names the device in the failure. (Its other boots keep their budget: 8 attempts at full jitter
// from 100 ms can all be spent in about a second, before a certificate that is provisioned is active.)
func nextBootRefused(ctx context.Context, t *testing.T, tw *localaws.Emulator, d *devicesim.Device, who string) string {
	t.Helper()
	defer d.SetMaxAttempts(d.SetMaxAttempts(8))
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	id := devicesim.CertificateID(d.Certificate().Cert)
	if err := d.Connect(ctx); !errors.Is(err, devicesim.ErrGaveUp) {
		t.Fatalf("the %s device's next boot: Connect = %v, want it to give up", who, err)
	}
	tw.DrainFunction()
	return certStatus(t, tw, id)
}

func certStatus(t *testing.T, tw *localaws.Emulator, id string) string {
	t.Helper()
	out, err := tw.IoT.DescribeCertificate(context.Background(), &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
	var nf *iottypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		return "deleted"
	}
	if err != nil {
		t.Fatalf("describe certificate %s: %v", id, err)
	}
	return string(out.CertificateDescription.Status)
}

// checkContract checks that the emulator deployed and ran the template with the names package contract declares:
// the function got every environment variable, each rule listens on the registered-event topic of its CA, and the
// function marked each thing it created with the stack name.
func checkContract(t *testing.T, tw *localaws.Emulator, sum *localaws.Summary) {
	t.Helper()
	for _, name := range contract.JitrEnv {
		if tw.Deployment.JITR().Env[name] == "" {
			t.Errorf("the emulator's JITR function has no %s", name)
		}
	}
	var jitrRules []deploy.Rule
	for _, rule := range tw.Deployment.Rules {
		if f, ok := tw.Deployment.Functions[rule.Function]; !ok || f.Kind == deploy.KindJITR {
			jitrRules = append(jitrRules, rule)
		} else if want := contract.S3URLRequestTopic(tw.Info().TopicRoot, "+"); rule.TopicFilter != want {
			t.Errorf("S3 URL rule %s listens on %s, want %s", rule.Name, rule.TopicFilter, want)
		}
	}
	if len(jitrRules) != len(tw.Deployment.CAs) {
		t.Errorf("%d JITR rules for %d CAs", len(jitrRules), len(tw.Deployment.CAs))
	}
	for i, rule := range jitrRules {
		if want := contract.RegisteredEventTopic(tw.Deployment.CAs[i].ID); rule.TopicFilter != want {
			t.Errorf("rule %s listens on %s, want %s", rule.Name, rule.TopicFilter, want)
		}
	}
	for _, f := range tw.Deployment.Functions {
		if f.Kind != deploy.KindPresign {
			continue
		}
		for _, name := range contract.PresignEnv {
			if f.Env[name] == "" {
				t.Errorf("the emulator's presign function has no %s", name)
			}
		}
	}
	for _, th := range sum.Things {
		out, err := tw.IoT.DescribeThing(context.Background(), &iot.DescribeThingInput{ThingName: aws.String(th.Name)})
		if err != nil {
			t.Fatalf("describe thing %s: %v", th.Name, err)
		}
		if got := out.Attributes[contract.AttrProvisionedBy]; got != contract.StackName {
			t.Errorf("thing %s: %s = %q, want %q", th.Name, contract.AttrProvisionedBy, got, contract.StackName)
		}
	}
}

func TestDemoScenario(t *testing.T) {
	lw := &lineWriter{t: t}
	tl := timeline.New(lw)
	tw := startEmulator(t, tl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	devices, err := devicesim.Run(ctx, env.tenantCA, deviceConfig(tw, tl), devicesim.Scenario{Devices: 3, Reboot: []int{1}})
	if err != nil {
		t.Fatalf("fleet: %v", err)
	}
	tw.DrainFunction()
	sum, err := localaws.Summarize(ctx, tw.AWS, tw.Deployment.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Things) != 3 {
		t.Fatalf("things = %d, want 3", len(sum.Things))
	}
	var (
		oldCert  devicesim.Session
		rebooted *devicesim.Device
	)
	for _, d := range devices {
		wantBoots := 1
		if d.Name == "device-2" {
			wantBoots = 2
		}
		if len(d.Sessions) != wantBoots {
			t.Errorf("%s connected %d times, want %d", d.Name, len(d.Sessions), wantBoots)
			continue
		}
		for _, s := range d.Sessions {
			if s.Attempts < 2 {
				t.Errorf("%s boot %d connected on attempt %d: a new certificate's first connection must be refused (JITR)", d.Name, s.Boot, s.Attempts)
			}
		}
		last := d.Sessions[len(d.Sessions)-1].CertificateID
		if got := certStatus(t, tw, last); got != "ACTIVE" {
			t.Errorf("%s current certificate is %s, want ACTIVE", d.Name, got)
		}
		if wantBoots == 2 {
			old := d.Sessions[0].CertificateID
			if got := certStatus(t, tw, old); got == "ACTIVE" || got == "PENDING_ACTIVATION" {
				t.Errorf("%s certificate of the first boot is %s after the reboot, want it revoked, inactive or deleted", d.Name, got)
			}
			oldCert = d.Sessions[0]
			rebooted = d
		}
		var ts *localaws.ThingSummary
		for i := range sum.Things {
			if sum.Things[i].Name == d.Thing {
				ts = &sum.Things[i]
			}
		}
		if ts == nil {
			t.Errorf("%s: no thing %s", d.Name, d.Thing)
			continue
		}
		if len(ts.ActiveCertificates) != 1 || ts.ActiveCertificates[0] != last {
			t.Errorf("%s: active certificates of the thing = %v, want only %s", d.Name, ts.ActiveCertificates, last)
		}
		var reported struct {
			Boot          int    `json:"boot"`
			CertificateID string `json:"certificateId"`
		}
		if err := json.Unmarshal([]byte(ts.ShadowReported), &reported); err != nil || reported.Boot != wantBoots || reported.CertificateID != last {
			t.Errorf("%s: shadow reported %s, want boot %d with certificate %s (%v)", d.Name, ts.ShadowReported, wantBoots, last, err)
		}
	}
	checkContract(t, tw, sum)
	// IAM was enforced on the function's calls, and the template's grants allowed every one of them.
	if sum.IAM.Authorized == 0 || sum.IAM.Denied != 0 {
		t.Errorf("IAM: %d calls authorized, %d denied (%+v); want some authorized and none denied", sum.IAM.Authorized, sum.IAM.Denied, sum.IAM.Denials)
	}
	t.Log(sum.IAMLine())
	if sum.Certificates["ACTIVE"] != 3 || sum.Certificates["PENDING_ACTIVATION"] != 0 {
		t.Errorf("certificates by status = %v, want 3 ACTIVE, none pending", sum.Certificates)
	}
	if len(sum.Objects) != 3 {
		t.Errorf("S3 objects = %v, want one per device", sum.Objects)
	}
	for _, d := range devices {
		if key := contract.DeviceObjectPrefix + d.Thing + "/" + devicesim.ObjectName; !slices.Contains(sum.Objects, key) {
			t.Errorf("%s: no object %s in %v", d.Name, key, sum.Objects)
		}
	}
	for _, step := range []string{"registered PENDING_ACTIVATION", "→ ACTIVE", "connected as thing", "telemetry published",
		"shadow update accepted", "S3: runtime PUT URL", "S3: uploaded", "reboot", "old certificate"} {
		if !strings.Contains(lw.String(), step) {
			t.Errorf("timeline has no %q step", step)
		}
	}

	// The first boot's certificate, presented again (a late or replayed boot), never gets back in.
	if rebooted == nil {
		t.Fatal("no device rebooted")
	}
	for i := 0; i < 3; i++ {
		if c, err := rebooted.ConnectOnce(rebooted.Thing, oldCertificate(t, rebooted, oldCert)); err == nil {
			c.Disconnect(0)
			t.Fatalf("the superseded certificate of %s connected (attempt %d)", rebooted.Name, i+1)
		}
		tw.DrainFunction()
	}
	if got := certStatus(t, tw, oldCert.CertificateID); got == "ACTIVE" {
		t.Errorf("superseded certificate is ACTIVE again after it reconnected")
	}
	if got := certStatus(t, tw, rebooted.Sessions[1].CertificateID); got != "ACTIVE" {
		t.Errorf("the newest certificate is %s after the old one reconnected, want ACTIVE", got)
	}
}

func oldCertificate(t *testing.T, d *devicesim.Device, s devicesim.Session) *testpki.Pair {
	t.Helper()
	for _, p := range d.Certificates() {
		if devicesim.CertificateID(p.Cert) == s.CertificateID {
			return p
		}
	}
	t.Fatalf("%s has no certificate %s", d.Name, s.CertificateID)
	return nil
}

// connectFleet provisions n devices and leaves them connected.
func connectFleet(t *testing.T, tw *localaws.Emulator, n int) []*devicesim.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := deviceConfig(tw, nil)
	var devices []*devicesim.Device
	for i := 0; i < n; i++ {
		d := devicesim.NewDevice(fmt.Sprintf("device-%d", i+1), env.tenantCA, cfg)
		if err := d.Boot(); err != nil {
			t.Fatal(err)
		}
		if err := d.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Disconnect)
		devices = append(devices, d)
	}
	return devices
}

// waitLost waits until the broker has dropped the client.
func waitLost(t *testing.T, c paho.Client) {
	t.Helper()
	for i := 0; i < 400 && c.IsConnectionOpen(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if c.IsConnectionOpen() {
		t.Fatal("the broker kept the connection of a client that published outside its policy")
	}
}

func TestDeviceCannotReachAnotherDevice(t *testing.T) {
	tw := startEmulator(t, nil)
	devs := connectFleet(t, tw, 2)
	a, b := devs[0], devs[1]
	ctx := context.Background()

	// B listens on its own topic tree; everything it receives is recorded in order.
	var mu sync.Mutex
	var gotB []string
	marker := make(chan struct{})
	sub := b.Client().Subscribe("devices/"+b.Thing+"/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		gotB = append(gotB, string(m.Payload()))
		mu.Unlock()
		if string(m.Payload()) == "marker" {
			close(marker)
		}
	})
	if !sub.WaitTimeout(10*time.Second) || sub.(*paho.SubscribeToken).Result()["devices/"+b.Thing+"/#"] == 0x80 {
		t.Fatal("B cannot subscribe to its own topics")
	}

	// A may not subscribe to B's topics, B's shadow, or everyone's.
	for _, f := range []string{"devices/" + b.Thing + "/telemetry", "devices/" + b.Thing + "/#", "devices/+/telemetry", "#",
		"$aws/things/" + b.Thing + "/shadow/update/accepted", "$aws/things/" + b.Thing + "/shadow/#"} {
		tok := a.Client().Subscribe(f, 1, nil)
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatalf("subscribe %s: no SUBACK", f)
		}
		if code := tok.(*paho.SubscribeToken).Result()[f]; code != 0x80 {
			t.Errorf("A subscribing to %s got SUBACK %#x, want 0x80 (refused)", f, code)
		}
	}
	// Positive control: A's own filter is granted.
	own := "devices/" + a.Thing + "/#"
	if tok := a.Client().Subscribe(own, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.(*paho.SubscribeToken).Result()[own] == 0x80 {
		t.Error("A cannot subscribe to its own topics")
	}

	// A publishing on B's telemetry topic is dropped and A is disconnected.
	a.Client().Publish("devices/"+b.Thing+"/telemetry", 1, false, "forged by A")
	waitLost(t, a.Client())

	// A (reconnected) publishing an update to B's shadow is dropped too.
	before, err := tw.Shadow.Do(ctx, "GET", b.Thing, "", nil)
	var se *shadow.Error
	if err != nil && !(errors.As(err, &se) && se.Code == 404) {
		t.Fatal(err)
	}
	time.Sleep(broker.ConnectInterval) // AWS IoT takes one CONNECT per second per client id
	ca, err := a.ConnectOnce(a.Thing, a.Certificate())
	if err != nil {
		t.Fatalf("A reconnect: %v", err)
	}
	defer ca.Disconnect(0)
	ca.Publish("$aws/things/"+b.Thing+"/shadow/update", 1, false, `{"state":{"reported":{"owner":"A"}}}`)
	waitLost(t, ca)
	after, err := tw.Shadow.Do(ctx, "GET", b.Thing, "", nil)
	if !bytes.Equal(before, after) || (err != nil && !(errors.As(err, &se) && se.Code == 404)) || bytes.Contains(after, []byte("owner")) {
		t.Errorf("B's shadow changed after A's update: before %s, after %s (%v)", before, after, err)
	}

	// B still receives its own messages, and nothing of A's arrived before them.
	b.Client().Publish("devices/"+b.Thing+"/telemetry", 1, false, "marker")
	select {
	case <-marker:
	case <-time.After(10 * time.Second):
		t.Fatal("B did not receive its own message")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gotB) != 1 {
		t.Errorf("B received %q, want only its own marker", gotB)
	}
}

func TestCertificateNotAttachedToThingCannotConnect(t *testing.T) {
	tw := startEmulator(t, nil)
	devs := connectFleet(t, tw, 2)
	a, b := devs[0], devs[1]
	a.Disconnect()
	b.Disconnect()

	cases := []struct {
		name     string
		clientID string
		cert     *testpki.Pair
	}{
		{"A's certificate as B", b.Thing, a.Certificate()},
		{"B's certificate as A", a.Thing, b.Certificate()},
		{"A's certificate as an unknown thing", strings.Repeat("0", 128), a.Certificate()},
		{"A's certificate with the upper-case device ID", a.ID, a.Certificate()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := a.ConnectOnce(tc.clientID, tc.cert); err == nil {
				c.Disconnect(0)
				t.Errorf("connected with client id %s", timeline.Short(tc.clientID))
			}
		})
	}

	// An ACTIVE certificate with the device policy attached but no thing at all.
	orphan := devicesim.NewDevice("orphan", env.tenantCA, deviceConfig(tw, nil))
	if err := orphan.Boot(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg, err := tw.IoT.RegisterCertificate(ctx, &iot.RegisterCertificateInput{
		CertificatePem: aws.String(string(orphan.Certificate().CertPEM())), CaCertificatePem: aws.String(tw.Deployment.CAs[0].PEM),
		Status: iottypes.CertificateStatusActive,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tw.IoT.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(tw.Info().DevicePolicy), Target: reg.CertificateArn}); err != nil {
		t.Fatal(err)
	}
	t.Run("ACTIVE certificate with policy but no thing", func(t *testing.T) {
		if c, err := orphan.ConnectOnce(orphan.Thing, orphan.Certificate()); err == nil {
			c.Disconnect(0)
			t.Error("connected without a thing attached to the certificate")
		}
	})

	// Positive control: A with its own certificate and thing still connects (a second after its last CONNECT:
	// AWS IoT takes one per second per client id).
	time.Sleep(broker.ConnectInterval)
	c, err := a.ConnectOnce(a.Thing, a.Certificate())
	if err != nil {
		t.Fatalf("A cannot connect as itself: %v", err)
	}
	c.Disconnect(0)

	// Deny by default: attached to its thing but without any policy, A's certificate connects no more.
	aCert := devicesim.CertificateID(a.Certificate().Cert)
	desc, err := tw.IoT.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(aCert)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tw.IoT.DetachPolicy(ctx, &iot.DetachPolicyInput{PolicyName: aws.String(tw.Info().DevicePolicy), Target: desc.CertificateDescription.CertificateArn}); err != nil {
		t.Fatal(err)
	}
	t.Run("attached certificate without a policy", func(t *testing.T) {
		if c, err := a.ConnectOnce(a.Thing, a.Certificate()); err == nil {
			c.Disconnect(0)
			t.Error("connected without any policy attached")
		}
	})
}

func TestForeignCADeviceNeverConnectsNorRegisters(t *testing.T) {
	tw := startEmulator(t, nil)
	foreign, err := testpki.NewCA(testpki.CAOptions{CommonName: "Test Azure Sphere Tenant CA"}) // same name, other key
	if err != nil {
		t.Fatal(err)
	}
	cfg := deviceConfig(tw, nil)
	cfg.MaxAttempts = 4
	d := devicesim.NewDevice("foreign", foreign, cfg)
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	err = d.Connect(context.Background())
	if !errors.Is(err, devicesim.ErrGaveUp) {
		t.Fatalf("foreign device Connect = %v, want ErrGaveUp", err)
	}
	tw.DrainFunction()
	_, err = tw.IoT.DescribeCertificate(context.Background(), &iot.DescribeCertificateInput{CertificateId: aws.String(devicesim.CertificateID(d.Certificate().Cert))})
	var nf *iottypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("foreign certificate in the registry (describe: %v)", err)
	}
	certs, err := tw.IoT.ListCertificates(context.Background(), &iot.ListCertificatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	things, err := tw.IoT.ListThings(context.Background(), &iot.ListThingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs.Certificates) != 0 || len(things.Things) != 0 {
		t.Errorf("registry after a foreign device: %d certificates, %d things, want none", len(certs.Certificates), len(things.Things))
	}
}

func TestFiftyDevicesBootingAtOnceAreProvisioned(t *testing.T) {
	tw := startEmulator(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	devices, err := devicesim.Run(ctx, env.tenantCA, deviceConfig(tw, nil), devicesim.Scenario{Devices: 50, ConnectOnly: true})
	if err != nil {
		t.Fatalf("fleet: %v", err)
	}
	tw.DrainFunction()
	sum, err := localaws.Summarize(ctx, tw.AWS, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Things) != 50 || sum.Certificates["ACTIVE"] != 50 || len(sum.Certificates) != 1 {
		t.Errorf("after 50 boots: %d things, certificates %v; want 50 things, 50 ACTIVE, nothing else", len(sum.Things), sum.Certificates)
	}
	connected := 0
	for _, d := range devices {
		if len(d.Sessions) == 1 {
			connected++
		}
	}
	if connected != 50 {
		t.Errorf("%d of 50 devices connected", connected)
	}
	t.Logf("50 devices: provisioning latency p50 %s, p95 %s", devicesim.Percentile(devicesim.Latencies(devices), 50), devicesim.Percentile(devicesim.Latencies(devices), 95))
}

func TestShadowTopicsAreBridgedWithAcceptedRejectedAndDelta(t *testing.T) {
	tw := startEmulator(t, nil)
	d := connectFleet(t, tw, 1)[0]
	c := d.Client()
	got := map[string]chan []byte{}
	for _, s := range []string{"update/accepted", "update/rejected", "update/delta", "get/accepted", "get/rejected", "delete/accepted", "delete/rejected"} {
		ch := make(chan []byte, 4)
		got[s] = ch
		tok := c.Subscribe(d.ShadowTopic(s), 1, func(_ paho.Client, m paho.Message) { ch <- m.Payload() })
		if !tok.WaitTimeout(10*time.Second) || tok.(*paho.SubscribeToken).Result()[d.ShadowTopic(s)] == 0x80 {
			t.Fatalf("subscribe to own %s refused", s)
		}
	}
	request := func(op, payload, want string) map[string]any {
		t.Helper()
		if tok := c.Publish(d.ShadowTopic(op), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", op, tok.Error())
		}
		select {
		case p := <-got[want]:
			var doc map[string]any
			if err := json.Unmarshal(p, &doc); err != nil {
				t.Fatalf("%s: %s is not JSON", want, p)
			}
			return doc
		case <-time.After(15 * time.Second):
			t.Fatalf("%s %s: no reply on %s", op, payload, want)
			return nil
		}
	}

	doc := request("get", `{"clientToken":"g0"}`, "get/rejected")
	if doc["code"] != float64(404) || doc["clientToken"] != "g0" {
		t.Errorf("get of a missing shadow: %v, want code 404 with the client token", doc)
	}
	doc = request("update", `{"state":{"reported":{"led":"off"},"desired":{"led":"on"}},"clientToken":"u1"}`, "update/accepted")
	if doc["clientToken"] != "u1" || doc["version"] != float64(1) {
		t.Errorf("update/accepted = %v, want version 1 and the client token", doc)
	}
	select {
	case p := <-got["update/delta"]:
		var delta struct {
			State map[string]any `json:"state"`
		}
		if err := json.Unmarshal(p, &delta); err != nil || delta.State["led"] != "on" {
			t.Errorf("update/delta = %s, want state.led = on", p)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no update/delta while desired and reported differ")
	}
	doc = request("get", `{}`, "get/accepted")
	if state, _ := doc["state"].(map[string]any); state["delta"] == nil || state["reported"] == nil {
		t.Errorf("get/accepted = %v, want reported and delta", doc)
	}
	doc = request("update", `{"state":{"reported":{"led":"on"}},"version":7}`, "update/rejected")
	if doc["code"] != float64(409) {
		t.Errorf("update with a stale version: %v, want code 409", doc)
	}
	doc = request("update", `{"desired":{"x":1}}`, "update/rejected")
	if doc["code"] != float64(400) {
		t.Errorf("update without state: %v, want code 400", doc)
	}
	request("delete", `{}`, "delete/accepted")
	request("get", `{}`, "get/rejected")
}

// AWS IoT publishes the registered event again on every connection attempt with a PENDING_ACTIVATION certificate,
// and every event reaches the rule's function: none is merged with a copy still waiting for the function. The
// broker asks the registry on each attempt, so a certificate activated meanwhile connects at once, even while the
// function still has events of it to handle.
func TestEveryPendingConnectionAttemptReachesTheFunction(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var events []contract.RegisteredEvent
	// The rule sends each event to the registration queue; the event source mapping hands the function batches.
	slow := lambdaruntime.InvokeFunc(func(ctx context.Context, payload []byte) ([]byte, error) {
		var batch struct{ Records []lambdaruntime.SQSRecord }
		if err := json.Unmarshal(payload, &batch); err != nil {
			return nil, err
		}
		for _, r := range batch.Records {
			var ev contract.RegisteredEvent
			if err := json.Unmarshal([]byte(r.Body), &ev); err != nil {
				return nil, err
			}
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
		select { // a function slower than the device's retries: its events queue up
		case <-release:
		case <-ctx.Done():
		}
		return []byte(`{"batchItemFailures":[]}`), nil
	})
	tw, err := env.setup.Start(context.Background(), localaws.Options{Function: slow, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tw.Stop) // its end also ends the function's wait

	d := devicesim.NewDevice("pending", env.tenantCA, deviceConfig(tw, nil))
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	const attempts = 4
	for i := 0; i < attempts; i++ {
		if c, err := d.ConnectOnce(d.Thing, d.Certificate()); err == nil {
			c.Disconnect(0)
			t.Fatalf("attempt %d connected with a PENDING_ACTIVATION certificate", i+1)
		}
	}
	certID := devicesim.CertificateID(d.Certificate().Cert)
	if got := certStatus(t, tw, certID); got != "PENDING_ACTIVATION" {
		t.Fatalf("certificate is %s, want PENDING_ACTIVATION", got)
	}

	// Provisioned by hand while the function is still busy: the next attempt must be admitted by the registry.
	ctx := context.Background()
	arn := aws.String(fmt.Sprintf("arn:aws:iot:%s:%s:cert/%s", motoserver.Region, motoserver.AccountID, certID))
	if _, err := tw.IoT.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(d.Thing)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.IoT.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(d.Thing), Principal: arn, ThingPrincipalType: iottypes.ThingPrincipalTypeExclusiveThing}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.IoT.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(tw.Info().DevicePolicy), Target: arn}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.IoT.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(certID), NewStatus: iottypes.CertificateStatusActive}); err != nil {
		t.Fatal(err)
	}
	c, err := d.ConnectOnce(d.Thing, d.Certificate())
	if err != nil {
		t.Fatalf("ACTIVE certificate refused while its earlier events wait for the function: %v", err)
	}
	c.Disconnect(0)

	close(release)
	tw.DrainFunction()
	mu.Lock()
	defer mu.Unlock()
	if len(events) != attempts {
		t.Fatalf("the function received %d registered events for %d attempts with a PENDING_ACTIVATION certificate", len(events), attempts)
	}
	for i, ev := range events {
		if ev.CertificateID != certID || ev.CertificateStatus != "PENDING_ACTIVATION" || ev.CACertificateID != tw.Deployment.CAs[0].ID {
			t.Errorf("event %d = %+v, want certificate %s PENDING_ACTIVATION of CA %s", i+1, ev, certID, tw.Deployment.CAs[0].ID)
		}
	}
}
