package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// MaxExpiry is the longest a SigV4 presigned URL can live.
const MaxExpiry = 7 * 24 * time.Hour

// DefaultExpiry is how long the fleet file's presigned GET URL baked into an image works unless EXPIRES says
// otherwise: a day covers build, sideload and first boots. The URL only reads one fleet-wide object; everything a
// device writes or reads of its own goes through the short-lived URLs it asks for over MQTT at run time.
const DefaultExpiry = 24 * time.Hour

// ParseExpiry reads an expiry as a Go duration ("36h", "90m") or in days ("7d") and refuses what SigV4 cannot sign.
func ParseExpiry(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n float64
		n, err = strconv.ParseFloat(days, 64)
		d = time.Duration(n * float64(24*time.Hour))
	} else {
		d, err = time.ParseDuration(s)
	}
	switch {
	case err != nil || s == "":
		return 0, fmt.Errorf("-expires %q is not a duration: use hours or days, e.g. -expires 24h or -expires 7d", s)
	case d > MaxExpiry:
		return 0, fmt.Errorf("-expires %s is more than 7 days, the longest a SigV4 presigned URL can live: use -expires 7d or less, "+
			"and run 'make device-image' again before the URLs expire", s)
	case d < time.Second:
		return 0, fmt.Errorf("-expires %s: the URLs must live at least a second; the default is %s", s, DefaultExpiry)
	}
	return d, nil
}

// DefaultFleetKey is the fleet-wide object every image may read (the operator uploads it, e.g. with
// `aws s3 cp notice.txt s3://<bucket>/fleet/notice.txt`).
const DefaultFleetKey = FleetKeyPrefix + "notice.txt"

// FleetKeyPrefix starts every key an image may carry a URL for: objects the whole fleet reads, never a device's
// own (those live under contract.DeviceObjectPrefix and are reached only with the runtime URLs). It is the prefix the
// presign function signs a runtime GET under when the device asks with scope contract.S3URLScopeFleet.
const FleetKeyPrefix = contract.FleetObjectPrefix

// CheckFleetKey refuses a key outside FleetKeyPrefix, or one that could name another prefix through a "." or ".."
// segment, so no image can read what one device uploaded.
func CheckFleetKey(key string) error {
	rest, ok := strings.CutPrefix(key, FleetKeyPrefix)
	if !ok || rest == "" {
		return fmt.Errorf("-key %q: the image may only carry a URL for a fleet-wide object under %s (a device's own objects, %s<thing>/, "+
			"are reached with the URLs it asks for over MQTT)", key, FleetKeyPrefix, contract.DeviceObjectPrefix)
	}
	for _, seg := range strings.Split(rest, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("-key %q: no empty, . or .. segment", key)
		}
	}
	return nil
}

// FleetURL is the presigned GET URL of the fleet file.
type FleetURL struct {
	Get     string
	Host    string    // the device's AllowedConnections entry
	Expires time.Time // zero when unsigned
}

// PresignFleetGet signs a GET URL (and only a GET: no image carries a URL that writes) for bucket/key that lives
// for expiry from now, with the credentials in cfg. Buckets with dots in their names are addressed path-style,
// because their virtual host would not match the S3 wildcard TLS certificate the device checks.
func PresignFleetGet(ctx context.Context, cfg aws.Config, region, bucket, key string, expiry time.Duration, now func() time.Time) (*FleetURL, error) {
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.Region = region
		o.UsePathStyle = strings.Contains(bucket, ".")
		// No checksum parameters: the device sends a plain body and reads a plain response.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	presigner := s3.NewPresignClient(client, s3.WithPresignExpires(expiry), func(o *s3.PresignOptions) {
		o.Presigner = clockedPresigner{v4.NewSigner(), now}
	})
	get, err := presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("presign S3 GET of s3://%s/%s: %w", bucket, key, err)
	}
	if get.Method != http.MethodGet {
		return nil, fmt.Errorf("presign: got %s, want GET", get.Method)
	}
	// The device sends only Host (and Range): a URL that also signs other headers would be refused.
	for name := range get.SignedHeader {
		if !strings.EqualFold(name, "host") {
			return nil, fmt.Errorf("presign GET: the URL signs header %s, which the device does not send", name)
		}
	}
	host, err := urlHost(get.URL)
	if err != nil {
		return nil, err
	}
	return &FleetURL{Get: get.URL, Host: host, Expires: now().Add(expiry).UTC()}, nil
}

// UnsignedFleetURL returns the plain object URL: what the header gets when no credentials exist to sign with, so
// the build still works offline (the device's fleet file download is then refused with 403).
func UnsignedFleetURL(region, bucket, key string) *FleetURL {
	path := (&url.URL{Path: "/" + key}).EscapedPath()
	host := fmt.Sprintf("%s.s3.%s.amazonaws.com", bucket, region)
	if strings.Contains(bucket, ".") { // path-style, as Presign does
		host = fmt.Sprintf("s3.%s.amazonaws.com", region)
		path = "/" + bucket + path
	}
	if strings.HasPrefix(region, "cn-") {
		host += ".cn"
	}
	return &FleetURL{Get: "https://" + host + path, Host: host}
}

func urlHost(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", fmt.Errorf("presign: %q is not an https URL", raw)
	}
	if u.Port() != "" {
		return "", fmt.Errorf("presign: %q names a port; the device's AllowedConnections take a bare host", raw)
	}
	return u.Hostname(), nil
}

// clockedPresigner signs at the time of the command's clock, so the URLs (and the tests' golden files) follow
// one notion of now.
type clockedPresigner struct {
	signer *v4.Signer
	now    func() time.Time
}

func (p clockedPresigner) PresignHTTP(ctx context.Context, credentials aws.Credentials, r *http.Request, payloadHash, service, region string,
	_ time.Time, optFns ...func(*v4.SignerOptions)) (string, http.Header, error) {
	return p.signer.PresignHTTP(ctx, credentials, r, payloadHash, service, region, p.now(), optFns...)
}

var _ s3.HTTPPresignerV4 = clockedPresigner{}
