// Command teardown is the Custom::RegistryTeardown Lambda. CloudFormation calls it before the tenant CA and the
// device policy are deleted; it removes the certificates and things just-in-time registration created, so
// `cdk destroy` leaves nothing behind. Before it deletes anything it estimates the work at the rates it is paced
// to; work that fits CloudFormation's hour goes on across invocations of this function (each continues the last
// asynchronously), work that does not is refused with the fleetctl command that does it. The work is done by
// internal/teardown; this file only wires it.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/teardown"
)

// concurrency keeps enough calls in flight for every operation's pacer to stay busy.
const concurrency = 16

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	fail := func(msg string, err error) {
		logger.Error(msg, "error", err.Error())
		os.Exit(1)
	}
	awsCfg, err := config.LoadDefaultConfig(context.Background(), config.WithRetryer(func() aws.Retryer {
		return iotapi.NewRetryer(iotapi.DefaultRetryPolicy)
	}))
	if err != nil {
		fail("teardown Lambda cannot start", err)
	}
	// The rates: AWS IoT's default quotas, or the account's as IOT_RATE_LIMITS gives them (a JSON object).
	rates := teardown.DefaultRates()
	if text := os.Getenv(contract.EnvIoTRateLimits); text != "" {
		given, err := iotapi.ParseRateLimits(text)
		if err != nil {
			fail("teardown Lambda cannot start", err)
		}
		for op, r := range given {
			rates[op] = r
		}
	}
	iotc := iot.NewFromConfig(awsCfg, func(o *iot.Options) {
		o.APIOptions = append(o.APIOptions, iotapi.WithRateLimits(rates))
	})
	t := teardown.New(iotc, logger, concurrency, teardown.WithRates(rates), teardown.WithIndex(iotc),
		teardown.WithContinuer(teardown.LambdaContinuer{API: awslambda.NewFromConfig(awsCfg), Function: os.Getenv("AWS_LAMBDA_FUNCTION_NAME")}))
	lambda.Start(t.Serve)
}
