package jitr

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

// Config is what the handler needs to know about the stack that deployed it.
type Config struct {
	// CAs maps each CA certificate id the stack registered to its certificate, so the signature of a device
	// certificate is checked without an API call.
	CAs map[string]*x509.Certificate
	// PolicyName is the IoT policy attached to every provisioned certificate.
	PolicyName string
	// ProvisionedBy is written to the provisionedBy attribute of the things the handler creates (the stack name).
	ProvisionedBy string
	// MetricsNamespace is the CloudWatch namespace of the metrics; empty means contract.MetricsNamespace.
	MetricsNamespace string
	// ClockSkew is how far a certificate's NotBefore may be ahead of the clock and still be provisioned now;
	// beyond it the certificate is left PENDING_ACTIVATION for a later event. Zero tolerates no skew.
	ClockSkew time.Duration
	// DenyListTable is the DynamoDB table of devices shut out by `fleetctl revoke`; a certificate of a device on it
	// is revoked instead of provisioned. Empty disables the check (tests of other paths).
	DenyListTable string
	// LedgerTable is the provisioning ledger (contract.LedgerKey): claims that let one delivery of a registered
	// event through and drop its duplicates before any AWS IoT call.
	LedgerTable string
	// RegistrationQueueURL is the queue the topic rules fill; RetirementQueueURL the queue of deferred retirements.
	RegistrationQueueURL, RetirementQueueURL string
	// RateLimits is this execution environment's share of the account's AWS IoT quotas (requests per second per
	// API); the IoT client is paced to it.
	RateLimits iotapi.RateLimits
	// RateShares is how many execution environments RateLimits is one share for: while fewer events wait in the
	// registration queue than a registration batch holds, its pacing may rise up to this many shares, the whole
	// quota, while AWS IoT does not throttle it (see WithPacing and takeIdleShares). 1 (the default) never takes
	// more than the share.
	RateShares float64
}

// ConfigFromEnv reads the configuration from the Lambda environment through getenv (os.Getenv in production).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var problems []error
	ids := splitIDs(getenv(contract.EnvCACertificateIDs))
	if len(ids) == 0 {
		problems = append(problems, errors.New(contract.EnvCACertificateIDs+" is empty"))
	}
	certs, err := parsePEMCertificates(getenv(contract.EnvCACertificatesPEM))
	if err != nil {
		problems = append(problems, fmt.Errorf("%s: %w", contract.EnvCACertificatesPEM, err))
	}
	cfg := Config{
		CAs:                  make(map[string]*x509.Certificate, len(ids)),
		PolicyName:           strings.TrimSpace(getenv(contract.EnvDevicePolicyName)),
		ProvisionedBy:        strings.TrimSpace(getenv(contract.EnvProvisionedBy)),
		MetricsNamespace:     contract.MetricsNamespace,
		ClockSkew:            azsphere.DefaultClockSkew,
		DenyListTable:        strings.TrimSpace(getenv(contract.EnvDenyListTable)),
		LedgerTable:          strings.TrimSpace(getenv(contract.EnvLedgerTable)),
		RegistrationQueueURL: strings.TrimSpace(getenv(contract.EnvRegistrationQueueURL)),
		RetirementQueueURL:   strings.TrimSpace(getenv(contract.EnvRetirementQueueURL)),
	}
	limits, limitsErr := iotapi.ParseRateLimits(strings.TrimSpace(getenv(contract.EnvIoTRateLimits)))
	if limitsErr != nil {
		problems = append(problems, fmt.Errorf("%s: %w", contract.EnvIoTRateLimits, limitsErr))
	}
	cfg.RateLimits = limits
	cfg.RateShares = 1
	if v := strings.TrimSpace(getenv(contract.EnvIoTRateShares)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			problems = append(problems, fmt.Errorf("%s %q is not a whole number between 1 and 1000", contract.EnvIoTRateShares, clip(v)))
		}
		cfg.RateShares = float64(max(n, 1))
	}
	if v := strings.TrimSpace(getenv(contract.EnvClockSkewTolerance)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Hour {
			problems = append(problems, fmt.Errorf("%s %q is not a duration between 0s and 1h (e.g. 5m)", contract.EnvClockSkewTolerance, clip(v)))
		}
		cfg.ClockSkew = d
	}
	if cfg.PolicyName == "" {
		problems = append(problems, errors.New(contract.EnvDevicePolicyName+" is empty"))
	}
	if cfg.ProvisionedBy == "" {
		problems = append(problems, errors.New(contract.EnvProvisionedBy+" is empty"))
	}
	for _, v := range [][2]string{{contract.EnvDenyListTable, cfg.DenyListTable}, {contract.EnvLedgerTable, cfg.LedgerTable},
		{contract.EnvRegistrationQueueURL, cfg.RegistrationQueueURL}, {contract.EnvRetirementQueueURL, cfg.RetirementQueueURL}} {
		if v[1] == "" {
			problems = append(problems, errors.New(v[0]+" is empty"))
		}
	}
	if err == nil && len(ids) > 0 && len(ids) != len(certs) {
		problems = append(problems, fmt.Errorf("%s has %d ids but %s has %d certificates; they must pair up in order",
			contract.EnvCACertificateIDs, len(ids), contract.EnvCACertificatesPEM, len(certs)))
	}
	if len(problems) > 0 {
		return Config{}, configError(problems)
	}
	if problems = pairCAs(cfg.CAs, ids, certs); len(problems) > 0 {
		return Config{}, configError(problems)
	}
	return cfg, nil
}

// pairCAs fills cas with the i-th certificate under the i-th id, and names every id that is malformed or listed
// twice.
func pairCAs(cas map[string]*x509.Certificate, ids []string, certs []*x509.Certificate) (problems []error) {
	for i, id := range ids {
		if !isHexID(id) {
			problems = append(problems, fmt.Errorf("%s: %q is not a 64-character hexadecimal certificate id", contract.EnvCACertificateIDs, id))
		}
		if _, dup := cas[id]; dup {
			problems = append(problems, fmt.Errorf("%s: %s is listed twice", contract.EnvCACertificateIDs, id))
		}
		cas[id] = certs[i]
	}
	return problems
}

func splitIDs(s string) []string {
	var ids []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			ids = append(ids, part)
		}
	}
	return ids
}

func parsePEMCertificates(s string) ([]*x509.Certificate, error) {
	rest := []byte(s)
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, not CERTIFICATE", len(certs)+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("text that is not a PEM certificate follows the certificates")
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

func configError(problems []error) error {
	return fmt.Errorf("%w\n(the JitrProvisioning construct sets these variables: redeploy the stack with 'make deploy')", errors.Join(problems...))
}
