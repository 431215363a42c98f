package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MaxExpiry is the longest a SigV4 presigned URL can live.
const MaxExpiry = 7 * 24 * time.Hour

// DefaultExpiry is how long the presigned URLs baked into an image work unless EXPIRES says otherwise: a day
// covers build, sideload and first boots without leaving a long-lived write URL in every image.
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

// NewObjectKey returns the per-build S3 object key the device uploads to and downloads from, so two builds never
// share an object.
func NewObjectKey(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return fmt.Sprintf("device-builds/%s-%s/device-upload.txt", now.UTC().Format("20060102T150405Z"), hex.EncodeToString(b))
}

// PresignedURLs are the S3 URLs of one object.
type PresignedURLs struct {
	Put, Get string
	Host     string    // host of both URLs: the device's AllowedConnections entry
	Expires  time.Time // zero when unsigned
}

// Presign signs a PUT and a GET URL for bucket/key that live for expiry from now, with the credentials in cfg.
// Buckets with dots in their names are addressed path-style, because their virtual host would not match the
// S3 wildcard TLS certificate the device checks.
func Presign(ctx context.Context, cfg aws.Config, region, bucket, key string, expiry time.Duration, now func() time.Time) (*PresignedURLs, error) {
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
	put, err := presigner.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("presign S3 PUT of s3://%s/%s: %w", bucket, key, err)
	}
	get, err := presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("presign S3 GET of s3://%s/%s: %w", bucket, key, err)
	}
	if put.Method != http.MethodPut || get.Method != http.MethodGet {
		return nil, fmt.Errorf("presign: got %s and %s, want PUT and GET", put.Method, get.Method)
	}
	// The device sends only Host (and Content-Length): a URL that also signs other headers would be refused.
	for _, req := range []*v4.PresignedHTTPRequest{put, get} {
		for name := range req.SignedHeader {
			if !strings.EqualFold(name, "host") {
				return nil, fmt.Errorf("presign %s: the URL signs header %s, which the device does not send", req.Method, name)
			}
		}
	}
	host, err := urlHost(put.URL)
	if err != nil {
		return nil, err
	}
	if h, _ := urlHost(get.URL); h != host {
		return nil, fmt.Errorf("presign: PUT host %s and GET host %s differ", host, h)
	}
	return &PresignedURLs{Put: put.URL, Get: get.URL, Host: host, Expires: now().Add(expiry).UTC()}, nil
}

// UnsignedURLs returns the plain object URL for both methods: what the header gets when no credentials exist to
// sign with, so the build still works offline (the device's S3 step is then refused with 403).
func UnsignedURLs(region, bucket, key string) *PresignedURLs {
	path := (&url.URL{Path: "/" + key}).EscapedPath()
	host := fmt.Sprintf("%s.s3.%s.amazonaws.com", bucket, region)
	if strings.Contains(bucket, ".") { // path-style, as Presign does
		host = fmt.Sprintf("s3.%s.amazonaws.com", region)
		path = "/" + bucket + path
	}
	if strings.HasPrefix(region, "cn-") {
		host += ".cn"
	}
	u := "https://" + host + path
	return &PresignedURLs{Put: u, Get: u, Host: host}
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
