package emf

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLineIsEmbeddedMetricFormat(t *testing.T) {
	at := time.UnixMilli(1796164728051)
	line := Line("SphereJitr", at, []Dimension{{"ProvisionedBy", "Stack"}, {"CA", "ca1"}},
		[]Metric{{"Provisioned", Count, 1}, {"Duration.Handler", Milliseconds, 12.5}}, map[string]any{"certificateId": "abc"})
	if !strings.HasSuffix(string(line), "}\n") || strings.Count(string(line), "\n") != 1 {
		t.Fatalf("not one JSON line: %q", line)
	}
	var doc struct {
		ProvisionedBy string  `json:"ProvisionedBy"`
		CA            string  `json:"CA"`
		Provisioned   float64 `json:"Provisioned"`
		Duration      float64 `json:"Duration.Handler"`
		CertificateID string  `json:"certificateId"`
		AWS           struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
	}
	if err := json.Unmarshal(line, &doc); err != nil {
		t.Fatal(err)
	}
	d := doc.AWS.CloudWatchMetrics
	if doc.ProvisionedBy != "Stack" || doc.CA != "ca1" || doc.Provisioned != 1 || doc.Duration != 12.5 || doc.CertificateID != "abc" ||
		doc.AWS.Timestamp != 1796164728051 || len(d) != 1 || d[0].Namespace != "SphereJitr" ||
		len(d[0].Dimensions) != 1 || strings.Join(d[0].Dimensions[0], ",") != "ProvisionedBy,CA" ||
		len(d[0].Metrics) != 2 || d[0].Metrics[0].Name != "Provisioned" || d[0].Metrics[0].Unit != "Count" || d[0].Metrics[1].Unit != "Milliseconds" {
		t.Errorf("record %s decoded as %+v", line, doc)
	}
}
