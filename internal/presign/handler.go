// Package presign hands each device short-lived presigned S3 URLs for objects under its own prefix,
// devices/<thing>/, and GET URLs for the fleet's shared read-only objects under fleet/ (scope "fleet": what a device
// asks for when the fleet file's URL baked into its image has expired), over the MQTT connection it already has: the
// topic rule on <root>/+/s3/url invokes the handler with the request and the thing name taken from the topic (which
// the device policy lets only that device publish on); the handler checks the request, signs a PUT (with its exact
// Content-Length, so S3 refuses any other size) or a GET, and publishes the answer on the device's accepted or
// rejected topic through the AWS IoT data plane.
// The Lambda in lambda/presign only wires it up.
package presign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/emf"
)

// S3Presigner is the part of the S3 presign client the handler uses, with the SDK's exact signatures.
type S3Presigner interface {
	PresignPutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

var _ S3Presigner = (*s3.PresignClient)(nil)

// Publisher publishes one MQTT message through the AWS IoT data plane.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Metric names the handler emits (CloudWatch embedded metric format, one record per request).
const (
	MetricIssued   = "UrlIssued"  // a URL was published on the accepted topic
	MetricRejected = "UrlRefused" // the request was answered on the rejected topic
	MetricDropped  = "Dropped"    // no thing name to answer to: nothing published
)

// Handler answers URL requests. It is safe for concurrent use.
type Handler struct {
	s3      S3Presigner
	pub     Publisher
	cfg     Config
	log     *slog.Logger
	metrics io.Writer
	now     func() time.Time
}

// Option customises a Handler.
type Option func(*Handler)

// WithLogger sets the structured logger (default: JSON to stdout).
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// WithMetricsOutput sets where the embedded-metric-format records go (default: stdout).
func WithMetricsOutput(w io.Writer) Option { return func(h *Handler) { h.metrics = w } }

// WithClock sets the clock the expiry in the answer is computed from.
func WithClock(now func() time.Time) Option { return func(h *Handler) { h.now = now } }

// NewHandler returns a handler that signs through s3c and answers through pub.
func NewHandler(s3c S3Presigner, pub Publisher, cfg Config, opts ...Option) *Handler {
	h := &Handler{s3: s3c, pub: pub, cfg: cfg, log: slog.New(slog.NewJSONHandler(os.Stdout, nil)), metrics: os.Stdout, now: time.Now}
	if h.cfg.MetricsNamespace == "" {
		h.cfg.MetricsNamespace = contract.MetricsNamespace
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Handle answers one request. A refused request is answered on the rejected topic and returns nil; an error is
// returned only when no answer could be published (signing or the data plane failed), so the invocation ends in
// the dead-letter queue and the device, which got no answer, asks again after its timeout.
func (h *Handler) Handle(ctx context.Context, e Event) error {
	log := h.log.With("thingName", e.Thing, "operation", e.Operation, "scope", e.Scope, "clientToken", e.ClientToken)
	if !thingName.MatchString(e.Thing) {
		log.Warn("request dropped", "step", "validate", "reason", "no valid thing name from the topic")
		h.metric(MetricDropped, e.Thing)
		return nil
	}
	reply := contract.S3URLReply{ClientToken: e.ClientToken}
	outcome := contract.ReplyAccepted
	key, err := e.validate(h.cfg.MaxPutBytes)
	if err == nil {
		reply, err = h.sign(ctx, e, key)
	}
	var rej *RejectError
	switch {
	case errors.As(err, &rej):
		outcome = contract.ReplyRejected
		reply = contract.S3URLReply{ClientToken: e.ClientToken, Reason: rej.Reason}
	case err != nil:
		return fmt.Errorf("presign %s for %s: %w", e.Operation, e.Thing, err)
	}
	payload, _ := json.Marshal(reply) // strings and integers only
	topic := contract.S3URLReplyTopic(h.cfg.TopicRoot, e.Thing, outcome)
	if err := h.pub.Publish(ctx, topic, payload); err != nil {
		return fmt.Errorf("publish answer to %s: %w", topic, err)
	}
	if outcome == contract.ReplyRejected {
		log.Info("request refused", "step", "validate", "reason", reply.Reason)
		h.metric(MetricRejected, e.Thing)
		return nil
	}
	log.Info("URL issued", "step", "answer", "key", reply.Key, "expiresAt", reply.ExpiresAt)
	h.metric(MetricIssued, e.Thing)
	return nil
}

func (h *Handler) sign(ctx context.Context, e Event, key string) (contract.S3URLReply, error) {
	expires := h.now().Add(h.cfg.Expiry)
	opt := s3.WithPresignExpires(h.cfg.Expiry)
	var (
		req *v4.PresignedHTTPRequest
		err error
	)
	reply := contract.S3URLReply{ClientToken: e.ClientToken, Method: e.Operation, Key: key, ExpiresAt: expires.Unix()}
	if e.Operation == contract.S3OperationPut {
		// ContentLength is a signed header of the URL: S3 answers 403 to a body of any other size.
		req, err = h.s3.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(key), ContentLength: e.ContentLength}, opt)
		reply.ContentLength = *e.ContentLength
	} else {
		req, err = h.s3.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(key)}, opt)
	}
	if err != nil {
		return reply, err
	}
	reply.URL = req.URL
	return reply, nil
}

// metric writes one embedded-metric-format record: a count of 1 under name, by stack.
func (h *Handler) metric(name, thing string) {
	line := emf.Line(h.cfg.MetricsNamespace, h.now(), []emf.Dimension{{Name: contract.MetricDimension, Value: h.cfg.ProvisionedBy}},
		[]emf.Metric{{Name: name, Unit: emf.Count, Value: 1}}, map[string]any{"thingName": thing})
	_, _ = h.metrics.Write(line) // best effort: a failed write must not fail the answer
}
