package presign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// MaxNameLength bounds an object name, so the key devices/<thing>/<name> (or fleet/<name>) stays well inside S3's
// 1024 bytes.
const MaxNameLength = 200

// Event is what the topic rule hands the function: the fields of the device's request, and the thing name the
// rule took from the topic (topic(2)), which the device policy lets only that device publish on.
type Event struct {
	Thing         string `json:"topicThing"`
	Operation     string `json:"operation"`
	Scope         string `json:"scope"` // contract.S3URLScopeDevice (absent) or contract.S3URLScopeFleet
	Name          string `json:"name"`
	ContentLength *int64 `json:"contentLength"`
	ClientToken   string `json:"clientToken"`
	// malformed is why a field of the request has a JSON type or value no request can have (contentLength 1.5,
	// "5", 1e3 or 2^63; an operation that is a number): the handler answers it on the rejected topic, as it answers
	// any refused request, rather than failing to decode the event and leaving the device to wait out its timeout.
	malformed string
}

// UnmarshalJSON decodes the rule's output field by field, so a malformed field is recorded (and refused by the
// handler, naming the field) instead of failing the whole event. Field names are matched exactly, as the rule's
// SELECT names them. Only an event that is not a JSON object fails: the rule never sends one, since AWS IoT does
// not run a rule whose SELECT names fields of a payload that is not JSON (it counts a ParseError instead), so a
// device that publishes one gets no answer in AWS either.
func (e *Event) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("decode URL request event: %w", err)
	}
	*e = Event{}
	e.Thing = e.stringField(raw, contract.S3URLRuleThingVar)
	e.Operation = e.stringField(raw, "operation")
	e.Scope = e.stringField(raw, "scope")
	e.Name = e.stringField(raw, "name")
	e.ClientToken = e.stringField(raw, "clientToken")
	if v, ok := raw["contentLength"]; ok && !isNull(v) {
		n, err := parseByteCount(v)
		if err != nil && e.malformed == "" {
			e.malformed = err.Error()
		}
		if err == nil {
			e.ContentLength = &n
		}
	}
	return nil
}

// stringField returns raw[key] when it is a JSON string; any other JSON type is recorded as malformed.
func (e *Event) stringField(raw map[string]json.RawMessage, key string) string {
	v, ok := raw[key]
	if !ok || isNull(v) {
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		if e.malformed == "" {
			e.malformed = fmt.Sprintf("%s must be a JSON string, got %s", key, excerpt(v))
		}
		return ""
	}
	return s
}

// byteCount is a JSON integer literal: digits with an optional minus sign, no fraction, no exponent.
var byteCount = regexp.MustCompile(`^-?[0-9]+$`)

// parseByteCount reads contentLength: a JSON number written as an integer that fits in 64 bits. 1.5, 1e3, "5" and
// 2^63 are refused, not rounded or converted: the URL signs the exact length the device will send.
func parseByteCount(v json.RawMessage) (int64, error) {
	lit := string(bytes.TrimSpace(v))
	if !byteCount.MatchString(lit) {
		return 0, fmt.Errorf("contentLength must be a whole number of bytes (a JSON integer, no fraction, exponent or quotes), got %s", excerpt(v))
	}
	n, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("contentLength %s does not fit in 64 bits", excerpt(v))
	}
	return n, nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// excerpt quotes at most 32 bytes of a value for a reason the device reads.
func excerpt(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return s
}

var (
	thingName  = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`) // AWS IoT thing name
	objectName = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	tokenChars = regexp.MustCompile(`^[A-Za-z0-9._:-]{0,64}$`)
)

// RejectError is a request the function refuses; its message is the reason the device reads.
type RejectError struct{ Reason string }

func (e *RejectError) Error() string { return e.Reason }

func reject(format string, args ...any) error {
	return &RejectError{Reason: fmt.Sprintf(format, args...)}
}

// ObjectKey returns devices/<thing>/<name>, a device's own object, after checking the name (checkName).
func ObjectKey(thing, name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return contract.DeviceObjectPrefix + thing + "/" + name, nil
}

// FleetObjectKey returns fleet/<name>, an object the whole fleet reads, after the same check of the name as a
// device's own objects get.
func FleetObjectKey(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return contract.FleetObjectPrefix + name, nil
}

// checkName makes sure a name cannot leave the prefix it is put under: a restricted character set, at most
// MaxNameLength bytes, no empty, "." or ".." segment, no leading or trailing "/".
func checkName(name string) error {
	switch {
	case name == "":
		return reject("name is empty")
	case len(name) > MaxNameLength:
		return reject("name is longer than %d bytes", MaxNameLength)
	case !objectName.MatchString(name):
		return reject("name may contain only letters, digits and . _ - /")
	case strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/"):
		return reject("name may not start or end with /")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return reject("name may not contain an empty, . or .. segment")
		}
	}
	return nil
}

// validate checks the request and returns the object key: devices/<thing>/<name> for the device's own scope,
// fleet/<name> for the fleet's, which is read-only (the image's baked URL of a fleet file may have expired; the device
// asks for a fresh GET, never for a way to change what every device reads).
func (e Event) validate(maxPut int64) (string, error) {
	if e.malformed != "" {
		return "", reject("%s", e.malformed)
	}
	if !tokenChars.MatchString(e.ClientToken) {
		return "", reject("clientToken may have at most 64 letters, digits and . _ : -")
	}
	var (
		key string
		err error
	)
	switch e.Scope {
	case contract.S3URLScopeDevice:
		key, err = ObjectKey(e.Thing, e.Name)
	case contract.S3URLScopeFleet:
		key, err = FleetObjectKey(e.Name)
	default:
		return "", reject("scope %q is not %q (the fleet's read-only %s) nor absent (the device's own %s<thing>/)",
			e.Scope, contract.S3URLScopeFleet, contract.FleetObjectPrefix, contract.DeviceObjectPrefix)
	}
	if err != nil {
		return "", err
	}
	switch e.Operation {
	case contract.S3OperationPut:
		if e.ContentLength == nil {
			return "", reject("contentLength is required for %s", contract.S3OperationPut)
		}
		if n := *e.ContentLength; n < 1 || n > maxPut {
			return "", reject("contentLength %d is outside 1..%d bytes", n, maxPut)
		}
	case contract.S3OperationGet:
		if e.ContentLength != nil {
			return "", reject("contentLength is only for %s", contract.S3OperationPut)
		}
	default:
		return "", reject("operation %q is not %s or %s", e.Operation, contract.S3OperationPut, contract.S3OperationGet)
	}
	if e.Scope == contract.S3URLScopeFleet && e.Operation != contract.S3OperationGet {
		return "", reject("scope %q is read-only: only %s, no device writes %s", e.Scope, contract.S3OperationGet, contract.FleetObjectPrefix)
	}
	return key, nil
}
