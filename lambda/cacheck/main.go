// Command cacheck is the scheduled tenant-CA check: an EventBridge schedule invokes it twice a day; it describes the
// stack's tenant CAs and writes, as embedded-metric-format log lines, the days left of each and the days left
// before no registered CA can provision a device, which an alarm watches. internal/caexpiry does the judging; this
// file only wires it.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/sphere-jitr/sphere-jitr/internal/caexpiry"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	c, err := newCheck(context.Background(), os.Getenv)
	if err != nil {
		logger.Error("CA check cannot start", "error", err.Error())
		os.Exit(1)
	}
	c.log = logger
	lambda.Start(c.run)
}

// check is the configured CA check.
type check struct {
	api   caexpiry.DescribeAPI
	ids   []string
	stack string
	out   io.Writer
	log   *slog.Logger
	now   func() time.Time
}

func newCheck(ctx context.Context, getenv func(string) string) (*check, error) {
	var ids []string
	for _, id := range strings.Split(getenv(contract.EnvCACertificateIDs), ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	stack := strings.TrimSpace(getenv(contract.EnvProvisionedBy))
	if len(ids) == 0 || stack == "" {
		return nil, fmt.Errorf("%s and %s must be set (the CaExpiryCheck construct sets them: redeploy with 'make deploy')",
			contract.EnvCACertificateIDs, contract.EnvProvisionedBy)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(func() aws.Retryer { return iotapi.NewRetryer(iotapi.DefaultRetryPolicy) }))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return &check{api: iot.NewFromConfig(awsCfg), ids: ids, stack: stack, out: os.Stdout, now: time.Now}, nil
}

// run describes the CAs and writes the metrics; an error makes the invocation fail (the Errors alarm sees it).
func (c *check) run(ctx context.Context) error {
	cas, err := caexpiry.Describe(ctx, c.api, c.ids)
	if err != nil {
		return err
	}
	r := caexpiry.Assess(cas, c.now())
	for _, line := range r.EMF(contract.MetricsNamespace, c.stack) {
		if _, err := c.out.Write(line); err != nil {
			return fmt.Errorf("write metrics: %w", err)
		}
	}
	for _, a := range r.CAs {
		c.log.Info("tenant CA", "caCertificateId", a.ID, "status", a.Status, "daysLeft", a.DaysLeft, "successor", a.Successor)
	}
	c.log.Info("tenant CA check done", "daysLeftWithoutSuccessor", r.DaysLeftWithoutSuccessor)
	return nil
}
