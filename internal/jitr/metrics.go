package jitr

import (
	"encoding/json"
	"io"
	"sync"
	"time"
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

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMetadata struct {
	Timestamp         int64          `json:"Timestamp"`
	CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
}

// encode renders the record in the embedded metric format: metric values and dimensions are top-level keys,
// described by the _aws directive.
func (r *metricRecord) encode(now time.Time) []byte {
	doc := map[string]any{}
	var dims []string
	for k, v := range r.dimensions {
		doc[k] = v
		dims = append(dims, k)
	}
	for k, v := range r.properties {
		doc[k] = v
	}
	directive := emfDirective{Namespace: r.namespace, Dimensions: [][]string{dims}}
	for _, name := range r.order {
		if v, ok := r.counts[name]; ok {
			doc[name] = v
			directive.Metrics = append(directive.Metrics, emfMetric{Name: name, Unit: "Count"})
		} else {
			doc[name] = r.durations[name]
			directive.Metrics = append(directive.Metrics, emfMetric{Name: name, Unit: "Milliseconds"})
		}
	}
	doc["_aws"] = emfMetadata{Timestamp: now.UnixMilli(), CloudWatchMetrics: []emfDirective{directive}}
	line, err := json.Marshal(doc)
	if err != nil {
		panic(err) // only strings, numbers and fixed structs: cannot fail
	}
	return append(line, '\n')
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
