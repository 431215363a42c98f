// Command storm is the fleet-storm benchmark (`make bench-storm`). It starts the local emulator with AWS IoT's
// control-plane quotas enforced (testkit/moto/quotas.py), powers on N simulated devices at once (first boot: N new
// certificates), then reboots all of them at once (every device comes back with a new certificate). Each device
// retries as the device app does (device/src/retry_policy.h, read by devicesim.DeviceRetryPolicy). For each scenario it
// prints one line, times in seconds from the power-on or the reboot:
//
//	storm: scenario=reboot devices=1000 scale=1 activated=… connected=… lost=… dlq=… events=… calls=… throttled=…
//	activation_p50=… activation_p100=… connect_p50=… connect_p95=… connect_p100=… retired=… retired_p100=… bound=…
//	ratio_activation=… ratio_connect=…
//
// bound is the time the quotas alone impose on the fleet's activation: the largest, over the rate-limited APIs, of
// (calls of that API on the minimum activation path × N ÷ its quota). -scale K multiplies every quota by K (the
// moto process's and, through the template, the function's pacing) and divides every device timing by K, so the
// ratios hold while a large fleet runs in the same time. `storm context -scale K` prints the iotQuotas context the
// template must be synthesized with for that scale.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/internal/config"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "context" {
		err = printContext(os.Args[2:])
	} else {
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

// printContext prints the iotQuotas context value for a scale: every default quota ×K, as after a quota increase.
func printContext(args []string) error {
	fs := flag.NewFlagSet("context", flag.ContinueOnError)
	scale := fs.Float64("scale", envFloat("STORM_SCALE", 1), "quotas ×K (STORM_SCALE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *scale <= 0 {
		return errors.New("-scale must be positive (STORM_SCALE=1 is AWS's defaults)")
	}
	q := map[string]float64{}
	for api, rate := range config.DefaultIoTQuotas {
		q[api] = rate * *scale
	}
	b, _ := json.Marshal(q)
	fmt.Println(string(b))
	return nil
}

type options struct {
	template, ca, logPath string
	devices               int
	scale                 float64
	scenarios             string
	check                 bool
}

func run() error {
	var o options
	flag.StringVar(&o.template, "template", "build/storm/cdk.out/SphereJitr.template.json", "template synthesized with the scale's iotQuotas context")
	flag.StringVar(&o.ca, "ca", "build/demo/tenant-ca", "tenant CA files (BASE.pem, BASE.key)")
	flag.StringVar(&o.logPath, "log", "", "file for moto and function output (default: discarded)")
	flag.IntVar(&o.devices, "devices", envInt("STORM_DEVICES", 1000), "devices (STORM_DEVICES)")
	flag.Float64Var(&o.scale, "scale", envFloat("STORM_SCALE", 1), "quotas ×K, device timings ÷K (STORM_SCALE)")
	flag.StringVar(&o.scenarios, "scenarios", "first-boot,reboot", "scenarios in order (reboot needs a fleet that booted)")
	flag.BoolVar(&o.check, "check", false, "exit non-zero unless every scenario ends with lost=0 dlq=0 and, after a reboot, retired=N")
	flag.Parse()
	if o.devices < 1 || o.scale <= 0 {
		return errors.New("-devices (STORM_DEVICES) and -scale (STORM_SCALE) must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := motoserver.RepoRoot()
	if err != nil {
		return err
	}
	policy, err := devicesim.DeviceRetryPolicy(root)
	if err != nil {
		return err
	}
	var logw io.Writer = io.Discard
	if o.logPath != "" {
		f, err := os.Create(o.logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		logw = f
	}
	if _, err := os.Stat(o.template); err != nil {
		return fmt.Errorf("%w (make bench-storm synthesizes it)", err)
	}
	ca, err := testpki.Load(o.ca)
	if err != nil {
		return err
	}
	setup, err := localaws.Prepare(ctx, localaws.SetupOptions{TemplatePath: o.template, Root: root, Moto: motoserver.Options{Log: logw,
		Env: []string{contract.EnvIoTQuotaScale + "=" + strconv.FormatFloat(o.scale, 'f', -1, 64)}}})
	if err != nil {
		return err
	}
	defer setup.Close()
	if err := checkPacing(setup.Template, o.scale); err != nil {
		return err
	}
	moto := setup.Moto
	emu, err := setup.Start(ctx, localaws.Options{Log: logw,
		// The broker's revocation check lists every certificate; thousands of devices make it moto's biggest job.
		RegistryPoll: 30 * time.Second})
	if err != nil {
		return err
	}
	defer emu.Stop()

	info := emu.Info()
	pool := x509.NewCertPool()
	pool.AddCert(emu.ServerCA.Cert)
	cfg := devicesim.Config{Endpoint: info.Endpoint, ServerCAs: pool, ConnectTimeout: 10 * time.Second}
	b := &bench{o: o, emu: emu, moto: moto, policy: policy.Scaled(o.scale), devices: make([]*device, o.devices)}
	for i := range b.devices {
		b.devices[i] = &device{Device: devicesim.NewDevice(fmt.Sprintf("device-%d", i+1), ca, cfg)}
	}
	defer b.disconnectAll()
	var failures []string
	for _, sc := range strings.Split(o.scenarios, ",") {
		r, err := b.scenario(ctx, strings.TrimSpace(sc))
		if err != nil {
			return err
		}
		fmt.Println(r.line())
		if r.lost != 0 || r.dlq != 0 || (r.name == "reboot" && r.retired != r.devices) {
			failures = append(failures, r.name)
		}
	}
	if o.check && len(failures) > 0 {
		return fmt.Errorf("scenarios %s did not end with lost=0 dlq=0 (and retired=N after a reboot)", strings.Join(failures, ", "))
	}
	return nil
}

// checkPacing refuses a template whose function is paced to other quotas than the scale's: the function would be
// paced below (or above) what moto enforces and the figures would measure the mismatch.
func checkPacing(t *stacktemplate.Template, scale float64) error {
	for _, id := range t.OfType("AWS::Lambda::Function") {
		env, _ := t.Prop(id, "Environment.Variables").(map[string]any)
		raw, ok := env[contract.EnvIoTRateLimits].(string)
		if !ok {
			continue
		}
		var limits map[string]float64
		if err := json.Unmarshal([]byte(raw), &limits); err != nil {
			return fmt.Errorf("template: %s of %s: %w", contract.EnvIoTRateLimits, id, err)
		}
		for api, quota := range config.DefaultIoTQuotas {
			if limits[api] <= 0 || math.Abs(quota*scale/limits[api]-math.Round(quota*scale/limits[api])) > 1e-9 {
				return fmt.Errorf("template: the JITR function is paced to %v %s per second per environment, which is not a share of %v (the default quota ×%v): synthesize with -c iotQuotas=\"$(storm context -scale %v)\" (make bench-storm does)",
					limits[api], api, quota*scale, scale, scale)
			}
		}
	}
	return nil
}

// device is a simulated device and what the benchmark measures of its current boot.
type device struct {
	*devicesim.Device
	client    paho.Client
	connected time.Duration // since the scenario started, when connected
}

type bench struct {
	o       options
	emu     *localaws.Emulator
	moto    *motoserver.Server
	policy  devicesim.RetryPolicy
	devices []*device
}

func (b *bench) disconnectAll() {
	for _, d := range b.devices {
		if d.client != nil {
			d.client.Disconnect(0)
			d.client = nil
		}
	}
}

// connect is one device's boot: connection attempts with the device app's policy until it connects, gives up
// (the app exits after MaxAttempts retries) or ctx ends.
func (b *bench) connect(ctx context.Context, d *device, start time.Time) {
	p := b.policy
	for retry := 0; ctx.Err() == nil; retry++ {
		attemptStart := time.Now()
		c, err := d.ConnectOnce(d.Thing, d.Certificate())
		if err == nil {
			d.client, d.connected = c, time.Since(start)
			return
		}
		if retry == p.MaxAttempts {
			return
		}
		delay := max(p.Delay(retry, rand.Float64), p.MinConnectInterval-time.Since(attemptStart))
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// result is one scenario's line.
type result struct {
	name                                         string
	devices, activated, connected, lost, retired int
	dlq, events, calls, throttled                int
	activation, connect, retiredTimes            []float64
	bound, scale                                 float64
}

func (r result) line() string {
	act100, con100 := percentile(r.activation, 100), percentile(r.connect, 100)
	return fmt.Sprintf("storm: scenario=%s devices=%d scale=%s activated=%d connected=%d lost=%d dlq=%d events=%d calls=%d throttled=%d "+
		"activation_p50=%.1f activation_p100=%.1f connect_p50=%.1f connect_p95=%.1f connect_p100=%.1f retired=%d retired_p100=%.1f "+
		"bound=%.1f ratio_activation=%.2f ratio_connect=%.2f",
		r.name, r.devices, strconv.FormatFloat(r.scale, 'f', -1, 64), r.activated, r.connected, r.lost, r.dlq, r.events, r.calls, r.throttled,
		percentile(r.activation, 50), act100, percentile(r.connect, 50), percentile(r.connect, 95), con100, r.retired,
		percentile(r.retiredTimes, 100), r.bound, act100/r.bound, con100/r.bound)
}

// minimumActivationPath is, per scenario, how many calls of each rate-limited API one certificate needs at the
// least before its device can connect: the certificate must be read (its PEM names the device) and activated, and
// have its thing and policy; a first boot also creates the thing (and its first attachment finds it missing).
var minimumActivationPath = map[string]map[string]int{
	"first-boot": {"DescribeCertificate": 1, "CreateThing": 1, "AttachThingPrincipal": 1, "AttachPolicy": 1, "UpdateCertificate": 1},
	"reboot":     {"DescribeCertificate": 1, "AttachThingPrincipal": 1, "AttachPolicy": 1, "UpdateCertificate": 1},
}

// scenario boots every device at once and measures the storm: from idle quota buckets, how long each device took
// to be activated and to connect, what was lost or dead-lettered, and, after a reboot, when the older certificates
// were retired.
func (b *bench) scenario(ctx context.Context, name string) (result, error) {
	r, err := b.prepare(ctx, name)
	if err != nil {
		return r, err
	}
	eventsBefore := b.emu.RegisteredEvents()
	dlqBefore, err := b.deadLetters(ctx)
	if err != nil {
		return r, err
	}
	for _, d := range b.devices {
		d.connected = 0
		if err := d.Boot(); err != nil {
			return r, err
		}
	}
	fmt.Fprintf(os.Stderr, "storm: %s: %d devices, bound %.1f s, device retry %s..%s\n", name, len(b.devices), r.bound, b.policy.Base, b.policy.Max)
	start := time.Now()
	b.connectAll(ctx, name, start, r.bound)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	older := map[string]bool{}
	if name == "reboot" {
		for _, d := range b.devices {
			h := d.Certificates()
			older[devicesim.CertificateID(h[len(h)-2].Cert)] = true
		}
		if err := b.waitRetired(ctx, older, start.Add(time.Duration(6*r.bound*float64(time.Second))+2*time.Minute)); err != nil {
			return r, err
		}
	}
	dlqAfter, err := b.deadLetters(ctx)
	if err != nil {
		return r, err
	}
	r.events, r.dlq = int(b.emu.RegisteredEvents()-eventsBefore), dlqAfter-dlqBefore
	return r, b.measure(ctx, &r, start, older)
}

// prepare checks the scenario, lets the previous one's retirements and reconciling settle, starts from idle quota
// buckets and computes the scenario's bound: the time the quotas allow for the minimum activation path of the fleet.
func (b *bench) prepare(ctx context.Context, name string) (result, error) {
	path, ok := minimumActivationPath[name]
	if !ok {
		return result{}, fmt.Errorf("unknown scenario %q (first-boot, reboot)", name)
	}
	if name == "reboot" && b.devices[0].Certificate() == nil {
		return result{}, errors.New("the reboot scenario needs a fleet that booted: run first-boot before it")
	}
	b.disconnectAll()
	b.emu.DrainFunction()
	if err := b.moto.ResetQuotas(ctx); err != nil {
		return result{}, err
	}
	figures, err := b.moto.Quotas(ctx)
	if err != nil {
		return result{}, err
	}
	r := result{name: name, devices: len(b.devices), scale: b.o.scale}
	for api, calls := range path {
		if rate := figures.Limits[api]; rate > 0 {
			r.bound = math.Max(r.bound, float64(calls*len(b.devices))/rate)
		}
	}
	return r, nil
}

// connectAll connects every device at once, reporting progress every 10 s. A device not connected after 6 bounds
// (at least a minute: a small fleet's bound is shorter than one pass through the queues) plus two of its longest
// backoffs is lost.
func (b *bench) connectAll(ctx context.Context, name string, start time.Time, bound float64) {
	runCtx, cancel := context.WithTimeout(ctx, max(time.Duration(6*bound*float64(time.Second)), time.Minute)+2*b.policy.Max)
	defer cancel()
	var wg sync.WaitGroup
	for _, d := range b.devices {
		wg.Add(1)
		go func() { defer wg.Done(); b.connect(runCtx, d, start) }()
	}
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			return
		case <-progress.C:
			n := 0
			for _, d := range b.devices {
				if d.connected > 0 {
					n++
				}
			}
			fmt.Fprintf(os.Stderr, "storm: %s: %.0f s, %d of %d connected\n", name, time.Since(start).Seconds(), n, len(b.devices))
		}
	}
}

// waitRetired waits until every older certificate is deleted, or until the deadline: the retirement runs after the
// activations (a retirement put back during the backlog waits its visibility timeout, whatever the scale).
func (b *bench) waitRetired(ctx context.Context, older map[string]bool, deadline time.Time) error {
	for time.Now().Before(deadline) && ctx.Err() == nil {
		f, err := b.moto.Quotas(ctx)
		if err != nil {
			return err
		}
		if countIn(f.Deleted, older) == len(older) {
			return nil
		}
		time.Sleep(time.Second)
	}
	return nil
}

// measure fills r from moto's quota figures and the registry: calls, throttling, activation and connect times,
// devices activated, connected and lost, older certificates retired.
func (b *bench) measure(ctx context.Context, r *result, start time.Time, older map[string]bool) error {
	figures, err := b.moto.Quotas(ctx)
	if err != nil {
		return err
	}
	status, err := b.registry(ctx)
	if err != nil {
		return err
	}
	for _, n := range figures.Calls {
		r.calls += n
	}
	for _, n := range figures.Throttled {
		r.throttled += n
	}
	since := func(unix float64) float64 { return unix - float64(start.UnixNano())/1e9 }
	for _, d := range b.devices {
		current := devicesim.CertificateID(d.Certificate().Cert)
		if t, ok := figures.Activated[current]; ok {
			r.activation = append(r.activation, since(t))
		}
		if status[current] == "ACTIVE" {
			r.activated++
		}
		active := 0
		for _, c := range d.Certificates() {
			if status[devicesim.CertificateID(c.Cert)] == "ACTIVE" {
				active++
			}
		}
		isConnected := d.client != nil && d.client.IsConnected()
		if isConnected {
			r.connected++
			r.connect = append(r.connect, d.connected.Seconds())
		}
		if !isConnected || active != 1 || status[current] != "ACTIVE" {
			r.lost++
		}
	}
	for id := range older {
		if _, exists := status[id]; !exists {
			r.retired++
			if t, ok := figures.Deleted[id]; ok {
				r.retiredTimes = append(r.retiredTimes, since(t))
			}
		}
	}
	return nil
}

func countIn(m map[string]float64, keys map[string]bool) int {
	n := 0
	for k := range keys {
		if _, ok := m[k]; ok {
			n++
		}
	}
	return n
}

// deadLetters is the number of messages in the stack's dead-letter queue.
func (b *bench) deadLetters(ctx context.Context) (int, error) {
	url := b.emu.Deployment.JITR().DeadLetterQueueURL
	if url == "" {
		return 0, errors.New("the template's JITR function has no dead-letter queue")
	}
	out, err := b.emu.Queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
	if err != nil {
		return 0, fmt.Errorf("read the dead-letter queue: %w", err)
	}
	n, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	return n, nil
}

// registry returns the status of every certificate of the stack's CAs (absent: deleted), read as the emulator
// (not counted against the quotas).
func (b *bench) registry(ctx context.Context) (map[string]string, error) {
	status := map[string]string{}
	for _, ca := range b.emu.Deployment.CAs {
		pages := iot.NewListCertificatesByCAPaginator(b.emu.IoT, &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(ca.ID), PageSize: aws.Int32(250)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("list certificates of CA %s: %w", ca.ID, err)
			}
			for _, c := range page.Certificates {
				status[aws.ToString(c.CertificateId)] = string(c.Status)
			}
		}
	}
	return status, nil
}

// percentile is the nearest-rank p-th percentile of values (0 for none).
func percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	rank := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(rank, len(s)-1))]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}
