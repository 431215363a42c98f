package motoserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// iamControl is the path of the launcher's IAM control API (testkit/moto/iam.py).
const iamControl = "/emulator-api/iam/"

// Principal is a project function as IAM sees it: the role it runs as, the session Lambda opens for it, its own
// access key, and the identity-based policies of its role. Requests signed with the key are authorized by the
// launcher against the policies; requests signed with any other key (AccessKeyID) are not checked.
type Principal struct {
	AccessKeyID     string            `json:"accessKeyId"`
	SecretAccessKey string            `json:"-"`
	RoleArn         string            `json:"roleArn"`
	SessionName     string            `json:"sessionName"`
	Policies        []json.RawMessage `json:"policies"`
}

// FunctionAccessKey is the access key id a function gets in the emulator: distinct per function (derived from
// its logical id), shaped like the temporary keys Lambda hands a function (ASIA...).
func FunctionAccessKey(logicalID string) string {
	sum := sha256.Sum256([]byte(logicalID))
	return "ASIA" + strings.ToUpper(hex.EncodeToString(sum[:8]))
}

// Credentials returns the principal's credentials for an SDK client.
func (p Principal) Credentials() aws.CredentialsProvider {
	secret := p.SecretAccessKey
	if secret == "" {
		secret = "emulator-secret-" + p.AccessKeyID
	}
	return credentials.NewStaticCredentialsProvider(p.AccessKeyID, secret, "")
}

// Env returns the credential variables a function process runs with.
func (p Principal) Env() []string {
	v, _ := p.Credentials().Retrieve(context.Background())
	return []string{"AWS_ACCESS_KEY_ID=" + v.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + v.SecretAccessKey, "AWS_SESSION_TOKEN="}
}

// RoleName is the last part of the role ARN.
func (p Principal) RoleName() string { return p.RoleArn[strings.LastIndex(p.RoleArn, "/")+1:] }

// RegisterPrincipal makes the server enforce the principal's policies on every request signed with its key. It
// survives Reset (moto's state), and registering the same key again replaces the principal.
func (s *Server) RegisterPrincipal(ctx context.Context, p Principal) error {
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("register principal %s: %w", p.RoleArn, err)
	}
	if _, err := s.control(ctx, http.MethodPost, "principals", body); err != nil {
		return fmt.Errorf("register principal %s: %w", p.RoleArn, err)
	}
	return nil
}

// IAMStats counts the requests of registered principals the server authorized and denied.
type IAMStats struct {
	Authorized int `json:"authorized"`
	Denied     int `json:"denied"`
	Denials    []struct {
		Role, Action, Resource, Message string
	} `json:"denials"`
	ByRole map[string]struct {
		Authorized int `json:"authorized"`
		Denied     int `json:"denied"`
	} `json:"byRole"`
	ByAction map[string]int `json:"byAction"` // authorized calls by IAM action ("dynamodb:GetItem")
}

// IAMStats returns the counters since the server started (or ResetIAMStats).
func (s *Server) IAMStats(ctx context.Context) (IAMStats, error) { return FetchIAMStats(ctx, s.URL) }

// ResetIAMStats sets the counters back to zero.
func (s *Server) ResetIAMStats(ctx context.Context) error {
	_, err := s.control(ctx, http.MethodDelete, "stats", nil)
	return err
}

// FetchIAMStats reads the counters of the server at url (for a process that did not start it).
func FetchIAMStats(ctx context.Context, url string) (IAMStats, error) {
	var st IAMStats
	data, err := (&Server{URL: url}).control(ctx, http.MethodGet, "stats", nil)
	if err != nil {
		return st, fmt.Errorf("read IAM stats: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("read IAM stats: %w", err)
	}
	return st, nil
}

func (s *Server) control(ctx context.Context, method, what string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL+iamControl+what, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	return data, nil
}

// AWSConfig returns an SDK configuration that talks to the moto server at url with the admin credentials
// (AccessKeyID: not a registered principal, so IAM is not enforced on it).
func AWSConfig(url string) aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		BaseEndpoint: aws.String(url),
		HTTPClient:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second},
	}
}

// LostAnswerRetryer is a retryer for tests that must see every answer moto gives as it was (API errors,
// throttling and 5xx included, never retried): it sends a request again only when the connection lost its answer
// ("use of closed network connection" while the SDK reads the body: moto's development server now and then cuts
// an answer short), which says nothing about the behaviour under test.
func LostAnswerRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 3
		o.RateLimiter = ratelimit.None
		o.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if strings.Contains(err.Error(), "use of closed network connection") {
				return aws.TrueTernary
			}
			return aws.FalseTernary
		})}
	})
}
