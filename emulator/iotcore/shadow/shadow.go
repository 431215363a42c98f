// Package shadow is AWS IoT Device Shadow over MQTT as the broker bridges it: requests on a thing's
// $aws/things/<thing>/shadow topics performed against moto's shadow service, answered with accepted/rejected, and
// update/delta and update/documents published as AWS IoT publishes them.
package shadow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Client calls moto's IoT data plane (the device shadow REST API), signed with SigV4 like the AWS SDK so
// moto routes it by the credential scope. The SDK's iotdataplane client is not among the project's modules.
type Client struct {
	Endpoint    string // moto URL
	Region      string
	Credentials aws.CredentialsProvider
	HTTP        *http.Client
}

// Error is an error answer of the shadow service, with the HTTP status AWS IoT puts in rejected replies.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("shadow service: %d %s", e.Code, e.Message) }

// Do sends one shadow request: method GET, POST (update) or DELETE, for a thing and an optional named shadow.
func (c *Client) Do(ctx context.Context, method, thing, shadowName string, body []byte) ([]byte, error) {
	u := c.Endpoint + "/things/" + url.PathEscape(thing) + "/shadow"
	if shadowName != "" {
		u += "?name=" + url.QueryEscape(shadowName)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	creds, err := c.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "iotdata", c.Region, time.Now()); err != nil {
		return nil, fmt.Errorf("sign shadow request: %w", err)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("shadow %s %s: %w", method, thing, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("shadow %s %s: read answer: %w", method, thing, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Message string `json:"message"`
			Type    string `json:"__type"`
		}
		_ = json.Unmarshal(out, &e)
		msg := e.Message
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		return nil, &Error{Code: resp.StatusCode, Message: msg}
	}
	return out, nil
}

// shadowTopic is a parsed request topic $aws/things/<thing>/shadow[/name/<name>]/<op>.
type shadowTopic struct {
	Thing, Name, Op string
	Prefix          string // topic up to and including "shadow" or "shadow/name/<name>"
}

func parseShadowTopic(topic string) (shadowTopic, bool) {
	parts := strings.Split(topic, "/")
	if len(parts) < 5 || parts[0] != "$aws" || parts[1] != "things" || parts[3] != "shadow" {
		return shadowTopic{}, false
	}
	st := shadowTopic{Thing: parts[2]}
	rest := parts[4:]
	prefixLen := 4
	if rest[0] == "name" {
		if len(rest) != 3 {
			return shadowTopic{}, false
		}
		st.Name = rest[1]
		rest = rest[2:]
		prefixLen = 6
	}
	if len(rest) != 1 {
		return shadowTopic{}, false // a reply topic (accepted/rejected/delta/documents), not a request
	}
	switch rest[0] {
	case "update", "get", "delete":
		st.Op = rest[0]
	default:
		return shadowTopic{}, false
	}
	st.Prefix = strings.Join(parts[:prefixLen], "/")
	return st, true
}

// Reply is one message the bridge publishes back.
type Reply struct {
	Topic   string
	Payload []byte
}

// HandleRequest performs a shadow request received on an MQTT topic against moto and returns the replies
// AWS IoT would publish: <op>/accepted or <op>/rejected, and update/delta when desired and reported differ.
func HandleRequest(ctx context.Context, c *Client, topic string, payload []byte) ([]Reply, bool) {
	st, ok := parseShadowTopic(topic)
	if !ok {
		return nil, false
	}
	var req map[string]any
	if len(bytes.TrimSpace(payload)) > 0 {
		if err := json.Unmarshal(payload, &req); err != nil {
			return []Reply{rejected(st, 400, "Payload contains invalid json", nil)}, true
		}
	}
	token := req["clientToken"]
	var (
		out      []byte
		err      error
		previous []byte // the document before an update, for update/documents
	)
	switch st.Op {
	case "get":
		out, err = c.Do(ctx, http.MethodGet, st.Thing, st.Name, nil)
	case "delete":
		// moto deletes an absent shadow without complaint; AWS answers 404 (No shadow exists with name).
		if _, err = c.Do(ctx, http.MethodGet, st.Thing, st.Name, nil); err == nil {
			out, err = c.Do(ctx, http.MethodDelete, st.Thing, st.Name, nil)
		}
	case "update":
		if code, msg := shadowStateProblem(req["state"]); code != 0 {
			return []Reply{rejected(st, code, msg, token)}, true
		}
		previous, _ = c.Do(ctx, http.MethodGet, st.Thing, st.Name, nil)
		body := map[string]any{"state": nullSectionsAsKeys(req["state"], previous)}
		if v, ok := req["version"]; ok {
			// moto fails on a versioned update of a shadow that does not exist yet; AWS answers 409.
			if _, gerr := c.Do(ctx, http.MethodGet, st.Thing, st.Name, nil); gerr != nil {
				return []Reply{rejected(st, 409, "Version conflict", token)}, true
			}
			body["version"] = v
		}
		if _, has := req["state"]; !has {
			return []Reply{rejected(st, 400, "Missing required node: state", token)}, true
		}
		enc, _ := json.Marshal(body)
		out, err = c.Do(ctx, http.MethodPost, st.Thing, st.Name, enc)
	}
	if err != nil {
		code, msg := 500, err.Error()
		if se, ok := err.(*Error); ok {
			code, msg = se.Code, se.Message
			if code == 404 {
				msg = "No shadow exists with name: '" + st.Thing + "'"
			}
		}
		return []Reply{rejected(st, code, msg, token)}, true
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		return []Reply{rejected(st, 500, "shadow service answered invalid json", token)}, true
	}
	if token != nil {
		doc["clientToken"] = token
	}
	if st.Op == "delete" {
		delete(doc, "state")
		delete(doc, "metadata")
	}
	if st.Op == "update" {
		doc["state"] = req["state"] // AWS echoes the request's state, null sections included
	}
	if st.Op == "get" {
		dropEmptySections(doc)
	}
	accepted, _ := json.Marshal(doc)
	replies := []Reply{{Topic: st.Prefix + "/" + st.Op + "/accepted", Payload: accepted}}
	if st.Op == "update" {
		if current, err := c.Do(ctx, http.MethodGet, st.Thing, st.Name, nil); err == nil {
			replies = append(replies, Reply{Topic: st.Prefix + "/update/documents", Payload: documentsMessage(previous, current, token)})
		}
		if d := desiredIn(req); d {
			if delta := currentDelta(ctx, c, st); delta != nil {
				replies = append(replies, Reply{Topic: st.Prefix + "/update/delta", Payload: delta})
			}
		}
	}
	return replies, true
}

// Shadow limits, from "Device Shadow error messages" (https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-error-messages.html)
// and "Diagnosing problems with shadows" (https://docs.aws.amazon.com/iot/latest/developerguide/diagnosing-shadows.html).
const (
	// MaxShadowStateBytes: "The device's shadow supports 8 KB of data only ... Only the data for desired and
	// reported state inside the state document sent to the device's shadow counts toward the limit."
	MaxShadowStateBytes = 8 * 1024
	// MaxShadowDepth: 400 "JSON contains too many levels of nesting; maximum is 6".
	MaxShadowDepth = 6
)

// shadowStateProblem judges the state of an update request against the shadow limits; it returns the HTTP code
// and message of the rejected reply, or 0.
func shadowStateProblem(state any) (int, string) {
	m, ok := state.(map[string]any)
	if !ok {
		if state != nil {
			return 400, "State node must be an object"
		}
		return 0, "" // a missing state is answered below (Missing required node: state)
	}
	size := 0
	for _, section := range []string{"desired", "reported"} {
		v, ok := m[section]
		if !ok || v == nil {
			continue
		}
		if _, isObj := v.(map[string]any); !isObj {
			return 400, strings.ToUpper(section[:1]) + section[1:] + " node must be an object"
		}
		if jsonDepth(v) > MaxShadowDepth {
			return 400, "JSON contains too many levels of nesting; maximum is 6"
		}
		enc, _ := json.Marshal(v)
		size += len(enc)
	}
	if size > MaxShadowStateBytes {
		return 413, "The payload exceeds the maximum size allowed"
	}
	return 0, ""
}

// jsonDepth counts the levels of objects and arrays in a decoded JSON value: {"a":1} is 1 level.
func jsonDepth(v any) int {
	deepest := 0
	switch t := v.(type) {
	case map[string]any:
		for _, c := range t {
			deepest = max(deepest, jsonDepth(c))
		}
	case []any:
		for _, c := range t {
			deepest = max(deepest, jsonDepth(c))
		}
	default:
		return 0
	}
	return deepest + 1
}

// nullSectionsAsKeys turns "desired": null (or "reported": null), which deletes the whole section on AWS and
// which moto ignores, into a null for each key the stored section has, which moto applies.
func nullSectionsAsKeys(state any, stored []byte) any {
	m, ok := state.(map[string]any)
	if !ok {
		return state
	}
	var doc struct {
		State map[string]map[string]any `json:"state"`
	}
	_ = json.Unmarshal(stored, &doc)
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
		if v != nil || (k != "desired" && k != "reported") {
			continue
		}
		keys := map[string]any{}
		for name := range doc.State[k] {
			keys[name] = nil
		}
		if len(keys) == 0 {
			delete(out, k)
			continue
		}
		out[k] = keys
	}
	return out
}

// dropEmptySections removes the sections an update emptied: AWS has no "desired": {} once desired is deleted.
func dropEmptySections(doc map[string]any) {
	for _, part := range []string{"state", "metadata"} {
		m, _ := doc[part].(map[string]any)
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok && len(sub) == 0 {
				delete(m, k)
			}
		}
	}
}

// documentsMessage is the update/documents message: the shadow before and after an accepted update.
func documentsMessage(previous, current []byte, token any) []byte {
	side := func(raw []byte) any {
		var doc map[string]any
		if json.Unmarshal(raw, &doc) != nil {
			return nil
		}
		dropEmptySections(doc)
		if st, ok := doc["state"].(map[string]any); ok {
			delete(st, "delta")
		}
		out := map[string]any{"state": doc["state"], "metadata": doc["metadata"], "version": doc["version"]}
		return out
	}
	msg := map[string]any{"previous": side(previous), "current": side(current), "timestamp": time.Now().Unix()}
	if token != nil {
		msg["clientToken"] = token
	}
	enc, _ := json.Marshal(msg)
	return enc
}

func desiredIn(req map[string]any) bool {
	state, _ := req["state"].(map[string]any)
	_, ok := state["desired"]
	return ok
}

// currentDelta reads the shadow back and returns the update/delta message, or nil when reported matches desired.
func currentDelta(ctx context.Context, c *Client, st shadowTopic) []byte {
	out, err := c.Do(ctx, http.MethodGet, st.Thing, st.Name, nil)
	if err != nil {
		return nil
	}
	var doc struct {
		State struct {
			Delta map[string]any `json:"delta"`
		} `json:"state"`
		Version   int64 `json:"version"`
		Timestamp int64 `json:"timestamp"`
	}
	if json.Unmarshal(out, &doc) != nil || len(doc.State.Delta) == 0 {
		return nil
	}
	msg, _ := json.Marshal(map[string]any{"state": doc.State.Delta, "version": doc.Version, "timestamp": doc.Timestamp})
	return msg
}

func rejected(st shadowTopic, code int, msg string, token any) Reply {
	body := map[string]any{"code": code, "message": msg, "timestamp": time.Now().Unix()}
	if token != nil {
		body["clientToken"] = token
	}
	enc, _ := json.Marshal(body)
	return Reply{Topic: st.Prefix + "/" + st.Op + "/rejected", Payload: enc}
}
