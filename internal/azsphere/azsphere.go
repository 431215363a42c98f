// Package azsphere holds the rules for Azure Sphere certificates that every part of the product agrees on:
// how a tenant CA file is read (DER as the Azure Sphere CLI writes it, or PEM), what a device ID looks like, and
// what makes a device certificate acceptable for just-in-time registration.
package azsphere

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// DeviceIDLength is the number of hexadecimal characters in an Azure Sphere device ID.
const DeviceIDLength = 128

// tenantIDPattern is the form of an Azure Sphere tenant (catalog) id: a GUID.
var tenantIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsTenantID reports whether s has the form of an Azure Sphere tenant id (a GUID, any case).
func IsTenantID(s string) bool { return tenantIDPattern.MatchString(s) }

// ParseCertificate reads one X.509 certificate in DER or PEM form, detected from the content.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("file is empty")
	}
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		block, _ := pem.Decode(trimmed)
		if block == nil {
			return nil, errors.New("PEM data could not be decoded")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block is %q, not CERTIFICATE", block.Type)
		}
		trimmed = block.Bytes
	} else {
		// DER is binary: use the raw bytes, not the whitespace-trimmed ones.
		trimmed = data
	}
	cert, err := x509.ParseCertificate(trimmed)
	if err != nil {
		return nil, fmt.Errorf("not an X.509 certificate: %w", err)
	}
	return cert, nil
}

// EncodePEM returns the certificate as a PEM block, the form AWS IoT APIs take.
func EncodePEM(cert *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

// ThingName validates an Azure Sphere device ID (128 hexadecimal characters, all upper case as Azure Sphere
// writes it in device certificates and the CLI prints it, or all lower case as the thing name is) and returns its
// lower-case form, which is the thing name and the MQTT client id. Mixed case is refused: no Azure Sphere tool
// writes it, and one spelling per device keeps "same CN" and "same thing" the same question.
func ThingName(deviceID string) (string, error) {
	if len(deviceID) != DeviceIDLength {
		return "", fmt.Errorf("device ID %q has %d characters, want %d hexadecimal", shorten(deviceID), len(deviceID), DeviceIDLength)
	}
	var upper, lower bool
	for i := 0; i < len(deviceID); i++ {
		switch c := deviceID[i]; {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'f':
			lower = true
		case c >= 'A' && c <= 'F':
			upper = true
		default:
			return "", fmt.Errorf("device ID %q has a non-hexadecimal character at %d", shorten(deviceID), i)
		}
	}
	if upper && lower {
		return "", fmt.Errorf("device ID %q mixes upper- and lower-case hexadecimal digits", shorten(deviceID))
	}
	return strings.ToLower(deviceID), nil
}

// CheckCA reports why cert cannot serve as a tenant CA at time now, or nil.
func CheckCA(cert *x509.Certificate, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("certificate is not a CA (basicConstraints CA:TRUE missing)")
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate expired on %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate is not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// RefusalError says why a device certificate was refused. Refusals are final: nothing that happens later can
// make the certificate acceptable (its signature, subject, extensions, key and expiry never change).
type RefusalError struct{ Reason string }

func (e *RefusalError) Error() string { return e.Reason }

// NotYetValidError says that a device certificate is acceptable in every respect but its NotBefore, which is
// further ahead of the checking clock than the tolerated skew. It is not a refusal: the same certificate becomes
// valid with time (or once the clocks agree), so it must be left for a later check.
type NotYetValidError struct{ NotBefore time.Time }

func (e *NotYetValidError) Error() string {
	return "not valid before " + e.NotBefore.UTC().Format(time.RFC3339)
}

// DefaultClockSkew is how far a device certificate's NotBefore may be ahead of the checking clock and still be
// accepted: the Azure Sphere Security Service's clock and AWS Lambda's are independent, and a certificate
// issued a few seconds "in the future" is genuine.
const DefaultClockSkew = 5 * time.Minute

// Object identifiers the identity rules read from the raw certificate.
var (
	oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidKeyUsage   = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUse  = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// DeviceIdentity applies the identity rules of an Azure Sphere device certificate, each for a reason, and
// returns the thing name (the lower-case device ID). Every failure is a *RefusalError.
//
//   - exactly one CN attribute in the whole subject: Go's Subject.CommonName keeps only the last of several, so a
//     certificate naming device X first and Y last would otherwise become thing Y;
//   - the CN is an Azure Sphere device ID (ThingName: 128 hexadecimal characters, one case);
//   - not a CA (basicConstraints absent or CA:FALSE): a device certificate must not be able to sign others;
//   - keyUsage, if present, allows digitalSignature: a TLS client signs the handshake with its key;
//   - extendedKeyUsage, if present, allows clientAuth (or anyExtendedKeyUsage, which allows every purpose);
//   - an ECDSA key on P-256 (what Azure Sphere issues), P-384 or P-521. RSA is refused even at 2048 bits and
//     more: Azure Sphere never issues it, RSA-2048 is weaker than P-256 (112- against 128-bit security), and a
//     key type the issuer never produces is a sign of a certificate that did not come from a device.
func DeviceIdentity(cert *x509.Certificate) (string, error) {
	refuse := func(format string, args ...any) (string, error) {
		return "", &RefusalError{Reason: fmt.Sprintf(format, args...)}
	}
	var cns []string
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			s, _ := atv.Value.(string)
			cns = append(cns, s)
		}
	}
	if len(cns) != 1 {
		return refuse("subject has %d CN attributes, want exactly one", len(cns))
	}
	thing, err := ThingName(cns[0])
	if err != nil {
		return refuse("subject CN is not an Azure Sphere device ID: %v", err)
	}
	if cert.BasicConstraintsValid && cert.IsCA {
		return refuse("certificate is a CA (basicConstraints CA:TRUE), not a device certificate")
	}
	if hasExtension(cert, oidKeyUsage) && cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return refuse("keyUsage does not allow digitalSignature, which a TLS client key needs")
	}
	if hasExtension(cert, oidExtKeyUse) && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) &&
		!slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return refuse("extendedKeyUsage does not allow clientAuth")
	}
	switch key := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return refuse("ECDSA key on curve %s, want P-256 or stronger", key.Curve.Params().Name)
		}
	default:
		return refuse("public key is %s, want ECDSA P-256 or stronger as Azure Sphere issues", cert.PublicKeyAlgorithm)
	}
	return thing, nil
}

func hasExtension(cert *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	return slices.ContainsFunc(cert.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oid) })
}

// SignedBy reports why cert's signature does not verify with ca's key, or nil. The issuer name is not compared:
// a CA with the same name and another key must not pass.
func SignedBy(cert, ca *x509.Certificate) error {
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("not signed by CA %q: %w", shorten(ca.Subject.CommonName), err)
	}
	return nil
}

// CheckDeviceCertificate verifies that cert was signed by ca, meets the identity rules (DeviceIdentity) and is
// inside its validity window at now, NotBefore tolerating skew. It returns the thing name. A failure that can
// never be undone is a *RefusalError; a NotBefore too far ahead is a *NotYetValidError.
func CheckDeviceCertificate(cert, ca *x509.Certificate, now time.Time, skew time.Duration) (string, error) {
	if err := SignedBy(cert, ca); err != nil {
		return "", &RefusalError{Reason: err.Error()}
	}
	name, err := DeviceIdentity(cert)
	if err != nil {
		return "", err
	}
	if now.After(cert.NotAfter) {
		return "", &RefusalError{Reason: fmt.Sprintf("expired on %s", cert.NotAfter.UTC().Format(time.RFC3339))}
	}
	if now.Add(skew).Before(cert.NotBefore) {
		return "", &NotYetValidError{NotBefore: cert.NotBefore}
	}
	return name, nil
}

func shorten(s string) string {
	if len(s) > 20 {
		return s[:17] + "..."
	}
	return s
}
