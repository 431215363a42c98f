package presign

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// MaxNameLength bounds an object name, so the key devices/<thing>/<name> stays well inside S3's 1024 bytes.
const MaxNameLength = 200

// Event is what the topic rule hands the function: the fields of the device's request, and the thing name the
// rule took from the topic (topic(2)), which the device policy lets only that device publish on.
type Event struct {
	Thing         string `json:"topicThing"`
	Operation     string `json:"operation"`
	Name          string `json:"name"`
	ContentLength *int64 `json:"contentLength"`
	ClientToken   string `json:"clientToken"`
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

// ObjectKey returns devices/<thing>/<name> after checking the name cannot leave that prefix: a restricted
// character set, no empty, "." or ".." segment, no leading or trailing "/".
func ObjectKey(thing, name string) (string, error) {
	switch {
	case name == "":
		return "", reject("name is empty")
	case len(name) > MaxNameLength:
		return "", reject("name is longer than %d bytes", MaxNameLength)
	case !objectName.MatchString(name):
		return "", reject("name may contain only letters, digits and . _ - /")
	case strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/"):
		return "", reject("name may not start or end with /")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", reject("name may not contain an empty, . or .. segment")
		}
	}
	return contract.DeviceObjectPrefix + thing + "/" + name, nil
}

// validate checks the request and returns the object key.
func (e Event) validate(maxPut int64) (string, error) {
	if !tokenChars.MatchString(e.ClientToken) {
		return "", reject("clientToken may have at most 64 letters, digits and . _ : -")
	}
	key, err := ObjectKey(e.Thing, e.Name)
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
	return key, nil
}
