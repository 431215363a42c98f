package main

import (
	"testing"
	"time"
)

// TestAttemptTallyCountsTimeouts: three attempts, one of them as long as the connect timeout, are reported with
// their count per device, the one that timed out and their mean duration.
func TestAttemptTallyCountsTimeouts(t *testing.T) {
	var a attemptTally
	if got := a.report(2); got != "no connection attempts" {
		t.Errorf("empty tally: %q", got)
	}
	for _, d := range []time.Duration{time.Second, 2 * time.Second, connectTimeout} {
		a.add(d)
	}
	want := "connection attempts 3 (1.5 a device), 1 of them ran into the 10s connect timeout, 4.33 s each on average"
	if got := a.report(2); got != want {
		t.Errorf("report:\n got %q\nwant %q", got, want)
	}
}
