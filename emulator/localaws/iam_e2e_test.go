package localaws_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// TestAttachmentGrantedOnThingIsDeniedAndDeadLettered runs the variant of the synthesized template whose JITR role
// grants the thing-principal attachments on thing/* (AWS authorizes them on the certificate): IAM, enforced as AWS
// does, denies the function's first attachment; Lambda's retries fail the same way; the event lands in the
// template's dead-letter queue; the certificate stays PENDING_ACTIVATION and the device never connects.
func TestAttachmentGrantedOnThingIsDeniedAndDeadLettered(t *testing.T) {
	variant := env.template.Clone()
	spec, err := stacktemplate.ReadStack(variant)
	if err != nil {
		t.Fatal(err)
	}
	stacktemplate.MoveGrant(variant, spec.Function, []string{"iot:AttachThingPrincipal", "iot:DetachThingPrincipal"}, ":cert/*", ":thing/*")
	// Fewer receives, sooner, than the stack's (2 minutes × 5) before the registration queue redrives an event to
	// the dead-letter queue, so the test sees it happen.
	for _, id := range variant.OfType("AWS::SQS::Queue") {
		if strings.HasPrefix(id, "JitrRegistrationQueue") {
			variant.Resources[id].Properties["VisibilityTimeout"] = float64(1)
			variant.Resources[id].Properties["RedrivePolicy"].(map[string]any)["maxReceiveCount"] = float64(2)
		}
	}
	lw := &lineWriter{t: t}
	tw := startEmulatorWith(t, timeline.New(lw), variant)

	cfg := deviceConfig(tw, timeline.New(lw))
	cfg.MaxAttempts = 3
	d := devicesim.NewDevice("denied", env.tenantCA, cfg)
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(context.Background()); !errors.Is(err, devicesim.ErrGaveUp) {
		t.Fatalf("device Connect = %v, want ErrGaveUp: it must never connect", err)
	}
	tw.DrainFunction()

	cert := devicesim.CertificateID(d.Certificate().Cert)
	if st := certStatus(t, tw, cert); st != "PENDING_ACTIVATION" {
		t.Errorf("certificate %s, want PENDING_ACTIVATION", st)
	}
	records, err := tw.DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(records) == 0 {
		t.Fatal("nothing in the dead-letter queue")
	}
	// The registration queue's redrive policy moved the event there after its receives: the message is the event.
	var ev contract.RegisteredEvent
	if err := json.Unmarshal([]byte(records[0]), &ev); err != nil || ev.CertificateID != cert {
		t.Errorf("dead-letter message %s: want the registered event of certificate %s (%v)", records[0], cert, err)
	}
	st, err := env.moto.IAMStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Denied == 0 || st.Denials[0].Action != "iot:AttachThingPrincipal" ||
		!strings.Contains(st.Denials[0].Message, "is not authorized to perform: iot:AttachThingPrincipal on resource: arn:aws:iot:us-east-1:123456789012:cert/"+cert) {
		t.Errorf("IAM stats %+v: want the attachment on the certificate denied", st)
	}
}
