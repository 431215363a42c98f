package localaws_test

// End-to-end tests of the operator tool (cmd/fleetctl, the built binary) against the emulator: revoke a connected
// device, its next certificates refused by the JITR function, allow it again; status and certs list exactly what
// moto holds, over several pages.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

var fleetctlBin struct {
	once sync.Once
	path string
	err  error
}

// fleetctl builds cmd/fleetctl once per test binary.
func fleetctl(t *testing.T) string {
	t.Helper()
	fleetctlBin.once.Do(func() {
		root, err := motoserver.RepoRoot()
		if err != nil {
			fleetctlBin.err = err
			return
		}
		dir, err := os.MkdirTemp("", "fleetctl-")
		if err != nil {
			fleetctlBin.err = err
			return
		}
		fleetctlBin.path = filepath.Join(dir, "fleetctl")
		cmd := exec.Command("go", "build", "-o", fleetctlBin.path, "./cmd/fleetctl")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fleetctlBin.err = fmt.Errorf("build fleetctl: %v\n%s", err, out)
		}
	})
	if fleetctlBin.err != nil {
		t.Fatal(fleetctlBin.err)
	}
	return fleetctlBin.path
}

// syncBuffer collects the function's output (its EMF metric lines) from concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startOperated starts the emulator with the function's output captured and writes its info file, as
// `localaws -info` does, for fleetctl -emulator.
func startOperated(t *testing.T, tl *timeline.Timeline) (*localaws.Emulator, string, *syncBuffer) {
	t.Helper()
	return startOperatedWith(t, localaws.Options{Timeline: tl})
}

// startOperatedWith is startOperated with other options (a variant of the synthesized template, a slower
// registry poll); Workers defaults to 2.
func startOperatedWith(t *testing.T, opts localaws.Options) (*localaws.Emulator, string, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	opts.Log = out
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	tw, err := env.setup.Start(context.Background(), opts)
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
	return tw, info, out
}

// runFleetctl runs the tool against the emulator and returns stdout and stderr; it fails the test on a non-zero
// exit.
func runFleetctl(t *testing.T, info string, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(fleetctl(t), append(args, "-emulator", info, "-rate-share", "1")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fleetctl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("fleetctl %s\n%s", strings.Join(args, " "), stdout.String())
	return stdout.String(), stderr.String()
}

// TestRevokedDeviceIsRefusedUntilAllowed: a connected device is revoked with fleetctl; its certificate is REVOKED
// and can no longer connect; the certificate of its next boot is refused by the JITR function (REVOKED, Denied
// counted); after fleetctl allow, the certificate of the boot after that is provisioned.
func TestRevokedDeviceIsRefusedUntilAllowed(t *testing.T) {
	lw := &lineWriter{t: t}
	tw, info, fnOut := startOperated(t, timeline.New(lw))
	cfg := deviceConfig(tw, timeline.New(lw))
	d := devicesim.NewDevice("device-1", env.tenantCA, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	first := d.Certificate()
	firstID := devicesim.CertificateID(first.Cert)

	out, _ := runFleetctl(t, info, "revoke", strings.ToUpper(d.ID), "-reason", "reported stolen", "-json")
	var rev struct {
		Thing   string   `json:"thingName"`
		Revoked []string `json:"revokedCertificates"`
	}
	if err := json.Unmarshal([]byte(out), &rev); err != nil {
		t.Fatalf("revoke -json: %v\n%s", err, out)
	}
	if rev.Thing != d.Thing || len(rev.Revoked) != 1 || rev.Revoked[0] != firstID {
		t.Fatalf("revoke reported %+v, want thing %s and certificate %s", rev, d.Thing, firstID)
	}
	if got := certStatus(t, tw, firstID); got != "REVOKED" {
		t.Fatalf("the revoked device's certificate is %s, want REVOKED", got)
	}
	d.Disconnect() // the cut itself is TestRevokeCutsOffTheOpenConnection's
	if c, err := d.ConnectOnce(d.Thing, first); err == nil {
		c.Disconnect(0)
		t.Fatal("the revoked certificate connected again")
	}

	// Next boot: a new certificate, auto-registered, refused by the function because the device is denied.
	if got := nextBootRefused(ctx, t, tw, d, "denied"); got != "REVOKED" {
		t.Errorf("the denied device's new certificate is %s, want REVOKED", got)
	}
	if !regexp.MustCompile(`"` + contract.MetricDenied + `":1`).MatchString(fnOut.String()) {
		t.Errorf("the function counted no %s:\n%s", contract.MetricDenied, fnOut.String())
	}
	devOut, _ := runFleetctl(t, info, "device", d.ID)
	if !strings.Contains(devOut, "reported stolen") || !strings.Contains(devOut, "0 attached") {
		t.Errorf("device view after revoke:\n%s", devOut)
	}

	runFleetctl(t, info, "allow", d.ID)
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(ctx); err != nil {
		t.Fatalf("the allowed device's next boot: %v", err)
	}
	defer d.Disconnect()
	third := devicesim.CertificateID(d.Certificate().Cert)
	if got := certStatus(t, tw, third); got != "ACTIVE" {
		t.Errorf("the allowed device's certificate is %s, want ACTIVE", got)
	}
	out, _ = runFleetctl(t, info, "device", d.ID, "-json")
	var dev struct {
		Denied       any `json:"denied"`
		Certificates []struct {
			ID     string `json:"certificateId"`
			Status string `json:"status"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(out), &dev); err != nil {
		t.Fatal(err)
	}
	if dev.Denied != nil || len(dev.Certificates) != 1 || dev.Certificates[0].ID != third || dev.Certificates[0].Status != "ACTIVE" {
		t.Errorf("device after allow: %s", out)
	}
}

// TestRevokeCutsOffTheOpenConnection: AWS IoT disconnects, within a few minutes, every connection made with a
// certificate that leaves ACTIVE (UpdateCertificate, AWS IoT API Reference), and refuses it from then on. The
// emulator's broker must do the same (issue 17 adds the cut); this test waits up to 20 s.
func TestRevokeCutsOffTheOpenConnection(t *testing.T) {
	tw, info, _ := startOperated(t, nil)
	d := connectFleet(t, tw, 1)[0]
	client := d.Client()
	runFleetctl(t, info, "revoke", d.ID, "-quiet")
	for i := 0; i < 400 && client.IsConnectionOpen(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if client.IsConnectionOpen() {
		t.Fatal("the broker kept the connection of a REVOKED certificate open; AWS IoT disconnects it")
	}
	if c, err := d.ConnectOnce(d.Thing, d.Certificate()); err == nil {
		c.Disconnect(0)
		t.Fatal("the REVOKED certificate connected again")
	}
}

// TestStatusListsExactlyWhatMotoHolds seeds moto with more devices and certificates than one page holds (things
// of this stack and of another, certificates in every status) and checks status and certs against moto's own
// listing.
func TestStatusListsExactlyWhatMotoHolds(t *testing.T) {
	tw, info, _ := startOperated(t, nil)
	ctx := context.Background()
	ca := tw.Deployment.CAs[0]
	policy := tw.Info().DevicePolicy
	const devices, pageSize = 64, 25
	wantActive := map[string]string{} // thing → ACTIVE certificate
	wantStatus := map[string]int{}
	register := func(pair *testpki.Pair, status iottypes.CertificateStatus) *iot.RegisterCertificateOutput {
		t.Helper()
		reg, err := tw.IoT.RegisterCertificate(ctx, &iot.RegisterCertificateInput{
			CertificatePem: aws.String(string(pair.CertPEM())), CaCertificatePem: aws.String(ca.PEM), Status: status,
		})
		if err != nil {
			t.Fatal(err)
		}
		wantStatus[string(status)]++
		return reg
	}
	for i := 0; i < devices; i++ {
		id := testpki.RandomDeviceID()
		thing := strings.ToLower(id)
		pair, err := env.tenantCA.IssueDevice(id, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		stack := contract.StackName
		if i%16 == 15 {
			stack = "AnotherStack" // not ours: status must leave it out
		}
		if _, err := tw.IoT.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(thing),
			AttributePayload: &iottypes.AttributePayload{Attributes: map[string]string{contract.AttrProvisionedBy: stack, contract.AttrProvisionedAt: "2026-01-01T00:00:00Z"}}}); err != nil {
			t.Fatal(err)
		}
		if i%8 == 7 {
			continue // a thing whose certificate is gone
		}
		reg := register(pair, iottypes.CertificateStatusActive)
		if _, err := tw.IoT.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(thing), Principal: reg.CertificateArn}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.IoT.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(policy), Target: reg.CertificateArn}); err != nil {
			t.Fatal(err)
		}
		if stack == contract.StackName {
			wantActive[thing] = aws.ToString(reg.CertificateId)
		}
		if i%5 == 0 { // a newer certificate of the same device, stuck PENDING
			newer, err := env.tenantCA.IssueDevice(id, time.Now().Add(-time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			register(newer, iottypes.CertificateStatusPendingActivation)
		}
		if i%7 == 0 { // an old one left INACTIVE
			older, err := env.tenantCA.IssueDevice(id, time.Now().Add(-48*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			register(older, iottypes.CertificateStatusInactive)
		}
	}

	out, progress := runFleetctl(t, info, "status", "-walk", "-json", "-page-size", fmt.Sprint(pageSize))
	var st struct {
		Devices []struct {
			Thing  string `json:"thingName"`
			Active *struct {
				ID       string    `json:"certificateId"`
				NotAfter time.Time `json:"notAfter"`
			} `json:"activeCertificate"`
		} `json:"devices"`
		ByState map[string]int `json:"certificatesByStatus"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json: %v", err)
	}

	// moto's own view, through calls fleetctl does not make.
	truth := map[string]bool{}
	for _, th := range listAllThings(t, tw) {
		if th.Attributes[contract.AttrProvisionedBy] == contract.StackName {
			truth[aws.ToString(th.ThingName)] = true
		}
	}
	got := map[string]string{}
	for _, d := range st.Devices {
		if !truth[d.Thing] {
			t.Errorf("status lists %s, which is not a thing of the stack", d.Thing)
		}
		if d.Active != nil {
			got[d.Thing] = d.Active.ID
			if d.Active.NotAfter.IsZero() {
				t.Errorf("%s: no expiry", d.Thing)
			}
		} else {
			got[d.Thing] = ""
		}
	}
	if len(st.Devices) != len(truth) {
		t.Errorf("status lists %d devices, moto holds %d things of the stack", len(st.Devices), len(truth))
	}
	for thing := range truth {
		if got[thing] != wantActive[thing] {
			t.Errorf("%s: status says ACTIVE certificate %q, moto has %q", thing, got[thing], wantActive[thing])
		}
	}
	certs, err := tw.IoT.ListCertificates(ctx, &iot.ListCertificatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	motoByStatus := map[string]int{}
	for _, c := range certs.Certificates {
		motoByStatus[string(c.Status)]++
	}
	if fmt.Sprint(st.ByState) != fmt.Sprint(motoByStatus) || fmt.Sprint(st.ByState) != fmt.Sprint(wantStatus) {
		t.Errorf("status counts certificates %v; moto holds %v; seeded %v", st.ByState, motoByStatus, wantStatus)
	}
	// More than one page of each, followed to the end.
	thingPages := regexp.MustCompile(`things: page (\d+)`).FindAllStringSubmatch(progress, -1)
	certPages := regexp.MustCompile(`certificates of CA \S+: page (\d+)`).FindAllStringSubmatch(progress, -1)
	if len(thingPages) < 2 || len(certPages) < 2 {
		t.Errorf("pages read: things %d, certificates %d; want more than one of each (progress:\n%s)", len(thingPages), len(certPages), progress)
	}
	t.Logf("%d things (%d of the stack) in %d pages, %d certificates in %d pages", len(listAllThings(t, tw)), len(truth), len(thingPages), len(certs.Certificates), len(certPages))

	out, _ = runFleetctl(t, info, "certs", "-status", "PENDING_ACTIVATION", "-json", "-page-size", fmt.Sprint(pageSize), "-quiet")
	var pending []struct {
		ID     string `json:"certificateId"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &pending); err != nil {
		t.Fatal(err)
	}
	var pendingIDs, motoPending []string
	for _, p := range pending {
		pendingIDs = append(pendingIDs, p.ID)
	}
	for _, c := range certs.Certificates {
		if c.Status == iottypes.CertificateStatusPendingActivation {
			motoPending = append(motoPending, aws.ToString(c.CertificateId))
		}
	}
	sort.Strings(pendingIDs)
	sort.Strings(motoPending)
	if strings.Join(pendingIDs, ",") != strings.Join(motoPending, ",") || len(pendingIDs) == 0 {
		t.Errorf("certs -status PENDING_ACTIVATION lists %d, moto holds %d", len(pendingIDs), len(motoPending))
	}
}

func listAllThings(t *testing.T, tw *localaws.Emulator) []iottypes.ThingAttribute {
	t.Helper()
	var out []iottypes.ThingAttribute
	pages := iot.NewListThingsPaginator(tw.IoT, &iot.ListThingsInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Things...)
	}
	return out
}

// TestCAsReportsTheTenantCA: fleetctl cas reads the registered CA as AWS describes it (status, auto-registration,
// the certificate's own validity), and with one CA there is no successor.
func TestCAsReportsTheTenantCA(t *testing.T) {
	_, info, _ := startOperated(t, nil)
	out, _ := runFleetctl(t, info, "cas", "-json")
	var r struct {
		CAs []struct {
			ID               string    `json:"caCertificateId"`
			Status           string    `json:"status"`
			AutoRegistration bool      `json:"autoRegistration"`
			NotAfter         time.Time `json:"notAfter"`
			DaysLeft         int       `json:"daysLeft"`
			Successor        string    `json:"successor"`
		} `json:"cas"`
		DaysLeftWithoutSuccessor int `json:"daysLeftWithoutSuccessor"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.CAs) != 1 {
		t.Fatalf("%d CAs, want the one the template registers", len(r.CAs))
	}
	ca := r.CAs[0]
	wantDays := int(time.Until(env.tenantCA.Cert.NotAfter).Hours() / 24)
	if ca.Status != "ACTIVE" || !ca.AutoRegistration || !ca.NotAfter.Equal(env.tenantCA.Cert.NotAfter) || ca.Successor != "" ||
		ca.DaysLeft < wantDays-1 || ca.DaysLeft > wantDays || r.DaysLeftWithoutSuccessor != ca.DaysLeft {
		t.Errorf("cas = %s; want ACTIVE, auto-registration, NotAfter %s, about %d days left, no successor", out, env.tenantCA.Cert.NotAfter, wantDays)
	}
}
