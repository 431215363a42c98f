package operate

import (
	"context"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/time/rate"
)

// IoTQuotas are the default AWS IoT control-plane rates (requests per second per account and region) of the calls
// fleetctl makes, from the AWS IoT Core quotas; the design notes list the ones JITR shares. An operation not listed
// gets DefaultTPS, the lowest of them. The operator's calls share these quotas with the JITR function, so fleetctl
// stays well under them by default (Limits scales them).
var IoTQuotas = map[string]float64{
	"DescribeCertificate":  10,
	"UpdateCertificate":    10,
	"ListThingPrincipals":  10,
	"DetachPolicy":         15,
	"DetachThingPrincipal": 100,
}

// DefaultTPS is the rate of an IoT operation without an entry in IoTQuotas.
const DefaultTPS = 10

// RateLimit returns an SDK API option that makes every call wait for its operation's token: share × the quota of
// IoTQuotas (or DefaultTPS), burst 1. One limiter per operation for the life of the client, so paginators and
// loops alike stay within the quota.
func RateLimit(share float64) func(*middleware.Stack) error {
	var mu sync.Mutex
	limiters := map[string]*rate.Limiter{}
	limiter := func(op string) *rate.Limiter {
		mu.Lock()
		defer mu.Unlock()
		l, ok := limiters[op]
		if !ok {
			tps, known := IoTQuotas[op]
			if !known {
				tps = DefaultTPS
			}
			l = rate.NewLimiter(rate.Limit(tps*share), 1)
			limiters[op] = l
		}
		return l
	}
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("fleetctlRateLimit",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if err := limiter(awsmiddleware.GetOperationName(ctx)).Wait(ctx); err != nil {
					return middleware.InitializeOutput{}, middleware.Metadata{}, err
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	}
}
