// Command jitr is the just-in-time registration Lambda. The topic rule on
// $aws/events/certificates/registered/<caId> invokes it for each certificate AWS IoT auto-registers; the work is
// done by internal/jitr, this file only wires it: configuration from the environment, the IoT and deny-list
// (DynamoDB) clients with a retryer tuned for throttling, and the Lambda runtime loop.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h, err := newHandler(context.Background(), os.Getenv, logger)
	if err != nil {
		logger.Error("JITR Lambda cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

// newHandler reads the environment once and builds the handler: the IoT client and the deny-list's DynamoDB client
// share one configuration and its retryer. AWS_ENDPOINT_URL, when set, points the SDK at
// another endpoint (moto in the local emulator); the SDK reads it itself.
func newHandler(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*jitr.Handler, error) {
	cfg, err := jitr.ConfigFromEnv(getenv)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(func() aws.Retryer {
		return iotapi.NewRetryer(iotapi.DefaultRetryPolicy)
	}))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return jitr.NewHandler(iot.NewFromConfig(awsCfg), cfg, jitr.WithLogger(logger),
		jitr.WithDenyList(dynamodb.NewFromConfig(awsCfg))), nil
}
