package operate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// ShadowClient deletes classic shadows through the AWS IoT data plane's REST API (DELETE /things/{thing}/shadow,
// SigV4 service iotdata): a few lines over the documented call, because the SDK's iotdataplane module is not among
// the project's dependencies.
type ShadowClient struct {
	Endpoint    string // https://<prefix>-ats.iot.<region>.amazonaws.com (the stack's IotEndpoint output), or moto's URL
	Region      string
	Credentials aws.CredentialsProvider
	HTTP        aws.HTTPClient // default: http.DefaultClient
}

var _ ShadowAPI = (*ShadowClient)(nil)

// emptySHA256 is the SHA-256 of an empty body, as SigV4 signs it.
var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

// DeleteThingShadow deletes the thing's classic shadow; 404 (no shadow, or no thing) counts as done.
func (s *ShadowClient) DeleteThingShadow(ctx context.Context, thing string) error {
	endpoint := s.Endpoint
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, strings.TrimRight(endpoint, "/")+"/things/"+url.PathEscape(thing)+"/shadow", nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	creds, err := s.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials: %w", err)
	}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptySHA256, "iotdata", s.Region, time.Now()); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	var client aws.HTTPClient = http.DefaultClient
	if s.HTTP != nil {
		client = s.HTTP
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound {
		return nil
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
}
