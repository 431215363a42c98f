package localaws

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/shadow"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// Summary is the end state of the registry, the shadows and the bucket.
type Summary struct {
	Things       []ThingSummary
	Certificates map[string]int // count by status
	Objects      []string       // keys in the demo bucket
	IAM          motoserver.IAMStats
}

// ThingSummary is one thing with its certificates and shadow.
type ThingSummary struct {
	Name               string
	ActiveCertificates []string
	OtherCertificates  map[string]string // id → status
	ShadowReported     string            // reported state as JSON, "" without a shadow
}

// Summarize reads the end state from the AWS API (moto).
func Summarize(ctx context.Context, cfg aws.Config, bucket string) (*Summary, error) {
	// The emulator's own inspection of the end state: its reads take no AWS IoT quota from the function.
	iotc := iot.NewFromConfig(cfg, func(o *iot.Options) { o.APIOptions = append(o.APIOptions, motoserver.Internal) })
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	sh := &shadow.Client{Endpoint: aws.ToString(cfg.BaseEndpoint), Region: cfg.Region, Credentials: cfg.Credentials}
	sum := &Summary{Certificates: map[string]int{}}

	status := map[string]string{}
	for certs := iot.NewListCertificatesPaginator(iotc, &iot.ListCertificatesInput{}); certs.HasMorePages(); {
		page, err := certs.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list certificates: %w", err)
		}
		for _, c := range page.Certificates {
			status[aws.ToString(c.CertificateArn)] = string(c.Status)
			sum.Certificates[string(c.Status)]++
		}
	}
	var things []iottypes.ThingAttribute
	for pages := iot.NewListThingsPaginator(iotc, &iot.ListThingsInput{}); pages.HasMorePages(); {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list things: %w", err)
		}
		things = append(things, page.Things...)
	}
	for _, t := range things {
		ts := ThingSummary{Name: aws.ToString(t.ThingName), OtherCertificates: map[string]string{}}
		ps, err := iotc.ListThingPrincipals(ctx, &iot.ListThingPrincipalsInput{ThingName: t.ThingName})
		if err != nil {
			return nil, fmt.Errorf("list principals of %s: %w", ts.Name, err)
		}
		for _, p := range ps.Principals {
			id := p[strings.LastIndex(p, "/")+1:]
			if status[p] == "ACTIVE" {
				ts.ActiveCertificates = append(ts.ActiveCertificates, id)
			} else {
				ts.OtherCertificates[id] = status[p]
			}
		}
		if doc, err := sh.Do(ctx, http.MethodGet, ts.Name, "", nil); err == nil {
			var d struct {
				State struct {
					Reported json.RawMessage `json:"reported"`
				} `json:"state"`
			}
			if json.Unmarshal(doc, &d) == nil {
				ts.ShadowReported = string(d.State.Reported)
			}
		}
		sum.Things = append(sum.Things, ts)
	}
	sort.Slice(sum.Things, func(i, j int) bool { return sum.Things[i].Name < sum.Things[j].Name })
	var err error
	if sum.IAM, err = motoserver.FetchIAMStats(ctx, aws.ToString(cfg.BaseEndpoint)); err != nil {
		return nil, err
	}
	if bucket != "" {
		p := s3.NewListObjectsV2Paginator(s3c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("list objects of %s: %w", bucket, err)
			}
			for _, o := range page.Contents {
				sum.Objects = append(sum.Objects, aws.ToString(o.Key))
			}
		}
	}
	return sum, nil
}

// Print writes the summary for people.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "\n=== summary ===\n")
	fmt.Fprintf(w, "things: %d\n", len(s.Things))
	for _, t := range s.Things {
		others := make([]string, 0, len(t.OtherCertificates))
		for id, st := range t.OtherCertificates {
			others = append(others, timeline.Short(id)+" "+st)
		}
		sort.Strings(others)
		active := make([]string, 0, len(t.ActiveCertificates))
		for _, id := range t.ActiveCertificates {
			active = append(active, timeline.Short(id))
		}
		line := fmt.Sprintf("  %s  active certificate: %s", timeline.Short(t.Name), strings.Join(active, ", "))
		if len(others) > 0 {
			line += "  older: " + strings.Join(others, ", ")
		}
		fmt.Fprintln(w, line)
		if t.ShadowReported != "" {
			fmt.Fprintf(w, "      shadow reported: %s\n", t.ShadowReported)
		}
	}
	keys := make([]string, 0, len(s.Certificates))
	for k := range s.Certificates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.Certificates[k]))
	}
	fmt.Fprintf(w, "certificates: %s\n", strings.Join(parts, ", "))
	shadows := 0
	for _, t := range s.Things {
		if t.ShadowReported != "" {
			shadows++
		}
	}
	fmt.Fprintf(w, "shadows: %d\n", shadows)
	fmt.Fprintln(w, s.IAMLine())
	fmt.Fprintf(w, "S3 objects: %d\n", len(s.Objects))
	for _, o := range s.Objects {
		parts := strings.Split(o, "/")
		if len(parts) == 3 {
			o = parts[0] + "/" + timeline.Short(parts[1]) + "/" + parts[2]
		}
		fmt.Fprintf(w, "  %s\n", o)
	}
}

// IAMLine says that IAM was enforced on the functions' AWS calls, and how many were authorized and denied.
func (s *Summary) IAMLine() string {
	roles := make([]string, 0, len(s.IAM.ByRole))
	for r := range s.IAM.ByRole {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return fmt.Sprintf("IAM: enforced on every AWS call of the function role(s) %s as AWS authorizes it: %d calls authorized, %d denied",
		strings.Join(roles, ", "), s.IAM.Authorized, s.IAM.Denied)
}
