package localaws_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/emulator/fleet"
	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// TestAttachmentGrantedOnThingIsDeniedAndDeadLettered runs the variant of the synthesized template whose JITR role
// grants the thing-principal attachments on thing/* (AWS authorizes them on the certificate): IAM, enforced as AWS
// does, denies the function's first attachment; Lambda's retries fail the same way; the event lands in the
// template's dead-letter queue; the certificate stays PENDING_ACTIVATION and the device never connects.
func TestAttachmentGrantedOnThingIsDeniedAndDeadLettered(t *testing.T) {
	variant := env.template.Clone()
	spec, err := localaws.ReadStack(variant)
	if err != nil {
		t.Fatal(err)
	}
	localaws.MoveGrant(variant, spec.Function, []string{"iot:AttachThingPrincipal", "iot:DetachThingPrincipal"}, ":cert/*", ":thing/*")
	lw := &lineWriter{t: t}
	tw := startEmulatorWith(t, timeline.New(lw), variant)

	cfg := deviceConfig(tw, timeline.New(lw))
	cfg.MaxAttempts = 3
	d := fleet.NewDevice("denied", env.tenantCA, cfg)
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(context.Background()); !errors.Is(err, fleet.ErrGaveUp) {
		t.Fatalf("device Connect = %v, want ErrGaveUp: it must never connect", err)
	}
	tw.DrainFunction()

	cert := fleet.CertificateID(d.Certificate().Cert)
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
	var rec struct {
		RequestContext struct {
			Condition              string
			ApproximateInvokeCount int
		}
		RequestPayload  struct{ CertificateID string }
		ResponsePayload struct{ ErrorMessage string }
	}
	if err := json.Unmarshal([]byte(records[0]), &rec); err != nil {
		t.Fatalf("dead-letter record %s: %v", records[0], err)
	}
	if rec.RequestContext.Condition != "RetriesExhausted" || rec.RequestContext.ApproximateInvokeCount != 3 || rec.RequestPayload.CertificateID != cert {
		t.Errorf("dead-letter record %s: want RetriesExhausted after 3 attempts for certificate %s", records[0], cert)
	}
	for _, want := range []string{"AccessDeniedException", "is not authorized to perform: iot:AttachThingPrincipal on resource: arn:aws:iot:us-east-1:123456789012:cert/" + cert} {
		if !strings.Contains(rec.ResponsePayload.ErrorMessage, want) {
			t.Errorf("dead-letter error %q lacks %q", rec.ResponsePayload.ErrorMessage, want)
		}
	}
	st, err := env.moto.IAMStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Denied == 0 || st.Denials[0].Action != "iot:AttachThingPrincipal" {
		t.Errorf("IAM stats %+v: want the attachment denied", st)
	}
}
