package jitr

import (
	"io"
	"sort"
	"sync"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/emf"
)

// metricRecord collects the counts and step durations of one event and writes them as one EMF JSON line.
type metricRecord struct {
	namespace  string
	dimensions map[string]string
	properties map[string]string
	counts     map[string]float64
	durations  map[string]float64 // milliseconds, by metric name
	order      []string
}

func newMetricRecord(namespace string) *metricRecord {
	return &metricRecord{
		namespace:  namespace,
		dimensions: map[string]string{},
		properties: map[string]string{},
		counts:     map[string]float64{},
		durations:  map[string]float64{},
	}
}

func (r *metricRecord) count(name string, n int) {
	if _, seen := r.counts[name]; !seen {
		r.order = append(r.order, name)
	}
	r.counts[name] += float64(n)
}

func (r *metricRecord) duration(step string, d time.Duration) {
	name := "Duration." + step
	if _, seen := r.durations[name]; !seen {
		r.order = append(r.order, name)
	}
	r.durations[name] += float64(d.Microseconds()) / 1000
}

// encode renders the record in the embedded metric format (package emf), metrics in the order they were recorded.
func (r *metricRecord) encode(now time.Time) []byte {
	names := make([]string, 0, len(r.dimensions))
	for k := range r.dimensions {
		names = append(names, k)
	}
	sort.Strings(names)
	dims := make([]emf.Dimension, 0, len(names))
	for _, k := range names {
		dims = append(dims, emf.Dimension{Name: k, Value: r.dimensions[k]})
	}
	metrics := make([]emf.Metric, 0, len(r.order))
	for _, name := range r.order {
		if v, ok := r.counts[name]; ok {
			metrics = append(metrics, emf.Metric{Name: name, Unit: emf.Count, Value: v})
		} else {
			metrics = append(metrics, emf.Metric{Name: name, Unit: emf.Milliseconds, Value: r.durations[name]})
		}
	}
	props := make(map[string]any, len(r.properties))
	for k, v := range r.properties {
		props[k] = v
	}
	return emf.Line(r.namespace, now, dims, metrics, props)
}

// lockedWriter serialises whole lines from concurrent Handle calls.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) writeLine(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b) // metrics are best effort: a failed write must not fail provisioning
}
