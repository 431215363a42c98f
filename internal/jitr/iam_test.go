package jitr_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// attachOnThing turns the template into the variant whose JITR role grants the thing-principal attachments on
// thing/* (a resource type AWS does not authorize them on) instead of cert/*.
func attachOnThing(tmpl *stacktemplate.Template) {
	spec, err := stacktemplate.ReadStack(tmpl)
	if err != nil {
		panic(err)
	}
	stacktemplate.MoveGrant(tmpl, spec.Function, []string{"iot:AttachThingPrincipal", "iot:DetachThingPrincipal"}, ":cert/*", ":thing/*")
}

// TestAttachmentGrantedOnThingIsDeniedAsInAWS: with the grant on thing/*, IAM (enforced by the emulator as AWS
// does) denies the first attachment, the handler fails the event (Lambda retries it, then dead-letters it) and
// the certificate stays PENDING_ACTIVATION: the device could never connect.
func TestAttachmentGrantedOnThingIsDeniedAsInAWS(t *testing.T) {
	f := newFixture(t, testRetryPolicy)
	f.principal = jitrPrincipal(t, attachOnThing)
	defer jitrPrincipal(t, nil)
	h := f.newHandler(f.rec, testRetryPolicy)
	id := f.device(t, testpki.RandomDeviceID(), time.Now().Add(-time.Hour))
	err := h.Handle(context.Background(), f.event(id))
	if err == nil {
		t.Fatal("Handle succeeded although the role grants iot:AttachThingPrincipal on thing/* only")
	}
	for _, want := range []string{"AccessDeniedException", "is not authorized to perform: iot:AttachThingPrincipal on resource: arn:aws:iot:us-east-1:123456789012:cert/" + id} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Logf("handler error: %v", err)
	if st := f.status(t, id); st != types.CertificateStatusPendingActivation {
		t.Errorf("certificate %s, want it left PENDING_ACTIVATION", st)
	}
}
