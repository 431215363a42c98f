// Package emf renders CloudWatch embedded metric format records: one JSON line whose top-level keys hold the
// dimension values, the metric values and any other properties, described by the _aws directive. Lambda writes
// its stdout to CloudWatch Logs, which turns such lines into metrics without an API call. Every function of the
// stack writes its metrics through it.
package emf

import (
	"encoding/json"
	"time"
)

// Units of the metrics the project writes.
const (
	Count        = "Count"
	Milliseconds = "Milliseconds"
)

// Dimension is one dimension of a record, in the order the dimension set lists them.
type Dimension struct{ Name, Value string }

// Metric is one metric value of a record.
type Metric struct {
	Name  string
	Unit  string
	Value float64
}

type directiveMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

type directive struct {
	Namespace  string            `json:"Namespace"`
	Dimensions [][]string        `json:"Dimensions"`
	Metrics    []directiveMetric `json:"Metrics"`
}

type metadata struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

// Line renders one record at time at, under namespace, with one dimension set made of dims, ending in a newline.
// props are logged with the record but are not metrics (ids, reasons); a prop may not reuse a dimension's or a
// metric's name.
func Line(namespace string, at time.Time, dims []Dimension, metrics []Metric, props map[string]any) []byte {
	doc := make(map[string]any, len(dims)+len(metrics)+len(props)+1)
	for k, v := range props {
		doc[k] = v
	}
	set := make([]string, 0, len(dims))
	for _, d := range dims {
		doc[d.Name] = d.Value
		set = append(set, d.Name)
	}
	dir := directive{Namespace: namespace, Dimensions: [][]string{set}}
	for _, m := range metrics {
		doc[m.Name] = m.Value
		dir.Metrics = append(dir.Metrics, directiveMetric{Name: m.Name, Unit: m.Unit})
	}
	doc["_aws"] = metadata{Timestamp: at.UnixMilli(), CloudWatchMetrics: []directive{dir}}
	line, err := json.Marshal(doc)
	if err != nil {
		panic(err) // strings, numbers and the caller's plain props only
	}
	return append(line, '\n')
}
