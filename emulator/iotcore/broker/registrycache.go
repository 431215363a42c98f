package broker

// The registry as the broker keeps it in memory: AWS IoT Core admits a connection without an API call of the
// account, its data plane knowing each certificate's status, things and policies. The broker keeps the answers of
// its registry reads (certificate status, things, policies) and forgets one the moment the registry changes it,
// read from moto's change feed (testkit/moto/changes.py): a CONNECT of a known certificate costs no call to moto,
// and a certificate that leaves ACTIVE, or loses a policy, is acted on as soon as the feed reports it.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// ChangeFeed returns the registry's changes after since, waiting up to wait for one (motoserver.Server.Changes).
type ChangeFeed func(ctx context.Context, since uint64, wait time.Duration) (motoserver.Changes, error)

// cachedCert is what the broker read of a certificate: its status and ARN, and, once read, its things and policies.
type cachedCert struct {
	status      iottypes.CertificateStatus
	arn         string
	attachments bool // things and policies read
	things      []string
	policies    []string
}

// registryCache holds the registry's answers while the change feed is live. gen counts each certificate's
// invalidations: an answer read before an invalidation of its certificate is never stored after it.
type registryCache struct {
	mu    sync.Mutex
	live  bool
	certs map[string]cachedCert
	gen   map[string]uint64
	epoch uint64 // bumped when everything is forgotten
}

func (c *registryCache) isLive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

func isNotFound(err error) bool {
	var nf *iottypes.ResourceNotFoundException
	return errors.As(err, &nf)
}

// stamp is when a read of a certificate started, for store: its invalidation count and the cache's epoch.
type stamp struct{ gen, epoch uint64 }

func (c *registryCache) get(certID string) (cachedCert, bool, stamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := stamp{c.gen[certID], c.epoch}
	if !c.live {
		return cachedCert{}, false, st
	}
	e, ok := c.certs[certID]
	return e, ok, st
}

// store keeps e unless the certificate changed since st (or the feed is down).
func (c *registryCache) store(certID string, e cachedCert, st stamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || c.gen[certID] != st.gen || c.epoch != st.epoch {
		return
	}
	if c.certs == nil {
		c.certs = map[string]cachedCert{}
	}
	c.certs[certID] = e
}

func (c *registryCache) invalidate(certIDs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == nil {
		c.gen = map[string]uint64{}
	}
	for _, id := range certIDs {
		delete(c.certs, id)
		c.gen[id]++
	}
}

// forget drops everything; live says whether answers may be kept from now on.
func (c *registryCache) forget(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.certs, c.gen = nil, nil
	c.epoch++
	c.live = live
}

// followChanges reads the registry's change feed until the broker closes: it forgets what changed, drops the
// connections of certificates that left ACTIVE and withdraws detached policies from their sessions. When the feed
// cannot say what changed (moto reset, a read failed), everything is forgotten and every open connection is
// checked against the registry (checkRegistry).
func (b *Broker) followChanges(feed ChangeFeed) {
	var since uint64
	synced := false
	for b.ctx.Err() == nil {
		ch, err := feed(b.ctx, since, 10*time.Second)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.opts.Log.Warn("registry change feed", "error", err)
			b.reg.forget(false)
			synced = false
			select {
			case <-b.ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if ch.Gap || !synced {
			b.reg.forget(true)
			since, synced = ch.Seq, true
			b.forgetPolicies()
			b.checkRegistry()
			continue
		}
		since = ch.Seq
		if len(ch.Policies) > 0 {
			for _, name := range ch.Policies {
				b.policies.Delete(name)
			}
		}
		if len(ch.Certificates) > 0 {
			b.reg.invalidate(ch.Certificates)
			b.recheck(ch.Certificates)
		}
	}
}

// forgetPolicies drops the policy documents read from the registry, keeping the deployment's own.
func (b *Broker) forgetPolicies() {
	b.policies.Range(func(k, _ any) bool {
		if _, deployed := b.opts.Deployment.Policies[k.(string)]; !deployed {
			b.policies.Delete(k)
		}
		return true
	})
}

// recheck reads the registry again for the open connections of the changed certificates: a certificate no longer
// ACTIVE (or deleted) has its connections dropped, a detached policy is withdrawn from the session.
func (b *Broker) recheck(certIDs []string) {
	changed := make(map[string]bool, len(certIDs))
	for _, id := range certIDs {
		changed[id] = true
	}
	type open struct {
		cl *mqtt.Client
		s  *session
	}
	var conns []open
	b.sessions.Range(func(k, v any) bool {
		if s := v.(*session); changed[s.certID] {
			conns = append(conns, open{cl: k.(*mqtt.Client), s: s})
		}
		return true
	})
	if len(conns) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	for _, c := range conns {
		desc, err := b.opts.IoT.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(c.s.certID)})
		var status iottypes.CertificateStatus
		switch {
		case isNotFound(err):
			b.revoke(c.cl, c.s, "certificate deleted")
			continue
		case err != nil:
			b.opts.Log.Warn("registry recheck: describe certificate", "error", err)
			continue // judge nothing on a failed read
		default:
			status = desc.CertificateDescription.Status
		}
		if status != iottypes.CertificateStatusActive {
			b.revoke(c.cl, c.s, "certificate "+string(status))
			continue
		}
		pols, err := b.opts.IoT.ListAttachedPolicies(ctx, &iot.ListAttachedPoliciesInput{Target: aws.String(c.s.certARN)})
		if err != nil {
			b.opts.Log.Warn("registry recheck: list policies", "error", err)
			continue
		}
		attached := map[string]bool{}
		for _, p := range pols.Policies {
			attached[aws.ToString(p.PolicyName)] = true
		}
		b.withdrawDetached(c.cl, c.s, func(name string) bool { return attached[name] })
	}
}

// withdrawDetached keeps in the session only the policies still attached to its certificate.
func (b *Broker) withdrawDetached(cl *mqtt.Client, s *session, stillAttached func(name string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	var pols []*policy.Policy
	for i, name := range s.policyNames {
		if stillAttached(name) {
			names = append(names, name)
			pols = append(pols, s.policies[i])
		}
	}
	if len(names) != len(s.policyNames) {
		b.opts.Timeline.Event(actorIoT, "policy detached from certificate of %s: its further requests are judged without it", timeline.Short(cl.ID))
	}
	s.policyNames, s.policies = names, pols
}
