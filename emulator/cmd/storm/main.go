// Command storm is the fleet-storm benchmark (`make bench-storm`). It starts the local emulator with AWS IoT's
// control-plane quotas enforced (testkit/moto/quotas.py), powers on N simulated devices at once (first boot: N new
// certificates), then reboots all of them at once (every device comes back with a new certificate). Each device
// retries as the device app does (device/src/retry_policy.h, read by devicesim.DeviceRetryPolicy). For each scenario it
// prints one line, times in seconds from the power-on or the reboot:
//
//	storm: scenario=reboot devices=1000 scale=1 activated=… connected=… lost=… dlq=… events=… calls=… throttled=…
//	activation_p50=… activation_p100=… connect_p50=… connect_p95=… connect_p100=… retired=… retired_p100=… bound=…
//	ratio_activation=… ratio_connect=… headroom=… deadline_cut=… tail_rate=… tail_vs_first=…
//	cost_per_device=iot:…,sqs_receives:…,ddb_reads:…,ddb_writes:…,invocations:… emulator_cpu=moto-iot:…,…
//
// bound is the time the quotas alone impose on the fleet's activation: the largest, over the rate-limited APIs, of
// (calls of that API on the minimum activation path × N ÷ its quota). -scale K multiplies every quota by K (the
// moto process's and the function's pacing, rescaled in the template it deploys) and divides every device timing by
// K, so the ratios hold while a large fleet runs in the same time.
//
// The figures only count where the emulator is faster than what it emulates. So a run starts with a capacity pass:
// the first boot with every quota lifted (×100, in moto and in the function's pacing), which prints
// capacity=<activations/s> (activations after the first ÷ the time from the first to the last). Every other line prints
// headroom = capacity ÷ (10 × scale), 10 per second being the quota-bound activation rate at scale 1
// (DescribeCertificate and UpdateCertificate); a ratio is judged only where headroom ≥ 2. -scale auto picks the
// largest scale ≤ 1 with headroom ≥ 2 (in steps of 0.05) and then runs scale 1 as well. emulator_cpu is each emulator
// process's average share of a core during the scenario (moto-* the moto processes, lambda the function's
// execution environments, go this process: broker, rules, event source mappings and the simulated devices);
// deadline_cut the function's invocations that ran into their deadline (its deadlineCut log lines); tail_rate the
// activation rate of the last 10 % of devices ÷ that of the rest, tail_vs_first ÷ that of the first 10 %;
// cost_per_device the scenario's AWS IoT calls (moto's quota counters), event source mapping receives, DynamoDB reads
// and writes (moto's IAM counters) and function invocations, each ÷ N. -lifted runs every scenario with the quotas
// lifted (the 10 000-device run: cost, not quota); -reconcile runs one reconciler pass after the last scenario and
// adds reconcile_reads= (what it read, from its log).
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
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	switch {
	case len(os.Args) > 1 && os.Args[1] == "context":
		err = printContext(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "device-process":
		err = deviceProcess()
	default:
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
	arg := fs.String("scale", envString("STORM_SCALE", "1"), "quotas ×K (STORM_SCALE); auto synthesizes for 1 (the bench rescales)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scale, err := strconv.ParseFloat(*arg, 64)
	if *arg == "auto" {
		scale, err = 1, nil
	}
	if err != nil || scale <= 0 {
		return errors.New("-scale must be positive or auto (STORM_SCALE=1 is AWS's defaults)")
	}
	q := map[string]float64{}
	for api, rate := range config.DefaultIoTQuotas {
		q[api] = rate * scale
	}
	b, _ := json.Marshal(q)
	fmt.Println(string(b))
	return nil
}

type options struct {
	template, ca, logPath string
	devices               int
	scale                 string // a number, or "auto"
	templateScale         float64
	scenarios             string
	check                 bool
	capacity, lifted      bool
	reconcile             bool
	cpuProfile            string
	deviceProcess         string // auto, true or false
	times                 string // a directory for each scenario's per-device times, or ""
}

// liftedQuotas is how much the capacity pass and -lifted multiply every quota: far above what the emulator drives.
const liftedQuotas = 100

func run() error {
	var o options
	flag.StringVar(&o.template, "template", "build/storm/cdk.out/SphereJitr.template.json", "template synthesized with -template-scale's iotQuotas context")
	flag.StringVar(&o.ca, "ca", "build/demo/tenant-ca", "tenant CA files (BASE.pem, BASE.key)")
	flag.StringVar(&o.logPath, "log", "", "file for moto and function output (default: discarded)")
	flag.IntVar(&o.devices, "devices", envInt("STORM_DEVICES", 1000), "devices (STORM_DEVICES)")
	flag.StringVar(&o.scale, "scale", envString("STORM_SCALE", "1"), "quotas ×K, device timings ÷K, or auto: the largest K ≤ 1 with headroom ≥ 2, then 1 (STORM_SCALE)")
	flag.Float64Var(&o.templateScale, "template-scale", 0, "the scale the template was synthesized for (default: -scale, or 1 with -scale auto)")
	flag.StringVar(&o.scenarios, "scenarios", "first-boot,reboot", "scenarios in order (reboot needs a fleet that booted)")
	flag.BoolVar(&o.check, "check", false, "exit non-zero unless every scenario ends with lost=0 dlq=0 and, after a reboot, retired=N")
	flag.BoolVar(&o.capacity, "capacity", true, "start with the capacity pass (first boot, quotas lifted ×100)")
	flag.BoolVar(&o.lifted, "lifted", false, "every scenario with the quotas lifted ×100 and the device timings of scale 1 (cost, not quota)")
	flag.BoolVar(&o.reconcile, "reconcile", false, "after the last scenario, one reconciler pass: reconcile_reads=")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write this process's CPU profile (broker, rules, mappings, devices) here")
	flag.StringVar(&o.times, "times", "", "write each scenario's times here, one file per scenario and quota scale (DIR/<scenario>-x<scale>.tsv: activation, connect and retirement times, seconds from the start)")
	flag.StringVar(&o.deviceProcess, "device-process", "auto", "make the devices' connections in a process of their own: true, false, or auto (when this process's open-files limit cannot hold both ends of every connection)")
	flag.Parse()
	fixed, err := strconv.ParseFloat(o.scale, 64)
	auto := o.scale == "auto"
	if o.devices < 1 || (!auto && (err != nil || fixed <= 0)) {
		return errors.New("-devices (STORM_DEVICES) must be positive, -scale (STORM_SCALE) positive or auto")
	}
	if o.templateScale == 0 {
		o.templateScale = fixed
		if auto {
			o.templateScale = 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	root, err := motoserver.RepoRoot()
	if err != nil {
		return err
	}
	policy, err := devicesim.DeviceRetryPolicy(root)
	if err != nil {
		return err
	}
	var out io.Writer = io.Discard
	if o.logPath != "" {
		f, err := os.Create(o.logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	tap := &logTap{out: out}
	if _, err := os.Stat(o.template); err != nil {
		return fmt.Errorf("%w (make bench-storm synthesizes it)", err)
	}
	ca, err := testpki.Load(o.ca)
	if err != nil {
		return err
	}
	setup, err := localaws.Prepare(ctx, localaws.SetupOptions{TemplatePath: o.template, Root: root, Moto: motoserver.Options{Log: tap}})
	if err != nil {
		return err
	}
	defer setup.Close()
	fmt.Fprintf(os.Stderr, "storm: emulator processes %v\n", setup.Moto.Processes())
	s := &storm{o: o, setup: setup, ca: ca, policy: policy, tap: tap}
	var failures []string
	check := func(rs []result) {
		for _, r := range rs {
			if r.lost != 0 || r.dlq != 0 || (r.name == "reboot" && r.retired != r.devices) {
				failures = append(failures, r.name)
			}
		}
	}
	timingScale := fixed
	if auto || o.lifted {
		timingScale = 1
	}
	if o.capacity {
		rs, err := s.pass(ctx, pass{quotas: liftedQuotas, timing: timingScale, scenarios: "first-boot", capacity: true})
		if err != nil {
			return err
		}
		check(rs)
		s.capacity = throughput(rs[0].activation)
		fmt.Printf("storm: scenario=capacity devices=%d quotas=x%d %s capacity=%.1f\n", o.devices, liftedQuotas, rs[0].fields(), s.capacity)
	}
	var passes []pass
	switch {
	case o.lifted:
		passes = []pass{{quotas: liftedQuotas, timing: 1, scenarios: o.scenarios}}
	case auto:
		if s.capacity == 0 {
			return errors.New("-scale auto needs the capacity pass")
		}
		chosen := math.Min(1, math.Max(0.05, math.Floor(s.capacity/(2*10)*20)/20))
		fmt.Printf("storm: auto: capacity %.1f activations/s → scale=%s, the largest ≤ 1 with headroom ≥ 2 (%.2f)\n",
			s.capacity, strconv.FormatFloat(chosen, 'f', -1, 64), s.capacity/(10*chosen))
		passes = append(passes, pass{quotas: chosen, timing: chosen, scenarios: o.scenarios})
		if chosen < 1 {
			passes = append(passes, pass{quotas: 1, timing: 1, scenarios: o.scenarios})
		}
	default:
		passes = []pass{{quotas: fixed, timing: fixed, scenarios: o.scenarios}}
	}
	for i, p := range passes {
		p.reconcile = o.reconcile && i == len(passes)-1
		rs, err := s.pass(ctx, p)
		if err != nil {
			return err
		}
		check(rs)
	}
	if o.check && len(failures) > 0 {
		return fmt.Errorf("scenarios %s did not end with lost=0 dlq=0 (and retired=N after a reboot)", strings.Join(failures, ", "))
	}
	return nil
}

// storm is the benchmark: the emulator's start-up, run again for each pass.
type storm struct {
	o        options
	setup    *localaws.Setup
	ca       *testpki.Pair
	policy   devicesim.RetryPolicy
	tap      *logTap
	capacity float64 // activations per second, from the capacity pass (0: none)
}

// pass is one emulator run: a fresh emulator with the quotas ×quotas (moto's and the function's pacing), a fresh
// fleet with the device timings of scale timing, the scenarios in order.
type pass struct {
	quotas, timing float64
	scenarios      string
	capacity       bool // the capacity pass (its line is printed by run)
	reconcile      bool
}

func (s *storm) pass(ctx context.Context, p pass) ([]result, error) {
	tmpl, err := stacktemplate.LoadTemplate(s.o.template)
	if err != nil {
		return nil, err
	}
	if err := repace(tmpl, p.quotas/s.o.templateScale); err != nil {
		return nil, err
	}
	if err := checkPacing(tmpl, p.quotas); err != nil {
		return nil, err
	}
	if err := s.setup.Moto.ScaleQuotas(ctx, p.quotas); err != nil {
		return nil, err
	}
	emu, err := s.setup.Start(ctx, localaws.Options{Template: tmpl, Log: s.tap,
		// The broker reads the registry's changes as they come; without the feed it would list every certificate.
		RegistryPoll: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	defer emu.Stop()
	info := emu.Info()
	pool := x509.NewCertPool()
	pool.AddCert(emu.ServerCA.Cert)
	cfg := devicesim.Config{Endpoint: info.Endpoint, ServerCAs: pool, ConnectTimeout: connectTimeout}
	b := &bench{o: s.o, emu: emu, moto: s.setup.Moto, policy: s.policy.Scaled(p.timing), devices: make([]*device, s.o.devices),
		tap: s.tap, capacity: s.capacity, lifted: p.quotas >= liftedQuotas, scale: p.quotas}
	if p.capacity {
		b.capacity = 0
	}
	for i := range b.devices {
		b.devices[i] = &device{Device: devicesim.NewDevice(fmt.Sprintf("device-%d", i+1), s.ca, cfg)}
	}
	apart, err := s.apart()
	if err != nil {
		return nil, err
	}
	if apart {
		remote, err := startDeviceProcess(info.Endpoint, emu.ServerCA.Cert, cfg.ConnectTimeout)
		if err != nil {
			return nil, err
		}
		b.links = remote
		fmt.Fprintf(os.Stderr, "storm: the devices' connections are made in process %d\n", remote.pid())
	} else {
		b.links = &localLinks{devices: b.devices}
	}
	defer b.links.close()
	var rs []result
	for _, sc := range strings.Split(p.scenarios, ",") {
		r, err := b.scenario(ctx, strings.TrimSpace(sc))
		if err != nil {
			return rs, err
		}
		rs = append(rs, r)
		if !p.capacity {
			fmt.Println(r.line())
		}
	}
	if p.reconcile && len(rs) > 0 {
		reads, err := b.reconcile(ctx)
		if err != nil {
			return rs, err
		}
		fmt.Printf("storm: reconcile devices=%d reconcile_reads=%d (one reconciler pass after the last scenario: ledger items and certificates it read)\n", len(b.devices), reads)
	}
	return rs, nil
}

// eachPacedFunction calls fn with the environment and the pacing (contract.EnvIoTRateLimits) of every function of
// the template that is paced.
func eachPacedFunction(t *stacktemplate.Template, fn func(env map[string]any, limits map[string]float64) error) error {
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
		if err := fn(env, limits); err != nil {
			return err
		}
	}
	return nil
}

// checkPacing refuses a template whose function is paced to other quotas than the scale's: the function would be
// paced below (or above) what moto enforces and the figures would measure the mismatch.
func checkPacing(t *stacktemplate.Template, scale float64) error {
	return eachPacedFunction(t, func(_ map[string]any, limits map[string]float64) error {
		for api, quota := range config.DefaultIoTQuotas {
			if limits[api] <= 0 || math.Abs(quota*scale/limits[api]-math.Round(quota*scale/limits[api])) > 1e-9 {
				return fmt.Errorf("template: the JITR function is paced to %v %s per second per environment, which is not a share of %v (the default quota ×%v): synthesize with -c iotQuotas=\"$(storm context -scale K)\" and pass -template-scale K (make bench-storm does)",
					limits[api], api, quota*scale, scale)
			}
		}
		return nil
	})
}

// repace multiplies the JITR function's pacing (contract.EnvIoTRateLimits in its environment) by factor: the
// template as if synthesized for factor × its quotas.
func repace(t *stacktemplate.Template, factor float64) error {
	if factor == 1 {
		return nil
	}
	return eachPacedFunction(t, func(env map[string]any, limits map[string]float64) error {
		for api := range limits {
			limits[api] *= factor
		}
		b, _ := json.Marshal(limits)
		env[contract.EnvIoTRateLimits] = string(b)
		return nil
	})
}

// device is a simulated device and what the benchmark measures of its current boot.
type device struct {
	*devicesim.Device
	client    paho.Client
	connected time.Duration // since the scenario started, when connected
}

type bench struct {
	o        options
	emu      *localaws.Emulator
	moto     *motoserver.Server
	policy   devicesim.RetryPolicy
	devices  []*device
	tap      *logTap
	capacity float64 // activations per second from the capacity pass; 0 in the capacity pass itself
	lifted   bool
	scale    float64 // the quotas' scale
	links    links
	// attempts are the devices' connection attempts of the scenario in progress (connectAll reports them).
	attempts attemptTally
}

// attemptTally counts connection attempts: how many, how long they took in all, and how many ran for the connect
// timeout (connectTimeout) or longer. A device sends a registered event only from an attempt the broker answers, so
// these say whether the events a device sent were what its retry policy asks for or what the emulator could take.
type attemptTally struct {
	n, timedOut, nanos atomic.Int64
}

func (t *attemptTally) add(took time.Duration) {
	t.n.Add(1)
	t.nanos.Add(int64(took))
	if took >= connectTimeout {
		t.timedOut.Add(1)
	}
}

// report is the tally as a line for stderr; devices is the fleet's size.
func (t *attemptTally) report(devices int) string {
	n := t.n.Load()
	if n == 0 {
		return "no connection attempts"
	}
	return fmt.Sprintf("connection attempts %d (%.1f a device), %d of them ran into the %s connect timeout, %.2f s each on average",
		n, float64(n)/float64(devices), t.timedOut.Load(), connectTimeout, time.Duration(t.nanos.Load()/n).Seconds())
}

// connectTimeout is how long one of the bench's connection attempts may take (devicesim.Config.ConnectTimeout).
const connectTimeout = 10 * time.Second

// apart says whether the devices' connections are made in a process of their own (links.go).
func (s *storm) apart() (bool, error) {
	switch s.o.deviceProcess {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "auto":
		return needDeviceProcess(s.o.devices)
	}
	return false, fmt.Errorf("-device-process %q: true, false or auto", s.o.deviceProcess)
}

// connect is one device's boot: connection attempts with the device app's policy until it connects, gives up
// (the app exits after MaxAttempts retries) or ctx ends.
func (b *bench) connect(ctx context.Context, i int, d *device, start time.Time) {
	p := b.policy
	for retry := 0; ctx.Err() == nil; retry++ {
		attemptStart := time.Now()
		err := b.links.connect(i, d)
		b.attempts.add(time.Since(attemptStart))
		if err == nil {
			d.connected = time.Since(start)
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
	bound, scale, capacity                       float64
	lifted                                       bool
	deadlineCut                                  int
	cost                                         costs
	cpu                                          []processCPU
	reconcileReads                               int // -1: no reconciler pass
}

// fields are the figures of a scenario, without its name and size.
func (r result) fields() string {
	act100, con100 := percentile(r.activation, 100), percentile(r.connect, 100)
	scale := strconv.FormatFloat(r.scale, 'f', -1, 64)
	if r.lifted {
		scale = "lifted"
	}
	line := fmt.Sprintf("scale=%s activated=%d connected=%d lost=%d dlq=%d events=%d calls=%d throttled=%d "+
		"activation_p50=%.1f activation_p100=%.1f connect_p50=%.1f connect_p95=%.1f connect_p100=%.1f retired=%d retired_p100=%.1f "+
		"bound=%.1f",
		scale, r.activated, r.connected, r.lost, r.dlq, r.events, r.calls, r.throttled,
		percentile(r.activation, 50), act100, percentile(r.connect, 50), percentile(r.connect, 95), con100, r.retired,
		percentile(r.retiredTimes, 100), r.bound)
	if !r.lifted {
		line += fmt.Sprintf(" ratio_activation=%.2f ratio_connect=%.2f", act100/r.bound, con100/r.bound)
	}
	if r.capacity > 0 && !r.lifted {
		line += fmt.Sprintf(" headroom=%.2f", r.capacity/(10*r.scale))
	}
	tail, first := tailRates(r.activation)
	line += fmt.Sprintf(" deadline_cut=%d tail_rate=%.2f tail_vs_first=%.2f", r.deadlineCut, tail, first)
	if r.reconcileReads >= 0 {
		line += fmt.Sprintf(" reconcile_reads=%d", r.reconcileReads)
	}
	n := float64(r.devices)
	line += fmt.Sprintf(" cost_per_device=iot:%.2f,sqs_receives:%.2f,ddb_reads:%.2f,ddb_writes:%.2f,invocations:%.2f",
		float64(r.calls)/n, float64(r.cost.receives)/n, float64(r.cost.ddbReads)/n, float64(r.cost.ddbWrites)/n, float64(r.cost.invocations)/n)
	var cpu []string
	for _, c := range r.cpu {
		cpu = append(cpu, fmt.Sprintf("%s:%.2f", c.name, c.share))
	}
	return line + " emulator_cpu=" + strings.Join(cpu, ",")
}

func (r result) line() string {
	return fmt.Sprintf("storm: scenario=%s devices=%d %s", r.name, r.devices, r.fields())
}

// throughput is the activation rate of a storm: activations after the first ÷ the time from the first to the last
// (the pipeline's fixed delay before the first one — the registration queue's batching window — is the product's,
// not the emulator's speed).
func throughput(times []float64) float64 {
	if len(times) < 2 {
		return 0
	}
	a := append([]float64(nil), times...)
	sort.Float64s(a)
	if d := a[len(a)-1] - a[0]; d > 0 {
		return float64(len(a)-1) / d
	}
	return 0
}

// tailRates are the activation rate of the last 10 % of the activations ÷ that of the rest, and ÷ that of the first
// 10 % (a rate: activations between the first and the last of a part ÷ the time between them).
func tailRates(times []float64) (tail, first float64) {
	a := append([]float64(nil), times...)
	sort.Float64s(a)
	n := len(a)
	if n < 20 {
		return 0, 0
	}
	rate := func(from, to int) float64 { // activations (from, to] over a[to]-a[from]
		if d := a[to] - a[from]; d > 0 {
			return float64(to-from) / d
		}
		return math.Inf(1)
	}
	k, j := n-n/10-1, n/10
	t := rate(k, n-1)
	return t / rate(0, k), t / rate(0, j)
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
	costsBefore, err := b.costs(ctx)
	if err != nil {
		return r, err
	}
	cutBefore := b.tap.deadlineCuts()
	cpuBefore := b.cpuTimes()
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
	b.connectAll(ctx, name, start, b.patience(r.bound))
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	older := map[string]bool{}
	if name == "reboot" {
		for _, d := range b.devices {
			h := d.Certificates()
			older[devicesim.CertificateID(h[len(h)-2].Cert)] = true
		}
		if err := b.waitRetired(ctx, name, start, older, start.Add(time.Duration(6*b.patience(r.bound)*float64(time.Second))+2*time.Minute)); err != nil {
			return r, err
		}
	}
	cpuAfter, elapsed := b.cpuTimes(), time.Since(start)
	// What the storm left in the queues (copies of registered events, retirements put back) is part of its cost.
	b.emu.DrainFunction()
	dlqAfter, err := b.deadLetters(ctx)
	if err != nil {
		return r, err
	}
	r.events, r.dlq = int(b.emu.RegisteredEvents()-eventsBefore), dlqAfter-dlqBefore
	costsAfter, err := b.costs(ctx)
	if err != nil {
		return r, err
	}
	r.cost = costsAfter.minus(costsBefore)
	fmt.Fprintf(os.Stderr, "storm: %s: event source mappings: %s\n", name, r.cost.queues())
	r.deadlineCut = b.tap.deadlineCuts() - cutBefore
	r.cpu = cpuShares(cpuBefore, cpuAfter, elapsed)
	if err := b.measure(ctx, &r, start, older); err != nil {
		return r, err
	}
	return r, b.writeTimes(name, r)
}

// writeTimes writes a scenario's times, sorted, one per line with its kind (activation, connect, retirement), to
// -times DIR/<scenario>-x<quotas' scale>.tsv: what a tail rate summarizes, for a plot or a closer look.
func (b *bench) writeTimes(name string, r result) error {
	if b.o.times == "" {
		return nil
	}
	if err := os.MkdirAll(b.o.times, 0o755); err != nil {
		return err
	}
	var out strings.Builder
	for _, kind := range []struct {
		name  string
		times []float64
	}{{"activation", r.activation}, {"connect", r.connect}, {"retirement", r.retiredTimes}} {
		t := append([]float64(nil), kind.times...)
		sort.Float64s(t)
		for _, v := range t {
			fmt.Fprintf(&out, "%s\t%.3f\n", kind.name, v)
		}
	}
	file := fmt.Sprintf("%s-x%s.tsv", name, strconv.FormatFloat(b.scale, 'f', -1, 64))
	return os.WriteFile(filepath.Join(b.o.times, file), []byte(out.String()), 0o644)
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
	b.links.disconnectAll()
	b.emu.DrainFunction()
	if err := b.moto.ResetQuotas(ctx); err != nil {
		return result{}, err
	}
	figures, err := b.moto.Quotas(ctx)
	if err != nil {
		return result{}, err
	}
	r := result{name: name, devices: len(b.devices), scale: b.scale, capacity: b.capacity, lifted: b.lifted, reconcileReads: -1}
	for api, calls := range path {
		if rate := figures.Limits[api]; rate > 0 {
			r.bound = math.Max(r.bound, float64(calls*len(b.devices))/rate)
		}
	}
	return r, nil
}

// patience is the bound the bench's time-outs are measured in: the scenario's, or with the quotas lifted (a bound
// of seconds) the one of AWS's default quotas, so a fleet the emulator drives slower than the lifted quotas is not
// taken for lost.
func (b *bench) patience(bound float64) float64 {
	if b.lifted {
		return bound * liftedQuotas
	}
	return bound
}

// connectAll connects every device at once, reporting progress every 10 s. A device not connected after 6 bounds
// (at least a minute: a small fleet's bound is shorter than one pass through the queues) plus two of its longest
// backoffs is lost.
func (b *bench) connectAll(ctx context.Context, name string, start time.Time, bound float64) {
	runCtx, cancel := context.WithTimeout(ctx, max(time.Duration(6*bound*float64(time.Second)), time.Minute)+2*b.policy.Max)
	defer cancel()
	var wg sync.WaitGroup
	b.attempts = attemptTally{}
	defer func() { fmt.Fprintf(os.Stderr, "storm: %s: %s\n", name, b.attempts.report(len(b.devices))) }()
	for i, d := range b.devices {
		wg.Add(1)
		go func() { defer wg.Done(); b.connect(runCtx, i, d, start) }()
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
// It reports progress every 10 s.
func (b *bench) waitRetired(ctx context.Context, name string, start time.Time, older map[string]bool, deadline time.Time) error {
	var reported time.Time
	for time.Now().Before(deadline) && ctx.Err() == nil {
		f, err := b.moto.Quotas(ctx)
		if err != nil {
			return err
		}
		n := countIn(f.Deleted, older)
		if n == len(older) {
			return nil
		}
		if time.Since(reported) >= 10*time.Second {
			reported = time.Now()
			fmt.Fprintf(os.Stderr, "storm: %s: %.0f s, %d of %d older certificates retired\n", name, time.Since(start).Seconds(), n, len(older))
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
	up := b.links.connected(len(b.devices))
	for i, d := range b.devices {
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
		isConnected := up[i]
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

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
