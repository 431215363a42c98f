package devicesim

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// CertificateID is the AWS IoT certificate id: SHA-256 of the DER, hex.
func CertificateID(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func hostOf(endpoint string) string {
	h, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return endpoint
	}
	return h
}

// Scenario is a fleet run: devices boot at once; some of them reboot once after their first session.
type Scenario struct {
	Devices     int
	Reboot      []int // indexes (0-based) of the devices that reboot after their first session
	ConnectOnly bool  // skip the session work (telemetry, shadow, S3): provisioning benchmark
}

// Run boots the fleet from the tenant CA and plays the scenario. It returns every device, and the errors of the
// devices that did not complete (joined).
func Run(ctx context.Context, ca *testpki.Pair, cfg Config, sc Scenario) ([]*Device, error) {
	devices := make([]*Device, sc.Devices)
	for i := range devices {
		devices[i] = NewDevice(fmt.Sprintf("device-%d", i+1), ca, cfg)
	}
	reboot := map[int]bool{}
	for _, i := range sc.Reboot {
		reboot[i] = true
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := life(ctx, d, reboot[i], sc.ConnectOnly); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	switch {
	case len(errs) == 0:
		return devices, nil
	case len(errs) <= 5:
		return devices, errors.Join(errs...)
	default:
		return devices, fmt.Errorf("%d of %d devices did not complete; first: %w", len(errs), len(devices), errs[0])
	}
}

func life(ctx context.Context, d *Device, reboot, connectOnly bool) error {
	defer d.Disconnect()
	boots := 1
	if reboot {
		boots = 2
	}
	for b := 0; b < boots; b++ {
		if b > 0 {
			d.Disconnect()
			d.cfg.Timeline.Event(d.Name, "reboot")
		}
		if err := d.Boot(); err != nil {
			return err
		}
		if err := d.Connect(ctx); err != nil {
			return err
		}
		if !connectOnly {
			if err := d.RunSession(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Latencies returns, for every connected boot, the time from its first connect attempt to its connection, sorted.
func Latencies(devices []*Device) []time.Duration {
	var out []time.Duration
	for _, d := range devices {
		for _, s := range d.Sessions {
			out = append(out, s.Connected.Sub(s.FirstAttempt))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Percentile returns the p-th percentile (0..100) of sorted durations, nearest rank.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}
