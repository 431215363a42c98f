// Package timeline prints the readable, line-per-step account of the local emulator and the fleet simulator: one
// line per event, wall-clock time first, so the output of the emulator and of the simulator interleave in order.
package timeline

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Timeline writes events. A nil *Timeline discards them, so library code can take one optionally.
type Timeline struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a timeline writing to w.
func New(w io.Writer) *Timeline { return &Timeline{w: w} }

// Event writes one line: time, who acted, what happened.
func (t *Timeline) Event(actor, format string, args ...any) {
	if t == nil || t.w == nil {
		return
	}
	line := fmt.Sprintf("%s  %-12s %s\n", time.Now().Format("15:04:05.000"), actor, fmt.Sprintf(format, args...))
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = io.WriteString(t.w, line)
}

// Short abbreviates a thing name or certificate id for display.
func Short(id string) string {
	if len(id) > 10 {
		return id[:8] + "…"
	}
	return id
}
