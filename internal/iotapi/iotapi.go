// Package iotapi holds what the project's AWS IoT control-plane clients (the Lambdas, fleetctl) share: how they
// retry throttled and failed calls, how they pace themselves to their share of the quotas (ratelimit.go), and how
// they recognise AWS IoT's error codes.
package iotapi

import (
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
)

// RetryPolicy bounds how the IoT client retries throttled and failed (5xx) calls. The Lambda deadline bounds it
// too: the handler stops retrying shortly before the deadline and returns the error, so the asynchronous
// invocation retries and then the dead-letter queue take over.
type RetryPolicy struct {
	MaxAttempts int           // attempts per API call, first one included
	MaxBackoff  time.Duration // cap of the jittered exponential delay between attempts
}

// DefaultRetryPolicy rides out a fleet rebooting together against AWS IoT's 10–15 TPS control-plane limits:
// throttled calls wait 1 s, 2 s, 4 s, 8 s (jittered, capped at 10 s) and so on, up to ten attempts.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 10, MaxBackoff: 10 * time.Second}

// NewRetryer returns the SDK retryer the Lambda's IoT client uses: the standard retryer (throttling errors,
// 5xx and connection errors are retryable; jittered exponential backoff) without the client-side retry quota,
// since one Lambda instance handles one event at a time and should keep retrying until its deadline.
func NewRetryer(p RetryPolicy) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = p.MaxAttempts
		o.MaxBackoff = p.MaxBackoff
		o.RateLimiter = ratelimit.None
	})
}

// NewAdaptiveRetryer is NewRetryer in the SDK's adaptive mode: on top of the standard retries, a client-side
// token bucket that slows the client down as soon as AWS IoT answers ThrottlingException (the account's quota is
// shared with every other client of it) and speeds it up again as calls succeed.
func NewAdaptiveRetryer(p RetryPolicy) aws.Retryer {
	return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
		o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) {
			so.MaxAttempts = p.MaxAttempts
			so.MaxBackoff = p.MaxBackoff
			so.RateLimiter = ratelimit.None
		})
	})
}

// IsNotFound reports a ResourceNotFoundException, modeled or not: several IoT operations (DetachPolicy among
// them) do not model it, so the SDK returns it as a generic API error that still carries the code.
func IsNotFound(err error) bool { return HasErrorCode(err, "ResourceNotFoundException") }

// HasErrorCode reports whether err is an AWS API error with the given code.
func HasErrorCode(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}
