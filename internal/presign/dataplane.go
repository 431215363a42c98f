package presign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// DataPlaneSigningName is the SigV4 service name of the AWS IoT data plane (iot-data).
const DataPlaneSigningName = "iotdata"

// DataPlane publishes through the AWS IoT data plane's HTTPS Publish API, POST /topics/{topic}?qos=1, signed with
// SigV4. It is a few lines of code over the documented REST call because the SDK's iotdataplane module is not
// among the project's dependencies.
type DataPlane struct {
	Endpoint    string // https://<prefix>-ats.iot.<region>.amazonaws.com
	Region      string
	Credentials aws.CredentialsProvider
	HTTP        *http.Client
	Signer      *v4.Signer
}

var _ Publisher = (*DataPlane)(nil)

// Publish publishes payload on topic with QoS 1.
func (d *DataPlane) Publish(ctx context.Context, topic string, payload []byte) error {
	u := d.Endpoint + "/topics/" + url.PathEscape(topic) + "?qos=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	creds, err := d.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials: %w", err)
	}
	sum := sha256.Sum256(payload)
	if err := d.Signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), DataPlaneSigningName, d.Region, time.Now()); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}
