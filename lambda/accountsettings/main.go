// Command accountsettings is the Custom::IoTAccountSettings Lambda: it turns on AWS IoT fleet indexing (registry
// with the product's attributes, connectivity) and, when asked, AWS IoT logging, and puts both back as they were
// when the stack is deleted. The work is done by internal/accountsettings; this file only wires it.
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

	"github.com/sphere-jitr/sphere-jitr/internal/accountsettings"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	awsCfg, err := config.LoadDefaultConfig(context.Background(), config.WithRetryer(func() aws.Retryer {
		return iotapi.NewRetryer(iotapi.DefaultRetryPolicy)
	}))
	if err != nil {
		logger.Error("account-settings Lambda cannot start", "error", err.Error())
		os.Exit(1)
	}
	r := accountsettings.New(iot.NewFromConfig(awsCfg), logger)
	lambda.Start(cfn.LambdaWrap(r.HandleEvent))
}
