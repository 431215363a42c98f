// Command presign is the S3 URL Lambda. The topic rule on <root>/+/s3/url invokes it for each device request; the
// work is done by internal/presign, this file only wires it: configuration from the environment, an S3 presign
// client, the AWS IoT data-plane publisher and the Lambda runtime loop.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/presign"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h, err := newHandler(context.Background(), os.Getenv, logger)
	if err != nil {
		logger.Error("presign Lambda cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

// newHandler reads the environment once and builds the handler. AWS_ENDPOINT_URL(_S3), when set, points the SDK at
// another endpoint (the local emulator); the SDK reads it itself, and such an endpoint is addressed path-style.
func newHandler(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*presign.Handler, error) {
	cfg, err := presign.ConfigFromEnv(getenv)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	endpoint := strings.TrimSpace(getenv(contract.EnvIotDataEndpoint))
	if endpoint == "" {
		return nil, fmt.Errorf("read configuration: %s is empty", contract.EnvIotDataEndpoint)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	customS3 := getenv("AWS_ENDPOINT_URL_S3") != "" || getenv("AWS_ENDPOINT_URL") != ""
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		// A bucket name with dots would not match S3's wildcard certificate as a virtual host.
		o.UsePathStyle = customS3 || strings.Contains(cfg.Bucket, ".")
		// No checksum parameters in the URLs: the device sends a plain body and reads a plain response.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	pub := &presign.DataPlane{
		Endpoint:    "https://" + endpoint,
		Region:      awsCfg.Region,
		Credentials: awsCfg.Credentials,
		HTTP:        &http.Client{Timeout: 10 * time.Second},
		Signer:      v4.NewSigner(),
	}
	return presign.NewHandler(s3.NewPresignClient(client), pub, cfg, presign.WithLogger(logger)), nil
}
