// Command devicesim simulates a fleet of Azure Sphere devices against the local emulator.
//
//	devicesim tenant-ca -dir build/demo                  generate a test tenant CA and its verification certificate
//	devicesim run -info build/demo/emulator.json -ca build/demo/tenant-ca -devices 3 -reboot 2
//	devicesim bench -info build/demo/emulator.json -ca build/demo/tenant-ca -sizes 100,1000
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

const usage = `usage: devicesim tenant-ca -dir DIR | run [flags] | bench [flags] | device-cert [flags]  (devicesim CMD -h for flags)`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "tenant-ca":
		err = tenantCA(os.Args[2:])
	case "run":
		err = runFleet(ctx, os.Args[2:])
	case "bench":
		err = bench(ctx, os.Args[2:])
	case "device-cert":
		err = deviceCert(os.Args[2:])
	default:
		err = errors.New(usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devicesim:", err)
		os.Exit(1)
	}
}

// tenantCA writes tenant-ca.{pem,key,der} and verification.{pem,key,der}: a stand-in for the Azure Sphere tenant
// CA and its proof-of-possession certificate, which the stack is synthesized with.
func tenantCA(args []string) error {
	fs := flag.NewFlagSet("tenant-ca", flag.ExitOnError)
	dir := fs.String("dir", "build/demo", "output directory")
	_ = fs.Parse(args)
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ca, err := testpki.NewCA(testpki.CAOptions{CommonName: "Demo Azure Sphere Tenant CA"})
	if err != nil {
		return err
	}
	v, err := ca.IssueVerification("emulator-registration-code")
	if err != nil {
		return err
	}
	if err := ca.WriteFiles(*dir, "tenant-ca"); err != nil {
		return err
	}
	return v.WriteFiles(*dir, "verification")
}

// deviceCert boots one device for the C device app (make demo-device): a new device certificate from the tenant
// CA, as Azure Sphere issues at boot, written with the emulator's server CA into a folder, and the broker's host and
// port printed as "HOST PORT" for the caller.
func deviceCert(args []string) error {
	fs := flag.NewFlagSet("device-cert", flag.ExitOnError)
	var c common
	c.register(fs)
	out := fs.String("out", "build/demo/c-device", "output directory: device.pem, device.key, server-ca.pem")
	_ = fs.Parse(args)
	ca, err := loadCA(c.ca)
	if err != nil {
		return err
	}
	info, err := loadInfo(c.info)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(info.Endpoint)
	if err != nil {
		return fmt.Errorf("emulator info endpoint %q: %w", info.Endpoint, err)
	}
	dev, err := ca.IssueDevice(testpki.RandomDeviceID(), time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	if err := dev.WriteFiles(*out, "device"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "server-ca.pem"), []byte(info.ServerCAPEM), 0o600); err != nil {
		return err
	}
	fmt.Println(host, port)
	return nil
}

func loadCA(base string) (*testpki.Pair, error) { return testpki.Load(base) }

func loadInfo(path string) (localaws.Info, error) {
	var info localaws.Info
	data, err := os.ReadFile(path)
	if err != nil {
		return info, fmt.Errorf("read emulator info: %w (is the emulator running? 'make demo' starts it)", err)
	}
	return info, json.Unmarshal(data, &info)
}

type common struct {
	info, ca       string
	base, maxDelay time.Duration
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.info, "info", "build/demo/emulator.json", "the emulator's info file")
	fs.StringVar(&c.ca, "ca", "build/demo/tenant-ca", "tenant CA files (BASE.pem, BASE.key)")
	fs.DurationVar(&c.base, "backoff", 250*time.Millisecond, "first reconnect delay (exponential, full jitter)")
	fs.DurationVar(&c.maxDelay, "backoff-max", 4*time.Second, "longest reconnect delay")
}

func (c *common) load(tl *timeline.Timeline) (*testpki.Pair, localaws.Info, devicesim.Config, error) {
	ca, err := loadCA(c.ca)
	if err != nil {
		return nil, localaws.Info{}, devicesim.Config{}, err
	}
	info, err := loadInfo(c.info)
	if err != nil {
		return nil, info, devicesim.Config{}, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(info.ServerCAPEM)) {
		return nil, info, devicesim.Config{}, errors.New("emulator info has no server CA")
	}
	cfg := devicesim.Config{
		Endpoint:  info.Endpoint,
		ServerCAs: pool,
		TopicRoot: info.TopicRoot,
		S3:        true, // URLs asked for over MQTT at run time, from the stack's presign function
		Backoff:   devicesim.Backoff{Base: c.base, Max: c.maxDelay},
		Timeline:  tl,
	}
	return ca, info, cfg, nil
}

func runFleet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var c common
	c.register(fs)
	n := fs.Int("devices", 3, "devices booting at once")
	reboot := fs.String("reboot", "2", "comma-separated device numbers (1-based) that reboot after their first session")
	_ = fs.Parse(args)
	tl := timeline.New(os.Stdout)
	ca, info, cfg, err := c.load(tl)
	if err != nil {
		return err
	}
	var reboots []int
	for _, s := range strings.Split(*reboot, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		i, err := strconv.Atoi(s)
		if err != nil || i < 1 || i > *n {
			return fmt.Errorf("-reboot %q: want device numbers between 1 and %d", *reboot, *n)
		}
		reboots = append(reboots, i-1)
	}
	tl.Event("devicesim", "%d simulated Azure Sphere devices boot now (tenant CA %q); device(s) %s will reboot", *n, ca.Cert.Subject.CommonName, *reboot)
	runCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	devices, runErr := devicesim.Run(runCtx, ca, cfg, devicesim.Scenario{Devices: *n, Reboot: reboots})
	if runErr != nil {
		return fmt.Errorf("fleet did not complete: %w", runErr)
	}
	awsCfg := localaws.AWSConfig(info.AWSEndpoint)
	settle(ctx, awsCfg, len(devices))
	sum, err := localaws.Summarize(ctx, awsCfg, info.Bucket)
	if err != nil {
		return err
	}
	sum.Print(os.Stdout)
	printDevices(ctx, awsCfg, devices)
	return check(sum, devices)
}

// settleTimeout bounds how long the demo waits for the JITR function: an older certificate's retirement is queued
// and put back while registrations are queued or in flight, each time for as long as it has waited, at least 30 s
// (internal/jitr), so the reboot's retirement usually lands 30 to 120 s after the devices connected.
const settleTimeout = 3 * time.Minute

// settle waits until the function has finished with every certificate: one ACTIVE certificate per device, none
// pending or half-retired. It reads ListCertificates only (no AWS IoT quota applies to it), and says what it waits
// for every 10 s; at the timeout it returns and check reports what is left.
func settle(ctx context.Context, cfg aws.Config, devices int) {
	c := iot.NewFromConfig(cfg)
	start, lastSaid := time.Now(), time.Now()
	for time.Since(start) < settleTimeout && ctx.Err() == nil {
		count := map[iottypes.CertificateStatus]int{}
		for pages := iot.NewListCertificatesPaginator(c, &iot.ListCertificatesInput{}); pages.HasMorePages(); {
			page, err := pages.NextPage(ctx)
			if err != nil {
				fmt.Fprintf(os.Stderr, "devicesim: list certificates: %v\n", err)
				return
			}
			for _, cert := range page.Certificates {
				count[cert.Status]++
			}
		}
		active, pending, inactive := count[iottypes.CertificateStatusActive], count[iottypes.CertificateStatusPendingActivation], count[iottypes.CertificateStatusInactive]
		if active == devices && pending == 0 && inactive == 0 {
			return
		}
		if time.Since(lastSaid) >= 10*time.Second {
			lastSaid = time.Now()
			fmt.Fprintf(os.Stderr, "devicesim: %.0f s: waiting for the JITR function: %d ACTIVE certificates for %d devices, %d pending, %d inactive (a superseded certificate is retired once no registration is queued)\n",
				time.Since(start).Seconds(), active, devices, pending, inactive)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func printDevices(ctx context.Context, cfg aws.Config, devices []*devicesim.Device) {
	c := iot.NewFromConfig(cfg)
	fmt.Println("devices:")
	for _, d := range devices {
		var parts []string
		for i, p := range d.Certificates() {
			id := devicesim.CertificateID(p.Cert)
			status := "revoked and deleted"
			out, err := c.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
			if err == nil {
				status = string(out.CertificateDescription.Status)
			}
			parts = append(parts, fmt.Sprintf("boot %d cert %s %s", i+1, timeline.Short(id), status))
		}
		fmt.Printf("  %-9s thing %s  %s\n", d.Name, timeline.Short(d.Thing), strings.Join(parts, "; "))
	}
}

// check makes the demo fail loudly when the end state is not the one the flow must produce.
func check(sum *localaws.Summary, devices []*devicesim.Device) error {
	var problems []string
	if len(sum.Things) != len(devices) {
		problems = append(problems, fmt.Sprintf("%d things for %d devices", len(sum.Things), len(devices)))
	}
	for _, t := range sum.Things {
		if len(t.ActiveCertificates) != 1 {
			problems = append(problems, fmt.Sprintf("thing %s has %d active certificates", timeline.Short(t.Name), len(t.ActiveCertificates)))
		}
		if t.ShadowReported == "" {
			problems = append(problems, fmt.Sprintf("thing %s has no shadow", timeline.Short(t.Name)))
		}
	}
	if sum.Certificates["ACTIVE"] != len(devices) {
		problems = append(problems, fmt.Sprintf("%d active certificates for %d devices", sum.Certificates["ACTIVE"], len(devices)))
	}
	if sum.IAM.Authorized == 0 {
		problems = append(problems, "no AWS call of the function was authorized by IAM: is IAM enforced?")
	}
	if sum.IAM.Denied > 0 {
		problems = append(problems, fmt.Sprintf("IAM denied %d call(s) of the function: %s", sum.IAM.Denied, sum.IAM.Denials[0].Message))
	}
	if len(sum.Objects) != len(devices) {
		problems = append(problems, fmt.Sprintf("%d S3 objects for %d devices", len(sum.Objects), len(devices)))
	}
	for _, d := range devices {
		if key := contract.DeviceObjectPrefix + d.Thing + "/" + devicesim.ObjectName; !slices.Contains(sum.Objects, key) {
			problems = append(problems, fmt.Sprintf("%s uploaded nothing under its own prefix %s", d.Name, key))
		}
	}
	if len(problems) > 0 {
		return errors.New("end state is wrong: " + strings.Join(problems, "; "))
	}
	fmt.Println("\nresult: every device provisioned just in time, connected, published, synced its shadow and used S3 under devices/<its thing>/ through runtime URLs")
	return nil
}

func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	var c common
	c.register(fs)
	sizes := fs.String("sizes", "100,1000", "fleet sizes to boot at once, one run each")
	// A fleet that reboots together needs the device app's kind of backoff (its policy is 2 s .. 120 s): with a
	// short one the retries of a thousand devices are the storm the docs warn about.
	fs.Lookup("backoff").DefValue, fs.Lookup("backoff-max").DefValue = "1s", "30s"
	_ = fs.Set("backoff", "1s")
	_ = fs.Set("backoff-max", "30s")
	_ = fs.Parse(args)
	ca, _, cfg, err := c.load(nil)
	if err != nil {
		return err
	}
	fmt.Printf("provisioning latency: first connect attempt → connected (JITR: registered, function, activated), backoff %s..%s with full jitter\n", c.base, c.maxDelay)
	fmt.Printf("%8s %10s %10s %10s %10s\n", "devices", "p50", "p95", "max", "total")
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-sizes %q: want positive numbers", *sizes)
		}
		runCtx, cancel := context.WithTimeout(ctx, 15*time.Minute)
		cfg.MaxAttempts = 200
		start := time.Now()
		devices, err := devicesim.Run(runCtx, ca, cfg, devicesim.Scenario{Devices: n, ConnectOnly: true})
		total := time.Since(start)
		cancel()
		if err != nil {
			return fmt.Errorf("%d devices: %w", n, err)
		}
		lat := devicesim.Latencies(devices)
		fmt.Printf("%8d %10s %10s %10s %10s\n", n, round(devicesim.Percentile(lat, 50)), round(devicesim.Percentile(lat, 95)),
			round(devicesim.Percentile(lat, 100)), round(total))
	}
	return nil
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
