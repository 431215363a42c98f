// Command jitr is the just-in-time registration Lambda. The topic rule on $aws/events/certificates/registered/<caId>
// sends each registered event to the registration queue; an event source mapping of bounded concurrency hands the
// queue to this function in batches. A second mapping hands it the retirement queue, and an EventBridge schedule
// runs its reconciler. The work is done by internal/jitr; this file only wires it: configuration from the
// environment, the IoT client paced to this execution environment's share of the quotas (the whole quota while
// the other environments are idle, halving on throttling), the DynamoDB and SQS clients, and the dispatch of the
// three kinds of invocation.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	a, err := newApp(context.Background(), os.Getenv, logger)
	if err != nil {
		logger.Error("JITR Lambda cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(a.invoke)
}

// app is the function: the handler and what the dispatch needs.
type app struct {
	h               *jitr.Handler
	retirementQueue string // the retirement queue's name, as the last part of its ARN
}

// newApp reads the environment once and builds the handler: the IoT client paced to the rate limits of the
// environment (contract.EnvIoTRateLimits, up to contract.EnvIoTRateShares of them) with the standard retries, and
// the ledger, deny-list and queue clients (the SDK's adaptive retries). AWS_ENDPOINT_URL, when set, points the
// SDK at another endpoint (moto in the local emulator).
func newApp(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*app, error) {
	cfg, err := jitr.ConfigFromEnv(getenv)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(func() aws.Retryer {
		return iotapi.NewAdaptiveRetryer(iotapi.DefaultRetryPolicy)
	}))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	// The IoT client's pacing is its adaptive rate limiter, per operation: the SDK's adaptive mode on top of it
	// would slow every operation for one operation's ThrottlingException.
	pacing := iotapi.NewPacing(cfg.RateLimits, iotapi.MaxShares(cfg.RateShares))
	client := iot.NewFromConfig(awsCfg, func(o *iot.Options) {
		o.Retryer = iotapi.NewRetryer(iotapi.DefaultRetryPolicy)
		o.APIOptions = append(o.APIOptions, pacing.Middleware())
	})
	db := dynamodb.NewFromConfig(awsCfg)
	h := jitr.NewHandler(client, cfg, jitr.WithLogger(logger), jitr.WithDenyList(db), jitr.WithLedger(db),
		jitr.WithQueues(sqs.NewFromConfig(awsCfg)), jitr.WithPacing(pacing))
	return &app{h: h, retirementQueue: cfg.RetirementQueueURL[strings.LastIndex(cfg.RetirementQueueURL, "/")+1:]}, nil
}

// invocation is what the dispatch reads of any payload: SQS records, or an EventBridge event's detail-type.
type invocation struct {
	Records []struct {
		EventSource    string `json:"eventSource"`
		EventSourceARN string `json:"eventSourceARN"`
	} `json:"Records"`
	DetailType string `json:"detail-type"`
}

// invoke dispatches one invocation: a batch of the registration or the retirement queue, the schedule's event
// (the reconciler), or a registered event invoked directly.
func (a *app) invoke(ctx context.Context, payload json.RawMessage) (any, error) {
	var inv invocation
	if err := json.Unmarshal(payload, &inv); err != nil {
		return nil, fmt.Errorf("decode invocation: %w", err)
	}
	switch {
	case len(inv.Records) > 0 && inv.Records[0].EventSource == "aws:sqs":
		var batch events.SQSEvent
		if err := json.Unmarshal(payload, &batch); err != nil {
			return nil, fmt.Errorf("decode SQS batch: %w", err)
		}
		arn := inv.Records[0].EventSourceARN
		if arn[strings.LastIndex(arn, ":")+1:] == a.retirementQueue {
			return a.h.HandleRetirements(ctx, batch)
		}
		return a.h.HandleRegistrations(ctx, batch)
	case inv.DetailType == contract.ScheduledEventDetailType:
		return nil, a.h.Reconcile(ctx)
	default:
		var e jitr.Event
		if err := json.Unmarshal(payload, &e); err != nil {
			return nil, fmt.Errorf("decode registered event: %w", err)
		}
		return nil, a.h.Handle(ctx, e)
	}
}
