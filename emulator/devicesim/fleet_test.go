package devicesim

import (
	"testing"
	"time"
)

func TestBackoffStaysWithinBoundsAndGrows(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	var maxSeen time.Duration
	for attempt := 1; attempt <= 30; attempt++ {
		for i := 0; i < 200; i++ {
			d := b.Delay(attempt)
			ceiling := min(b.Base<<(attempt-1), b.Max) + b.Base/4
			if attempt > 20 {
				ceiling = b.Max + b.Base/4
			}
			if d < b.Base/4 || d >= ceiling {
				t.Fatalf("Delay(%d) = %s, want in [%s, %s)", attempt, d, b.Base/4, ceiling)
			}
			if attempt == 1 && d >= b.Base+b.Base/4 {
				t.Fatalf("first retry waits %s, longer than the base", d)
			}
			maxSeen = max(maxSeen, d)
		}
	}
	if maxSeen < b.Max/2 {
		t.Errorf("largest delay over 30 attempts is %s: the backoff does not grow towards %s", maxSeen, b.Max)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {95, 95 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := Percentile(d, tc.p); got != tc.want {
			t.Errorf("Percentile(1..100 ms, %v) = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(empty) = %s", got)
	}
}

func TestBootMakesNewCertificateWithSameCNAndLaterNotBefore(t *testing.T) {
	ca := newCA(t)
	d := NewDevice("device-1", ca, Config{Endpoint: "127.0.0.1:1"})
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	first := d.Certificate()
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	second := d.Certificate()
	if first.Cert.Subject.CommonName != d.ID || second.Cert.Subject.CommonName != d.ID {
		t.Errorf("CNs %q, %q, want the device ID %q", first.Cert.Subject.CommonName, second.Cert.Subject.CommonName, d.ID)
	}
	if first.Key.Equal(second.Key) || CertificateID(first.Cert) == CertificateID(second.Cert) {
		t.Error("reboot kept the key or the certificate")
	}
	if !second.Cert.NotBefore.After(first.Cert.NotBefore) {
		t.Errorf("NotBefore %s then %s: a newer boot's certificate must be identifiable as newer", first.Cert.NotBefore, second.Cert.NotBefore)
	}
	if err := second.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("device certificate not signed by the tenant CA: %v", err)
	}
	if len(d.Certificates()) != 2 {
		t.Errorf("history has %d certificates, want 2", len(d.Certificates()))
	}
}
