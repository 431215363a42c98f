package motoserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// Connectivity is one client's connection state as AWS IoT's connectivity index records it (ThingConnectivity):
// the emulator's broker reports it at each CONNECT and disconnect, and SearchIndex answers it for the thing whose
// name is the client id.
type Connectivity struct {
	ClientID  string `json:"clientId"`
	Connected bool   `json:"connected"`
	// Timestamp is the epoch time in milliseconds of the connect or disconnect; zero means now.
	Timestamp int64 `json:"timestamp,omitempty"`
	// DisconnectReason is one of AWS's values (AUTH_ERROR, CLIENT_INITIATED_DISCONNECT, CONNECTION_LOST,
	// DUPLICATE_CLIENTID, MQTT_KEEP_ALIVE_TIMEOUT, ... see testkit/moto/indexing.py), disconnects only.
	DisconnectReason string `json:"disconnectReason,omitempty"`
	AccountID        string `json:"accountId,omitempty"` // default AccountID
	Region           string `json:"region,omitempty"`    // default Region
}

// Millis is t as the connectivity index's timestamp.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// SetConnectivity records the connection state of one or more clients.
func (s *Server) SetConnectivity(ctx context.Context, states ...Connectivity) error {
	body, err := json.Marshal(map[string]any{"clients": states})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+contract.ConnectivityControlPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("set connectivity: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("set connectivity: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// GetConnectivity reads back what was recorded for a client of the default account and Region; found is false
// when nothing was.
func (s *Server) GetConnectivity(ctx context.Context, clientID string) (c Connectivity, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+contract.ConnectivityControlPath+"?clientId="+url.QueryEscape(clientID), nil)
	if err != nil {
		return c, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, false, fmt.Errorf("get connectivity: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return c, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return c, false, fmt.Errorf("get connectivity: HTTP %d", resp.StatusCode)
	}
	c.ClientID = clientID
	return c, true, json.NewDecoder(resp.Body).Decode(&c)
}
