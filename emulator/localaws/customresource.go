package localaws

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/cfn"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// createCustomResources does what CloudFormation does with the stack's custom resources that the product's
// functions serve: it invokes each resource's function — the real code under aws-lambda-rie, signing as its
// role, its lines in its log group — with the Create request, and waits for the response the function PUTs to
// the request's response URL (served here, as CloudFormation serves a presigned S3 URL). Then it creates the fleet
// metrics, which need the index the account-settings resource turned on.
func (t *Emulator) createCustomResources(ctx context.Context, opts Options) error {
	for _, cr := range t.Deployment.CustomResources {
		resp, err := t.runCustomResource(ctx, cr, cfn.RequestCreate)
		if err != nil {
			return err
		}
		if resp.Status != cfn.StatusSuccess {
			return fmt.Errorf("%s %s: the function answered %s: %s", cr.Type, cr.LogicalID, resp.Status, resp.Reason)
		}
		id := resp.PhysicalResourceID
		t.physicalIDs[cr.LogicalID] = id
		what := "nothing to do until the stack is deleted"
		if cr.Kind == deploy.KindAccountSettings {
			what = "fleet indexing on (registry with the product's attributes, connectivity)" + loggingNote(cr.Properties)
		}
		t.tl.Event("deploy", "%s %s created by its function %s under aws-lambda-rie as its role: %s; physical id %s…",
			cr.Type, cr.LogicalID, cr.Function, what, id[:min(len(id), 40)])
	}
	names, err := deploy.CreateFleetMetrics(ctx, opts.Template, t.Deployment, t.IoT)
	if err != nil {
		return err
	}
	for _, n := range names {
		t.tl.Event("deploy", "fleet metric %s created from the template", n)
	}
	return nil
}

// runCustomResource sends the resource's function CloudFormation's request (Create, or Delete of what the Create
// made) and returns the response it sent, waiting for it as long as the resource's ServiceTimeout (the function
// may continue itself in new invocations before it answers).
func (t *Emulator) runCustomResource(ctx context.Context, cr deploy.CustomResource, request cfn.RequestType) (*cfn.Response, error) {
	fn, ok := t.Functions[cr.FunctionID]
	if !ok {
		return nil, fmt.Errorf("%s %s: its function %s is not running", cr.Type, cr.LogicalID, cr.FunctionID)
	}
	got := make(chan cfn.Response, 1)
	url, srv, err := serveLoopback(func(base string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var resp cfn.Response
			body, _ := io.ReadAll(r.Body)
			if r.Method != http.MethodPut || r.URL.Path != base || json.Unmarshal(body, &resp) != nil {
				http.Error(w, "not the response URL of this request", http.StatusForbidden)
				return
			}
			select {
			case got <- resp:
			default:
			}
		})
	})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	event, err := json.Marshal(cr.Event(request, t.physicalIDs[cr.LogicalID], t.Deployment.StackName, motoserver.Region, motoserver.AccountID, url))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cr.ServiceTimeout())
	defer cancel()
	if _, err := fn.Invoke(ctx, event); err != nil {
		return nil, fmt.Errorf("%s %s: invoke %s: %w", cr.Type, cr.LogicalID, cr.Function, err)
	}
	select {
	case resp := <-got:
		return &resp, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s %s: no response from %s within its ServiceTimeout %s", cr.Type, cr.LogicalID, cr.Function, cr.ServiceTimeout())
	}
}

func loggingNote(props map[string]any) string {
	if level, _ := props[contract.PropLogLevel].(string); level != "" {
		return ", AWS IoT logging at " + level
	}
	return ""
}

// lambdaStream is a log stream name as Lambda names one per execution environment: date, version, an id.
func lambdaStream() string {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + hex.EncodeToString(id)
}

// progressTap shows a custom-resource function's log lines (log/slog JSON) on the timeline as they come: what it
// estimated, how far it got, why it refused.
type progressTap struct {
	tl     *timeline.Timeline
	source string
	mu     sync.Mutex
	buf    []byte
}

func (p *progressTap) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := p.buf[:i]
		p.buf = p.buf[i+1:]
		var m map[string]any
		if json.Unmarshal(line, &m) != nil || m["msg"] == nil {
			continue
		}
		msg := m["msg"]
		delete(m, "time")
		delete(m, "level")
		delete(m, "msg")
		p.tl.Event(p.source, "%v %s", msg, pairs(m))
	}
}

// serveLoopback serves the handler h builds for a random base path, on a loopback port, and returns the base URL.
func serveLoopback(h func(base string) http.Handler) (string, *http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	base := "/" + hex.EncodeToString(token)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: h(base)}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + base, srv, nil
}

// pairs is m as key=value pairs, sorted by key.
func pairs(m map[string]any) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, " ")
}
