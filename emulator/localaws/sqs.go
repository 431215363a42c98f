package localaws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// QueueClient is the little of Amazon SQS the emulator needs to play Lambda's on-failure destination: create the
// template's dead-letter queue, send it the invocation records of the events that failed, read them back. It
// speaks SQS's JSON protocol (X-Amz-Target AmazonSQS.<Operation>) to moto, signed as the emulator itself.
type QueueClient struct {
	Endpoint    string
	Region      string
	Credentials aws.CredentialsProvider
	HTTP        *http.Client
}

func (c *QueueClient) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("sqs %s: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Endpoint+"/", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sqs %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "AmazonSQS."+op)
	creds, err := c.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("sqs %s: credentials: %w", op, err)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sqs", c.Region, time.Now()); err != nil {
		return fmt.Errorf("sqs %s: sign: %w", op, err)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("sqs %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("sqs %s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sqs %s: HTTP %d: %s", op, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("sqs %s: decode: %w", op, err)
		}
	}
	return nil
}

// CreateQueue creates a standard queue and returns its URL.
func (c *QueueClient) CreateQueue(ctx context.Context, name string) (string, error) {
	var out struct{ QueueUrl string }
	err := c.call(ctx, "CreateQueue", map[string]any{"QueueName": name}, &out)
	return out.QueueUrl, err
}

// SendMessage sends one message.
func (c *QueueClient) SendMessage(ctx context.Context, queueURL, body string) error {
	return c.call(ctx, "SendMessage", map[string]any{"QueueUrl": queueURL, "MessageBody": body}, nil)
}

// ReceiveMessages returns up to ten visible messages (their bodies) without waiting.
func (c *QueueClient) ReceiveMessages(ctx context.Context, queueURL string) ([]string, error) {
	var out struct{ Messages []struct{ Body string } }
	if err := c.call(ctx, "ReceiveMessage", map[string]any{"QueueUrl": queueURL, "MaxNumberOfMessages": 10}, &out); err != nil {
		return nil, err
	}
	bodies := make([]string, 0, len(out.Messages))
	for _, m := range out.Messages {
		bodies = append(bodies, m.Body)
	}
	return bodies, nil
}
