package motoserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// Internal marks every call of an AWS SDK client as the emulator's own (add it to the client's APIOptions): the
// quotas neither count nor throttle it. The broker's registry reads stand in for AWS IoT's internals, which do not
// spend the account's quotas; the account's code (the functions, the tools) never carries it.
func Internal(stack *middleware.Stack) error {
	return smithyhttp.SetHeaderValue(contract.EmulatorInternalHeader, "1")(stack)
}

// QuotaStats are the figures of the AWS IoT control-plane quotas the server enforces (testkit/moto/quotas.py):
// the limits in requests per second by API, the calls admitted and throttled by API since the last reset, and when
// each certificate was first activated (UpdateCertificate ACTIVE) and deleted, in Unix seconds.
type QuotaStats struct {
	Limits    map[string]float64 `json:"limits"`
	Calls     map[string]int     `json:"calls"`
	Throttled map[string]int     `json:"throttled"`
	Activated map[string]float64 `json:"activated"`
	Deleted   map[string]float64 `json:"deleted"`
}

// Quotas reads the quota figures.
func (s *Server) Quotas(ctx context.Context) (QuotaStats, error) {
	var st QuotaStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.ServiceURL("iot")+contract.QuotasPath, nil)
	if err != nil {
		return st, fmt.Errorf("read quotas: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("read quotas: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("read quotas: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("read quotas: %w", err)
	}
	return st, nil
}

// ResetQuotas zeroes the quota figures and refills every bucket, so that what follows starts from an idle account.
func (s *Server) ResetQuotas(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ServiceURL("iot")+contract.QuotasResetPath, nil)
	if err != nil {
		return fmt.Errorf("reset quotas: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reset quotas: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset quotas: HTTP %d", resp.StatusCode)
	}
	return nil
}

// ScaleQuotas sets every AWS IoT quota to factor × its value when the server started, zeroes the figures and
// refills every bucket (the storm benchmark lifts the quotas ×100 for its capacity pass).
func (s *Server) ScaleQuotas(ctx context.Context, factor float64) error {
	body := strings.NewReader(`{"scale": ` + strconv.FormatFloat(factor, 'g', -1, 64) + `}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ServiceURL("iot")+contract.QuotasScalePath, body)
	if err != nil {
		return fmt.Errorf("scale quotas: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("scale quotas: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scale quotas: HTTP %d", resp.StatusCode)
	}
	return nil
}
