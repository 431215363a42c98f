// Command jitr is the just-in-time registration Lambda. It is invoked by the topic rule on
// $aws/events/certificates/registered/<caId> for each certificate AWS IoT auto-registers.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	lambda.Start(func(ctx context.Context, event json.RawMessage) error {
		logger.Info("certificate registered event", "event", event)
		return nil
	})
}
