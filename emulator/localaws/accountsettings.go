package localaws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// applyAccountSettings does what CloudFormation does with the stack's Custom::IoTAccountSettings resource — its
// handler turns fleet indexing (and AWS IoT logging, when the template asks) on, with the function's own identity,
// so moto's IAM layer judges its role, and its lines in the function's log group — then creates the fleet metrics,
// which need the index.
func (t *Emulator) applyAccountSettings(ctx context.Context, opts Options) error {
	for _, as := range t.Deployment.AccountSettings {
		principal, err := stacktemplate.FunctionPrincipal(opts.Template, t.Deployment.Resolver, as.FunctionID)
		if err != nil {
			return fmt.Errorf("function %s role: %w", as.FunctionID, err)
		}
		ident, err := t.ids.Register(ctx, as.Function, principal, nil)
		if err != nil {
			return err
		}
		api := iot.NewFromConfig(t.AWS, func(o *iot.Options) {
			o.Credentials = ident.Credentials()
			o.APIOptions = append(o.APIOptions, motoserver.Internal)
		})
		out := io.MultiWriter(opts.Log, t.LogShipper.Writer(as.LogGroup, lambdaStream()))
		id, err := deploy.ApplyAccountSettings(ctx, as, t.Deployment.StackName, api, slog.New(slog.NewJSONHandler(out, nil)))
		if err != nil {
			return err
		}
		t.tl.Event("deploy", "%s %s created by function %s as its role: fleet indexing on (registry with the product's attributes, connectivity)%s; physical id %s…",
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
