package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// ManifestSettings are the values the generated app_manifest.json takes from the stack.
type ManifestSettings struct {
	Endpoint   string // AWS IoT data endpoint host
	BucketHost string // host of the presigned S3 URLs
	TenantID   string
}

// placeholderPattern matches the @NAME@ markers of device/app_manifest.json.
var placeholderPattern = regexp.MustCompile(`@[A-Z0-9_]+@`)

var componentIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// RenderManifest fills the manifest template: Capabilities.AllowedConnections becomes exactly the endpoint and
// the bucket host, Capabilities.DeviceAuthentication the tenant id. Everything else, the ComponentId included
// (it identifies the app to the OS and must not change between builds), and the order of the keys stay as the
// template has them.
func RenderManifest(template []byte, s ManifestSettings) ([]byte, error) {
	manifest, err := parseObject(template)
	if err != nil {
		return nil, fmt.Errorf("manifest template: %w", err)
	}
	var componentID string
	if raw, ok := manifest.get("ComponentId"); !ok || json.Unmarshal(raw, &componentID) != nil || !componentIDPattern.MatchString(componentID) {
		return nil, errors.New("manifest template has no ComponentId GUID: restore device/app_manifest.json from git")
	}
	capabilities := object{}
	if raw, ok := manifest.get("Capabilities"); ok {
		if capabilities, err = parseObject(raw); err != nil {
			return nil, fmt.Errorf("manifest template Capabilities: %w", err)
		}
	}
	hosts, _ := json.Marshal([]string{s.Endpoint, s.BucketHost})
	tenant, _ := json.Marshal(s.TenantID)
	capabilities = capabilities.set("AllowedConnections", hosts).set("DeviceAuthentication", tenant)
	capJSON, err := json.Marshal(capabilities)
	if err != nil {
		return nil, err
	}
	manifest = manifest.set("Capabilities", capJSON)
	compact, err := json.Marshal(manifest)
	if err != nil {
		return nil, err
	}
	if p := placeholderPattern.Find(compact); p != nil {
		return nil, fmt.Errorf("manifest template placeholder %s is not one the generator fills (AllowedConnections, DeviceAuthentication): "+
			"teach cmd/deviceconfig the new value", p)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// object is a JSON object that keeps the order of its keys, so the generated manifest reads like its template.
type object []member

type member struct {
	Key   string
	Value json.RawMessage
}

func parseObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var o object
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key := tok.(string) // inside an object, the decoder only returns string keys here
		if seen[key] {
			return nil, fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("invalid JSON at %q: %w", key, err)
		}
		o = append(o, member{key, value})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the object")
	}
	return o, nil
}

func (o object) get(key string) (json.RawMessage, bool) {
	for _, m := range o {
		if m.Key == key {
			return m.Value, true
		}
	}
	return nil, false
}

// set replaces the value of key in place, or appends the key.
func (o object) set(key string, value json.RawMessage) object {
	for i := range o {
		if o[i].Key == key {
			o[i].Value = value
			return o
		}
	}
	return append(o, member{key, value})
}

// MarshalJSON writes the members in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(m.Key)
		b.Write(key)
		b.WriteByte(':')
		b.Write(m.Value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
