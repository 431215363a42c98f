package jitr_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// benchResult is one row of the table `make bench-jitr` prints.
type benchResult struct {
	events        int
	callsPerEvent float64
	readsPerEvent float64 // deny-list GetItem calls
	attempts      float64
	times         []time.Duration
}

var (
	benchMu      sync.Mutex
	benchResults = map[string]benchResult{}
	benchOrder   = []string{"first provisioning", "rotation", "duplicate event", "refused certificate", "denied device"}
)

// BenchmarkHandle measures, against moto through the real SDK client, the IoT API calls and the handler time
// per event for each kind of event. The setup of each event (registering certificates, provisioning the
// previous certificate) is neither timed nor counted.
func BenchmarkHandle(b *testing.B) {
	for _, kind := range benchOrder {
		b.Run(kind, func(b *testing.B) {
			f := newFixture(b, testRetryPolicy)
			ctx := context.Background()
			var calls, attempts, reads int
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cert := benchSetup(b, f, kind)
				f.rec.reset()
				f.deny.reset()
				b.StartTimer()
				start := time.Now()
				err := f.h.Handle(ctx, f.event(cert))
				elapsed := time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				c, a := f.rec.snapshot()
				d, _ := f.deny.snapshot()
				calls, attempts, reads = calls+len(c), attempts+a, reads+len(d)
				times = append(times, elapsed)
				b.StartTimer()
			}
			b.StopTimer()
			perEvent := float64(calls) / float64(b.N)
			b.ReportMetric(perEvent, "iot-calls/event")
			benchMu.Lock()
			benchResults[kind] = benchResult{events: b.N, callsPerEvent: perEvent, readsPerEvent: float64(reads) / float64(b.N),
				attempts: float64(attempts) / float64(b.N), times: times}
			benchMu.Unlock()
			f.assertInvariant(b)
		})
	}
}

func benchSetup(b *testing.B, f *fixture, kind string) string {
	now := time.Now()
	dev := testpki.RandomDeviceID()
	switch kind {
	case "first provisioning":
		return f.device(b, dev, now.Add(-time.Hour))
	case "rotation":
		f.handle(b, f.device(b, dev, now.Add(-2*time.Hour)))
		return f.device(b, dev, now.Add(-time.Hour))
	case "duplicate event":
		cert := f.device(b, dev, now.Add(-time.Hour))
		f.handle(b, cert)
		return cert
	case "refused certificate":
		return f.device(b, dev, now.Add(-48*time.Hour))
	case "denied device":
		f.denyDevice(b, dev)
		return f.device(b, dev, now.Add(-time.Hour))
	}
	b.Fatalf("unknown kind %q", kind)
	return ""
}

// printBenchTable prints the benchmark table after a benchmark run (nothing after a test run).
func printBenchTable(w io.Writer) {
	benchMu.Lock()
	defer benchMu.Unlock()
	if len(benchResults) == 0 {
		return
	}
	fmt.Fprintln(w, "\nJITR handler against moto (real aws-sdk-go-v2 client; setup not counted)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "event\tevents\tIoT API calls/event\tdeny-list reads/event\tIoT HTTP attempts/event\tmedian ms/event\tmean ms/event\t")
	for _, kind := range benchOrder {
		r, ok := benchResults[kind]
		if !ok {
			continue
		}
		sorted := slices.Clone(r.times)
		slices.Sort(sorted)
		var sum time.Duration
		for _, d := range sorted {
			sum += d
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", kind, r.events, r.callsPerEvent, r.readsPerEvent, r.attempts,
			ms(sorted[len(sorted)/2]), ms(sum/time.Duration(len(sorted))))
	}
	tw.Flush()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
