package motoserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// changesPath is the launcher's feed of the AWS IoT registry's changes (testkit/moto/changes.py).
const changesPath = "/_sphere/changes"

// Changes are the certificates and policies of the AWS IoT registry changed after a sequence number: a
// certificate's status, existence, thing or policy attachments; a policy's document or existence.
type Changes struct {
	Seq          uint64   `json:"seq"` // the latest change; ask for the next ones with it
	Gap          bool     `json:"gap"` // the feed cannot tell what changed (moto reset, reader too far behind): forget everything
	Certificates []string `json:"certificates"`
	Policies     []string `json:"policies"`
}

// Changes returns what changed in the AWS IoT registry after since, waiting up to wait for a change (the emulator's
// broker keeps the registry's answers in memory and drops them as they change).
func (s *Server) Changes(ctx context.Context, since uint64, wait time.Duration) (Changes, error) {
	var c Changes
	url := s.ServiceURL("iot") + changesPath + "?since=" + strconv.FormatUint(since, 10) + "&wait=" + strconv.FormatFloat(wait.Seconds(), 'f', 3, 64)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return c, err
	}
	resp, err := controlClient.Do(req)
	if err != nil {
		return c, fmt.Errorf("registry changes: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("registry changes: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return c, fmt.Errorf("registry changes: %w", err)
	}
	return c, nil
}
