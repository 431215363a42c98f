package localaws

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// DestroyResult is the control endpoint's answer to a destroy: Destroy's error, or what it left.
type DestroyResult struct {
	Error     string `json:"error,omitempty"`
	Leftovers string `json:"leftovers,omitempty"`
	Empty     bool   `json:"empty"`
}

// Control is the running emulator's control endpoint on loopback (the localaws command serves it, its URL in the
// info file); its path holds a random token, so only who can read the info file can use it.
type Control struct {
	URL string
	srv *http.Server
}

// Close stops the endpoint.
func (c *Control) Close() error { return c.srv.Close() }

// ServeControl serves POST <URL>/destroy: Destroy on the emulator, answered when it ends.
func (t *Emulator) ServeControl() (*Control, error) {
	mux := http.NewServeMux()
	url, srv, err := serveLoopback(func(base string) http.Handler {
		mux.HandleFunc("POST "+base+"/destroy", func(w http.ResponseWriter, r *http.Request) {
			left, err := t.Destroy(r.Context())
			res := DestroyResult{Empty: err == nil && left.Empty()}
			if err != nil {
				res.Error = err.Error()
			} else {
				res.Leftovers = left.String()
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(res)
		})
		return mux
	})
	if err != nil {
		return nil, err
	}
	return &Control{URL: url, srv: srv}, nil
}

// RequestDestroy asks the emulator whose control endpoint is at url to destroy the stack, and waits for the outcome.
func RequestDestroy(ctx context.Context, url string) (DestroyResult, error) {
	var res DestroyResult
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/destroy", nil)
	if err != nil {
		return res, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return res, fmt.Errorf("ask the emulator to destroy the stack: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return res, fmt.Errorf("the emulator's answer (%s): %w", resp.Status, err)
	}
	return res, nil
}
