// Command teardown is the Custom::RegistryTeardown Lambda. CloudFormation calls it before the tenant CA and the
// device policy are deleted; it removes the certificates and things just-in-time registration created, so
// `cdk destroy` leaves nothing behind. The work is done by internal/teardown; this file only wires it.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/teardown"
)

// concurrency keeps a few calls in flight; the retryer absorbs AWS IoT's control-plane throttling.
const concurrency = 4

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	awsCfg, err := config.LoadDefaultConfig(context.Background(), config.WithRetryer(func() aws.Retryer {
		return iotapi.NewRetryer(iotapi.DefaultRetryPolicy)
	}))
	if err != nil {
		logger.Error("teardown Lambda cannot start", "error", err.Error())
		os.Exit(1)
	}
	t := teardown.New(iot.NewFromConfig(awsCfg), logger, concurrency)
	lambda.Start(cfn.LambdaWrap(t.HandleEvent))
}
