package jitr

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// Event is the certificate-registered event as the topic rule passes it to the Lambda; its wire shape is
// contract.RegisteredEvent, which the emulator's broker publishes too.
type Event contract.RegisteredEvent

// EpochMillis is a time in milliseconds since the Unix epoch (see contract.EpochMillis).
type EpochMillis = contract.EpochMillis

// Validate reports what makes the event unusable, or nil. Only certificateRegistrationTimestamp may be absent.
func (e Event) Validate() error {
	var problems []error
	if !isHexID(e.CertificateID) {
		problems = append(problems, fmt.Errorf("certificateId %s is not a 64-character hexadecimal certificate id", clip(e.CertificateID)))
	}
	if !isHexID(e.CACertificateID) {
		problems = append(problems, fmt.Errorf("caCertificateId %s is not a 64-character hexadecimal certificate id", clip(e.CACertificateID)))
	}
	if e.Timestamp <= 0 {
		problems = append(problems, errors.New("timestamp is missing"))
	}
	if e.CertificateStatus == "" {
		problems = append(problems, errors.New("certificateStatus is missing"))
	}
	if !isAccountID(e.AWSAccountID) {
		problems = append(problems, fmt.Errorf("awsAccountId %s is not a 12-digit account id", clip(e.AWSAccountID)))
	}
	return errors.Join(problems...)
}

// maxLoggedField bounds what of a field that failed validation reaches a log line or an error message.
const maxLoggedField = 64

// clip renders a field that may come from anywhere for a log line or an error message: quoted with every
// non-ASCII or control byte escaped, and cut to maxLoggedField bytes with the original length said, so a 1 MB
// certificate id becomes a short line.
func clip(s string) string {
	if len(s) <= maxLoggedField {
		return strconv.QuoteToASCII(s)
	}
	return strconv.QuoteToASCII(s[:maxLoggedField]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// loggableID is an id for a log key: the id itself when it has the certificate-id format, else its clip.
func loggableID(s string) string {
	if isHexID(s) {
		return s
	}
	return "invalid " + clip(s)
}

func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
