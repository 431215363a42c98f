package localaws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/cfn"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// applyAccountSettings does what CloudFormation does with the stack's Custom::IoTAccountSettings resource: it
// invokes the resource's function — the real lambda/accountsettings under aws-lambda-rie, signing as its role, its
// lines in its log group — with the Create request, and waits for the response the function PUTs to the request's
// response URL (served here, as CloudFormation serves a presigned S3 URL). Then it creates the fleet metrics, which
// need the index the resource turned on.
func (t *Emulator) applyAccountSettings(ctx context.Context, opts Options) error {
	for _, as := range t.Deployment.AccountSettings {
		resp, err := t.runCustomResource(ctx, as)
		if err != nil {
			return err
		}
		if resp.Status != cfn.StatusSuccess {
			return fmt.Errorf("%s %s: the function answered %s: %s", contract.AccountSettingsResourceType, as.LogicalID, resp.Status, resp.Reason)
		}
		id := resp.PhysicalResourceID
		t.tl.Event("deploy", "%s %s created by its function %s under aws-lambda-rie as its role: fleet indexing on (registry with the product's attributes, connectivity)%s; physical id %s…",
			contract.AccountSettingsResourceType, as.LogicalID, as.Function, loggingNote(as.Properties), id[:min(len(id), 40)])
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

// runCustomResource invokes the resource's function with a Create request and returns the response it sent.
func (t *Emulator) runCustomResource(ctx context.Context, as deploy.AccountSettings) (*cfn.Response, error) {
	fn, ok := t.Functions[as.FunctionID]
	if !ok {
		return nil, fmt.Errorf("%s %s: its function %s is not running", contract.AccountSettingsResourceType, as.LogicalID, as.FunctionID)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	path := "/cloudformation-response/" + hex.EncodeToString(token)
	got := make(chan cfn.Response, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var resp cfn.Response
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPut || r.URL.Path != path || json.Unmarshal(body, &resp) != nil {
			http.Error(w, "not the response URL of this request", http.StatusForbidden)
			return
		}
		select {
		case got <- resp:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	event, err := json.Marshal(as.CreateEvent(t.Deployment.StackName, motoserver.Region, motoserver.AccountID, "http://"+ln.Addr().String()+path))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := fn.Invoke(ctx, event); err != nil {
		return nil, fmt.Errorf("%s %s: invoke %s: %w", contract.AccountSettingsResourceType, as.LogicalID, as.Function, err)
	}
	select {
	case resp := <-got:
		return &resp, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s %s: no response from %s", contract.AccountSettingsResourceType, as.LogicalID, as.Function)
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
