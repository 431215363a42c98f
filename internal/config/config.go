// Package config turns the CDK context of the app into a validated, typed Config. Every refusal names the context
// key, the problem, and the command that fixes it, because synth is where a user first meets a bad input.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
)

// Context keys the app reads.
const (
	KeyTenantCACerts     = "tenantCaCerts"
	KeyVerificationCerts = "verificationCerts"
	KeyCertificateMode   = "certificateMode"
	KeyTenantID          = "tenantId"
	KeyRetainDevices     = "retainDevices"
)

// Certificate modes of an AWS IoT CA registration.
const (
	ModeDefault = "DEFAULT"
	ModeSNIOnly = "SNI_ONLY"
)

// MaxTenantCAs is how many tenant CAs may be registered at once: Azure Sphere issues the next tenant CA about 90
// days before the current one expires, so for a while both sign device certificates.
const MaxTenantCAs = 2

// TenantCA is one Azure Sphere tenant CA and, in DEFAULT mode, its proof-of-possession certificate.
type TenantCA struct {
	Path         string
	Cert         *x509.Certificate
	Verification *x509.Certificate // nil in SNI_ONLY mode
}

// Config is the validated input of the stack.
type Config struct {
	TenantCAs       []TenantCA
	CertificateMode string
	TenantID        string
	RetainDevices   bool
}

// Error is a refused context value.
type Error struct {
	Key     string
	Problem string
	Fix     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("context %q: %s. Fix: %s", e.Key, e.Problem, e.Fix)
}

const fixTenantCA = "run 'make tenant-ca' to download the current tenant CA and its proof of possession, " +
	"or pass -c tenantCaCerts=<tenant-ca.cer>[,<next-tenant-ca.cer>]"

// Load reads and validates the context through get (a node's TryGetContext), at time now. All problems are
// reported together, so one synth shows everything to fix.
func Load(get func(key string) any, now time.Time) (*Config, error) {
	cfg := &Config{CertificateMode: ModeDefault}
	var errs []error

	if mode, ok := str(get(KeyCertificateMode)); ok && mode != "" {
		switch strings.ToUpper(mode) {
		case ModeDefault, ModeSNIOnly:
			cfg.CertificateMode = strings.ToUpper(mode)
		default:
			errs = append(errs, &Error{KeyCertificateMode, fmt.Sprintf("%q is not a certificate mode", mode),
				"pass -c certificateMode=DEFAULT (with verificationCerts) or -c certificateMode=SNI_ONLY"})
		}
	}

	caPaths := list(get(KeyTenantCACerts))
	switch {
	case len(caPaths) == 0:
		errs = append(errs, &Error{KeyTenantCACerts, "is not set", fixTenantCA})
	case len(caPaths) > MaxTenantCAs:
		errs = append(errs, &Error{KeyTenantCACerts, fmt.Sprintf("names %d certificates, at most %d (the current tenant CA and the next one)", len(caPaths), MaxTenantCAs),
			"pass only the current and next tenant CA: -c tenantCaCerts=<current.cer>,<next.cer>"})
	}
	seen := map[string]string{}
	for _, p := range caPaths {
		cert, err := readCert(KeyTenantCACerts, p, fixTenantCA)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := azsphere.CheckCA(cert, now); err != nil {
			errs = append(errs, &Error{KeyTenantCACerts, fmt.Sprintf("%s: %v", p, err),
				"download the tenant CA that is valid now: 'make tenant-ca' (or 'az sphere ca-certificate list' to see them)"})
			continue
		}
		fp := string(cert.Raw)
		if first, dup := seen[fp]; dup {
			errs = append(errs, &Error{KeyTenantCACerts, fmt.Sprintf("%s is the same certificate as %s", p, first), "name each tenant CA once"})
			continue
		}
		seen[fp] = p
		cfg.TenantCAs = append(cfg.TenantCAs, TenantCA{Path: p, Cert: cert})
	}

	verPaths := list(get(KeyVerificationCerts))
	fixVerification := "run 'make tenant-ca' (it downloads the proof with the account's registration code), " +
		"or pass -c certificateMode=SNI_ONLY to register without proof of possession"
	switch {
	case cfg.CertificateMode == ModeSNIOnly && len(verPaths) > 0:
		errs = append(errs, &Error{KeyVerificationCerts, "is set but certificateMode is SNI_ONLY, which registers without verification certificates",
			"drop -c verificationCerts, or use -c certificateMode=DEFAULT"})
	case cfg.CertificateMode == ModeDefault && len(verPaths) == 0:
		errs = append(errs, &Error{KeyVerificationCerts, "is required in DEFAULT certificate mode", fixVerification})
	case cfg.CertificateMode == ModeDefault && len(verPaths) != len(caPaths):
		errs = append(errs, &Error{KeyVerificationCerts, fmt.Sprintf("names %d certificates for %d tenant CAs; give one per CA, in the same order", len(verPaths), len(caPaths)), fixVerification})
	case cfg.CertificateMode == ModeDefault && len(cfg.TenantCAs) == len(caPaths):
		for i, p := range verPaths {
			cert, err := readCert(KeyVerificationCerts, p, fixVerification)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ca := cfg.TenantCAs[i]
			if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
				errs = append(errs, &Error{KeyVerificationCerts, fmt.Sprintf("%s is not signed by the tenant CA %s (%v)", p, ca.Path, err),
					"download the proof for that CA: 'make tenant-ca', or list the verification certificates in the order of tenantCaCerts"})
				continue
			}
			cfg.TenantCAs[i].Verification = cert
		}
	}

	tenant, _ := str(get(KeyTenantID))
	switch {
	case tenant == "":
		errs = append(errs, &Error{KeyTenantID, "is not set", "find it with 'az sphere catalog show --resource-group <group> --catalog <catalog>' (legacy: 'azsphere tenant show-selected') and pass -c tenantId=<GUID>, or run 'make tenant-ca', which prints it"})
	case !azsphere.IsTenantID(tenant):
		errs = append(errs, &Error{KeyTenantID, fmt.Sprintf("%q is not a GUID", tenant), "copy the tenant id from 'az sphere catalog show' (legacy: 'azsphere tenant show-selected'), in the form 01234567-89ab-cdef-0123-456789abcdef"})
	default:
		cfg.TenantID = strings.ToLower(tenant)
	}

	switch v := get(KeyRetainDevices).(type) {
	case nil:
	case bool:
		cfg.RetainDevices = v
	case string:
		b, err := strconv.ParseBool(v)
		if err != nil || (v != "true" && v != "false") {
			errs = append(errs, &Error{KeyRetainDevices, fmt.Sprintf("%q is not true or false", v), "pass -c retainDevices=true or -c retainDevices=false"})
		}
		cfg.RetainDevices = b
	default:
		errs = append(errs, &Error{KeyRetainDevices, fmt.Sprintf("%v is not true or false", v), "pass -c retainDevices=true or -c retainDevices=false"})
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

func readCert(key, path, fix string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{key, fmt.Sprintf("cannot read %s (%v)", path, errors.Unwrap(err)), fix}
	}
	cert, err := azsphere.ParseCertificate(data)
	if err != nil {
		return nil, &Error{key, fmt.Sprintf("%s is not a certificate in DER or PEM form (%v)", path, err), fix}
	}
	return cert, nil
}

// str returns a context value as a trimmed string; CDK passes -c values as strings.
func str(v any) (string, bool) {
	s, ok := v.(string)
	return strings.TrimSpace(s), ok
}

// list splits a comma-separated context value; cdk.json may also hold a JSON array.
func list(v any) []string {
	var parts []string
	switch t := v.(type) {
	case string:
		parts = strings.Split(t, ",")
	case []any:
		for _, e := range t {
			if s, ok := e.(string); ok {
				parts = append(parts, s)
			}
		}
	}
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
