package broker

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
)

// watchRegistry drops open connections whose certificate left the ACTIVE state or was deleted, and withdraws
// from each session the policies detached from its certificate, every RevocationPollInterval until the broker
// closes — when the registry's change feed is not live; when it is, followChanges acts on each change as it comes
// (registrycache.go) and this poll has nothing to do.
//
// It polls rather than re-checking on each packet: one ListCertificates and one ListTargetsForPolicy per policy in
// use cost the same for one connection as for a thousand, where a registry call per packet would put moto, a single
// process, on the path of every publish. AWS documents the disconnection as happening "within a few minutes"
// (UpdateCertificate); a policy detached from a connected certificate is not documented to disconnect it, so the
// connection stays and its next publish or subscribe the policy no longer allows is refused.
func (b *Broker) watchRegistry(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			if !b.reg.isLive() { // with the change feed live, what changed is acted on as it comes (registrycache.go)
				b.checkRegistry()
			}
		}
	}
}

// checkRegistry is one pass of watchRegistry.
func (b *Broker) checkRegistry() {
	type open struct {
		cl *mqtt.Client
		s  *session
	}
	var conns []open
	used := map[string]bool{}
	b.sessions.Range(func(k, v any) bool {
		s := v.(*session)
		conns = append(conns, open{cl: k.(*mqtt.Client), s: s})
		for _, name := range s.policyNames {
			used[name] = true
		}
		return true
	})
	if len(conns) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	status := map[string]iottypes.CertificateStatus{}
	in := &iot.ListCertificatesInput{PageSize: aws.Int32(250)}
	for {
		out, err := b.opts.IoT.ListCertificates(ctx, in)
		if err != nil {
			b.opts.Log.Warn("registry poll: list certificates", "error", err)
			return // judge nothing on a failed read
		}
		for _, c := range out.Certificates {
			status[aws.ToString(c.CertificateId)] = c.Status
		}
		if aws.ToString(out.NextMarker) == "" {
			break
		}
		in.Marker = out.NextMarker
	}
	attached := map[string]map[string]bool{} // policy → certificate ARNs
	for name := range used {
		out, err := b.opts.IoT.ListTargetsForPolicy(ctx, &iot.ListTargetsForPolicyInput{PolicyName: aws.String(name)})
		if err != nil {
			attached[name] = map[string]bool{} // a deleted policy allows nothing
			continue
		}
		set := map[string]bool{}
		for _, t := range out.Targets {
			set[t] = true
		}
		attached[name] = set
	}
	for _, c := range conns {
		st, ok := status[c.s.certID]
		if !ok || st != iottypes.CertificateStatusActive {
			why := "deleted"
			if ok {
				why = string(st)
			}
			b.revoke(c.cl, c.s, "certificate "+why)
			continue
		}
		b.withdrawDetached(c.cl, c.s, func(name string) bool { return attached[name][c.s.certARN] })
	}
}

// revoke closes a connection whose certificate can no longer authenticate; its Last Will is not published.
func (b *Broker) revoke(cl *mqtt.Client, s *session, why string) {
	s.mu.Lock()
	s.revoked = true
	s.mu.Unlock()
	b.opts.Timeline.Event(actorIoT, "disconnected %s: %s, as AWS IoT disconnects devices whose certificate is no longer ACTIVE", timeline.Short(cl.ID), why)
	cl.Stop(errRevoked)
}
