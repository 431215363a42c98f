// Package azsphere holds the rules for Azure Sphere certificates that every part of the product agrees on:
// how a tenant CA file is read (DER as the Azure Sphere CLI writes it, or PEM), what a device ID looks like, and
// what makes a device certificate acceptable for just-in-time registration.
package azsphere

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
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

// ThingName validates an Azure Sphere device ID (128 hexadecimal characters, any case) and returns its
// lower-case form, which is the thing name and the MQTT client id.
func ThingName(deviceID string) (string, error) {
	if len(deviceID) != DeviceIDLength {
		return "", fmt.Errorf("device ID %q has %d characters, want %d hexadecimal", shorten(deviceID), len(deviceID), DeviceIDLength)
	}
	for i := 0; i < len(deviceID); i++ {
		c := deviceID[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", fmt.Errorf("device ID %q has a non-hexadecimal character at %d", shorten(deviceID), i)
		}
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

// RefusalError says why a device certificate was refused. Refusals are final: retrying cannot change them.
type RefusalError struct{ Reason string }

func (e *RefusalError) Error() string { return e.Reason }

// CheckDeviceCertificate verifies that cert was signed by ca (by signature, not by issuer name), is inside its
// validity window at now, and carries an Azure Sphere device ID as its subject CN. It returns the thing name.
// Every failure is a *RefusalError.
func CheckDeviceCertificate(cert, ca *x509.Certificate, now time.Time) (string, error) {
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return "", &RefusalError{Reason: fmt.Sprintf("not signed by CA %q: %v", ca.Subject.CommonName, err)}
	}
	if now.Before(cert.NotBefore) {
		return "", &RefusalError{Reason: fmt.Sprintf("not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339))}
	}
	if now.After(cert.NotAfter) {
		return "", &RefusalError{Reason: fmt.Sprintf("expired on %s", cert.NotAfter.UTC().Format(time.RFC3339))}
	}
	name, err := ThingName(cert.Subject.CommonName)
	if err != nil {
		return "", &RefusalError{Reason: "subject CN is not an Azure Sphere device ID: " + err.Error()}
	}
	return name, nil
}

func shorten(s string) string {
	if len(s) > 20 {
		return s[:17] + "..."
	}
	return s
}
