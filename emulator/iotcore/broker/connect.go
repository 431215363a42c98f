package broker

// The CONNECT check: AWS IoT Core's admission of a TLS client (its certificate in the registry, ACTIVE, attached
// to a thing whose name is the client id, the attached policies allowing iot:Connect) and its just-in-time
// registration of unknown certificates that chain to a registered CA.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

const actorIoT = "iot-core"

// errRefused closes a connection without CONNACK, as AWS IoT does when it refuses a certificate or a connect.
var errRefused = errors.New("connection refused by the emulator")

// errNoSNI fails the TLS handshake of a client that sent no server name, as AWS IoT refuses it.
var errNoSNI = errors.New("TLS ClientHello without SNI")

// errRevoked ends the connection of a certificate that is no longer ACTIVE.
var errRevoked = errors.New("certificate no longer ACTIVE")

// admit decides a CONNECT: it returns the session of an authorised client, or the reason for refusing it. The
// certificate must be in the registry and ACTIVE (an unknown one chaining to a registered CA is auto-registered,
// a pending one announced again), and its attached policies must allow iot:Connect for the client id. What the
// broker already read of the certificate, and the registry has not changed since, is answered from memory
// (registrycache.go) without a registry call or a registry slot.
func (b *Broker) admit(ctx context.Context, cl *mqtt.Client) (*session, string) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return nil, "not a TLS connection"
	}
	chain := tc.ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return nil, "no client certificate"
	}
	leaf := chain[0]
	sum := sha256.Sum256(leaf.Raw)
	certID := hex.EncodeToString(sum[:])
	cached, known, st := b.reg.get(certID)
	if known && (cached.status != iottypes.CertificateStatusActive || cached.attachments) {
		if why := b.judgeStatus(leaf, chain[1:], certID, cached.status); why != "" {
			return nil, why
		}
		return b.authorize(ctx, cl.ID, leaf, certID, cached, st)
	}
	slots := b.lookups
	if st.gen > 0 { // changed since the broker read it: most often a device retrying after its activation
		slots = b.relookups
	}
	wait := time.NewTimer(registrySlotWait)
	defer wait.Stop()
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	case <-wait.C:
		return nil, "service busy: registry overloaded, retry later"
	case <-ctx.Done():
		return nil, "broker closing"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !known {
		var why string
		if cached, why = b.activeCertificate(ctx, leaf, chain[1:], certID, st); why != "" {
			return nil, why
		}
	}
	return b.authorize(ctx, cl.ID, leaf, certID, cached, st)
}

// activeCertificate reads the certificate's status from the registry (and keeps it, registrycache.go): an ACTIVE
// certificate is returned, an unknown one is auto-registered, and every other status refuses the connection.
func (b *Broker) activeCertificate(ctx context.Context, leaf *x509.Certificate, intermediates []*x509.Certificate, certID string, st stamp) (cachedCert, string) {
	desc, err := b.opts.IoT.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(certID)})
	switch {
	case isNotFound(err):
		return cachedCert{}, b.autoRegister(ctx, leaf, intermediates, certID)
	case err != nil:
		return cachedCert{}, fmt.Sprintf("registry lookup failed: %v", err)
	}
	c := cachedCert{status: desc.CertificateDescription.Status, arn: aws.ToString(desc.CertificateDescription.CertificateArn)}
	b.reg.store(certID, c, st)
	return c, b.judgeStatus(leaf, intermediates, certID, c.status)
}

// judgeStatus refuses a certificate that is not ACTIVE; one still PENDING_ACTIVATION has its registered event
// published again.
func (b *Broker) judgeStatus(leaf *x509.Certificate, intermediates []*x509.Certificate, certID string, status iottypes.CertificateStatus) string {
	switch status {
	case iottypes.CertificateStatusPendingActivation:
		// AWS IoT publishes the registered event again on every connection attempt with a certificate still
		// PENDING_ACTIVATION (the status as the registry has it at that moment: the broker's memory of it is
		// dropped the moment the registry changes it), at least once and in no guaranteed order: "Event messages
		// are guaranteed to be published once. It is possible for them to be published more than once. The
		// ordering of event messages is not guaranteed." (https://docs.aws.amazon.com/iot/latest/developerguide/iot-events.html)
		if ca, ok := b.issuingCA(leaf, intermediates); ok {
			b.publishRegistered(certID, ca.ID)
			return fmt.Sprintf("certificate %s is PENDING_ACTIVATION: registered event re-published", timeline.Short(certID))
		}
		return fmt.Sprintf("certificate %s is PENDING_ACTIVATION", timeline.Short(certID))
	case iottypes.CertificateStatusActive:
		return ""
	default:
		return fmt.Sprintf("certificate %s is %s", timeline.Short(certID), status)
	}
}

// authorize builds the session of an ACTIVE certificate — the policy variables of the connection (its thing when
// the certificate is attached to the thing named by the client id) and the policies attached to the certificate,
// read from the registry unless the broker has them (c.attachments) — and checks iot:Connect against them.
func (b *Broker) authorize(ctx context.Context, clientID string, leaf *x509.Certificate, certID string, c cachedCert, st stamp) (*session, string) {
	certARN := c.arn
	if !c.attachments {
		things, err := b.opts.IoT.ListPrincipalThings(ctx, &iot.ListPrincipalThingsInput{Principal: aws.String(certARN)})
		if err != nil {
			return nil, fmt.Sprintf("list things of certificate: %v", err)
		}
		pols, err := b.opts.IoT.ListAttachedPolicies(ctx, &iot.ListAttachedPoliciesInput{Target: aws.String(certARN)})
		if err != nil {
			return nil, fmt.Sprintf("list policies of certificate: %v", err)
		}
		c.things, c.policies, c.attachments = things.Things, nil, true
		for _, p := range pols.Policies {
			c.policies = append(c.policies, aws.ToString(p.PolicyName))
		}
		b.reg.store(certID, c, st)
	}
	attached := slices.Contains(c.things, clientID)
	vars := map[string]string{
		"iot:ClientId":                       clientID,
		"iot:Connection.Thing.IsAttached":    fmt.Sprint(attached),
		"iot:Certificate.Subject.CommonName": leaf.Subject.CommonName,
		"iot:Certificate.Issuer.CommonName":  leaf.Issuer.CommonName,
		"iot:Certificate.SerialNumber":       leaf.SerialNumber.String(),
	}
	s := &session{certID: certID, certARN: certARN, vars: vars, pending: map[string]bool{}}
	if attached {
		vars["iot:Connection.Thing.ThingName"] = clientID
		s.thing = clientID
	}
	for _, name := range c.policies {
		doc, err := b.policy(ctx, name)
		if err != nil {
			return nil, err.Error()
		}
		s.policies = append(s.policies, doc)
		s.policyNames = append(s.policyNames, name)
	}
	if !policy.Allowed(policy.Request{Action: "iot:Connect", Resource: b.arn("client", clientID), Vars: vars}, s.policies...) {
		why := "no attached policy allows iot:Connect"
		if !attached {
			why = fmt.Sprintf("certificate is not attached to thing %q (iot:Connection.Thing.IsAttached is false)", timeline.Short(clientID))
		}
		return nil, "not authorised: " + why
	}
	return s, ""
}

// autoRegister is AWS IoT's just-in-time registration: an unknown certificate that chains to a registered,
// active CA with auto-registration is registered PENDING_ACTIVATION and announced; the connection is dropped.
func (b *Broker) autoRegister(ctx context.Context, leaf *x509.Certificate, intermediates []*x509.Certificate, certID string) string {
	ca, ok := b.issuingCA(leaf, intermediates)
	if !ok {
		return fmt.Sprintf("unknown certificate %s does not chain to a registered CA", timeline.Short(certID))
	}
	if !ca.Active || !ca.AutoRegistration {
		return fmt.Sprintf("unknown certificate %s: CA %s is not active with auto-registration", timeline.Short(certID), timeline.Short(ca.ID))
	}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
	_, err := b.opts.IoT.RegisterCertificate(ctx, &iot.RegisterCertificateInput{
		CertificatePem:   aws.String(certPEM),
		CaCertificatePem: aws.String(ca.PEM),
		Status:           iottypes.CertificateStatusPendingActivation,
	})
	var exists *iottypes.ResourceAlreadyExistsException
	if err != nil && !errors.As(err, &exists) {
		return fmt.Sprintf("register certificate %s: %v", timeline.Short(certID), err)
	}
	b.publishRegistered(certID, ca.ID)
	return fmt.Sprintf("unknown certificate %s of CA %s: registered PENDING_ACTIVATION, registered event published, connection closed",
		timeline.Short(certID), timeline.Short(ca.ID))
}

// issuingCA returns the deployed CA the certificate chains to, verified by signature and validity. A chain that
// verified is remembered (chainCache) and only its validity is checked again: a device retrying while its
// certificate is pending presents the same chain every few seconds, and a P-384 signature check on each attempt
// was a third of the CPU a 10 000-device storm cost the machine that emulates it. What is verified is unchanged.
func (b *Broker) issuingCA(leaf *x509.Certificate, intermediates []*x509.Certificate) (deploy.CA, bool) {
	key := chainKeyOf(leaf, intermediates)
	if i, ok := b.chains.get(key, time.Now()); ok && i < len(b.opts.Deployment.CAs) {
		return b.opts.Deployment.CAs[i], true
	}
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	for i, ca := range b.opts.Deployment.CAs {
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil {
			b.chains.put(key, i, chains[0])
			return ca, true
		}
	}
	return deploy.CA{}, false
}

// chainKey names a presented chain: the SHA-256 of its certificates' DER, in order.
type chainKey [sha256.Size]byte

func chainKeyOf(leaf *x509.Certificate, intermediates []*x509.Certificate) chainKey {
	h := sha256.New()
	for _, c := range append([]*x509.Certificate{leaf}, intermediates...) {
		h.Write(c.Raw)
	}
	var k chainKey
	copy(k[:], h.Sum(nil))
	return k
}

// chainCache remembers chains that verified: the deployed CA each reached (its index in Deployment.CAs) and the
// period in which every certificate of the verified chain is valid.
type chainCache struct {
	mu     sync.Mutex
	chains map[chainKey]verifiedChain
}

type verifiedChain struct {
	ca                  int
	notBefore, notAfter time.Time
}

// chainCacheLimit bounds the memory of a long run: past it the cache starts again empty.
const chainCacheLimit = 200_000

func (c *chainCache) get(k chainKey, now time.Time) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.chains[k]
	if !ok || now.Before(v.notBefore) || now.After(v.notAfter) {
		return 0, false
	}
	return v.ca, true
}

func (c *chainCache) put(k chainKey, ca int, chain []*x509.Certificate) {
	v := verifiedChain{ca: ca, notBefore: chain[0].NotBefore, notAfter: chain[0].NotAfter}
	for _, cert := range chain[1:] {
		if cert.NotBefore.After(v.notBefore) {
			v.notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(v.notAfter) {
			v.notAfter = cert.NotAfter
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chains == nil || len(c.chains) >= chainCacheLimit {
		c.chains = map[chainKey]verifiedChain{}
	}
	c.chains[k] = v
}

func (b *Broker) publishRegistered(certID, caID string) {
	now := time.Now().UnixMilli()
	ev, _ := json.Marshal(contract.RegisteredEvent{
		CertificateID: certID, CACertificateID: caID, Timestamp: contract.EpochMillis(now), CertificateStatus: "PENDING_ACTIVATION",
		AWSAccountID: b.account, CertificateRegistrationTimestamp: contract.EpochMillis(now),
	})
	_ = b.Publish(contract.RegisteredEventTopic(caID), ev)
}

func (b *Broker) policy(ctx context.Context, name string) (*policy.Policy, error) {
	if p, ok := b.policies.Load(name); ok {
		return p.(*policy.Policy), nil
	}
	out, err := b.opts.IoT.GetPolicy(ctx, &iot.GetPolicyInput{PolicyName: aws.String(name)})
	if err != nil {
		return nil, fmt.Errorf("get policy %s: %w", name, err)
	}
	p, err := policy.Parse([]byte(aws.ToString(out.PolicyDocument)))
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	b.policies.Store(name, p)
	return p, nil
}
