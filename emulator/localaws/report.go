package localaws

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/lambdaruntime"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// certificateReport tells on the timeline what the JITR function did to the registry: each certificate's new
// status, and what became of a device's older certificates (revoked, or retired: deactivated and deleted). It
// shows a certificate only when its status changed since it was last shown.
type certificateReport struct {
	tl         *timeline.Timeline
	iot        *iot.Client
	mu         sync.Mutex
	reported   map[string]string   // certificate id → last status shown on the timeline
	certThing  map[string]string   // certificate id → thing its CN names
	thingCerts map[string][]string // thing → certificates seen
}

// invocation reports the outcome of one invocation of the function on a registered event.
func (c *certificateReport) invocation(res lambdaruntime.AsyncResult) {
	var ev contract.RegisteredEvent
	_ = json.Unmarshal(res.Payload, &ev)
	if res.Err != nil {
		c.tl.Event("jitr", "certificate %s: function failed after %d attempts: %v", timeline.Short(ev.CertificateID), res.Attempts, res.Err)
		return
	}
	if c.tl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, thing := c.certificateState(ctx, ev.CertificateID)
	if thing == "" {
		return
	}
	c.mu.Lock()
	certs := append([]string(nil), c.thingCerts[thing]...)
	c.mu.Unlock()
	others, superseded := certs, false
	if own := slices.Index(certs, ev.CertificateID); own >= 0 {
		others = slices.Delete(certs, own, own+1)
		// A deferred retirement can retire the record's own certificate when the device has a newer one: that is
		// the device's old certificate, shown as such whichever record retires it.
		superseded = own < len(others)
	}
	if !superseded || !c.showRetired(ev.CertificateID, status, thing) {
		c.show(ev.CertificateID, status, "certificate %s → %s (thing %s)", timeline.Short(ev.CertificateID), status, timeline.Short(thing))
	}
	for _, id := range others {
		st, _ := c.certificateState(ctx, id)
		c.showRetired(id, st, thing)
	}
}

// record reports what the function did with one record of a queue batch (a registered event or a retirement).
func (c *certificateReport) record(r lambdaruntime.SQSRecord) {
	var req contract.RetirementRequest
	if json.Unmarshal([]byte(r.Body), &req) == nil && req.Thing != "" {
		body, _ := json.Marshal(contract.RegisteredEvent{CertificateID: req.CertificateID})
		c.invocation(lambdaruntime.AsyncResult{Payload: body})
		return
	}
	c.invocation(lambdaruntime.AsyncResult{Payload: []byte(r.Body)})
}

// showRetired shows what became of an old certificate of a thing, and reports whether it was retired at all.
func (c *certificateReport) showRetired(id, status, thing string) bool {
	switch status {
	case "deleted":
		c.show(id, status, "old certificate %s of thing %s revoked: deactivated and deleted by the function, it can no longer connect", timeline.Short(id), timeline.Short(thing))
	case "REVOKED", "INACTIVE":
		c.show(id, status, "old certificate %s of thing %s → %s", timeline.Short(id), timeline.Short(thing), status)
	default:
		return false
	}
	return true
}

// certificateState returns a certificate's status ("deleted" once gone) and the thing its CN names.
func (c *certificateReport) certificateState(ctx context.Context, id string) (status, thing string) {
	c.mu.Lock()
	thing = c.certThing[id]
	c.mu.Unlock()
	desc, err := c.iot.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
	var nf *iottypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		return "deleted", thing
	}
	if err != nil {
		return "unknown", thing
	}
	if thing == "" {
		if cert, err := azsphere.ParseCertificate([]byte(aws.ToString(desc.CertificateDescription.CertificatePem))); err == nil {
			thing = strings.ToLower(cert.Subject.CommonName)
			c.mu.Lock()
			c.certThing[id] = thing
			c.thingCerts[thing] = append(c.thingCerts[thing], id)
			c.mu.Unlock()
		}
	}
	return string(desc.CertificateDescription.Status), thing
}

// show writes a timeline line when a certificate's status differs from the one last shown.
func (c *certificateReport) show(id, status, format string, args ...any) {
	c.mu.Lock()
	changed := c.reported[id] != status
	c.reported[id] = status
	c.mu.Unlock()
	if changed {
		c.tl.Event("jitr", format, args...)
	}
}
