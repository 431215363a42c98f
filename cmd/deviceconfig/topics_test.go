package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// The C app's topic segments and key prefixes, read from its headers, are the ones the rest of the product uses:
// a rename on either side alone fails here rather than on a device.
func TestDeviceTopicSegmentsMatchContract(t *testing.T) {
	root := filepath.Join("..", "..", "device")
	for _, c := range []struct {
		header, define, want, from string
	}{
		{"src/topics.h", "TOPIC_LEAF_TELEMETRY", contract.TelemetryTopicLeaf, "contract.TelemetryTopicLeaf"},
		{"src/topics.h", "TOPIC_LEAF_COMMANDS", contract.CommandsTopicLeaf, "contract.CommandsTopicLeaf"},
		{"src/s3_url_request.h", "S3_URL_TOPIC_SUFFIX", contract.S3URLTopicSuffix, "contract.S3URLTopicSuffix"},
		{"src/s3_url_request.h", "S3_URL_REPLY_ACCEPTED", contract.ReplyAccepted, "contract.ReplyAccepted"},
		{"src/s3_url_request.h", "S3_URL_REPLY_REJECTED", contract.ReplyRejected, "contract.ReplyRejected"},
		{"src/s3_url_request.h", "S3_URL_FLEET_KEY_PREFIX", FleetKeyPrefix, "deviceconfig.FleetKeyPrefix (the baked fleet URL's key)"},
		{"src/s3_url_request.h", "S3_URL_FLEET_KEY_PREFIX", contract.FleetObjectPrefix, "contract.FleetObjectPrefix (the runtime fleet URL's key)"},
		{"src/s3_url_request.h", "S3_URL_SCOPE_FLEET", contract.S3URLScopeFleet, "contract.S3URLScopeFleet (the request's scope)"},
		{"config/host/device_config.h", "DEVICE_TOPIC_ROOT", contract.DefaultDeviceTopicRoot, "contract.DefaultDeviceTopicRoot"},
		{"tests/config/complete/device_config.h", "DEVICE_TOPIC_ROOT", contract.DefaultDeviceTopicRoot, "contract.DefaultDeviceTopicRoot"},
	} {
		got, err := cStringDefine(filepath.Join(root, c.header), c.define)
		if err != nil {
			t.Errorf("device/%s: %v", c.header, err)
			continue
		}
		if got != c.want {
			t.Errorf("device/%s: #define %s is %q, but %s is %q", c.header, c.define, got, c.from, c.want)
		}
	}
}

// The reader below takes what the headers hold: string literals, concatenated, and names of other defines.
func TestCStringDefine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.h")
	text := "#define A \"fleet\" /* scope */\n#  define B A \"/\"  // prefix\n#define C D\n#define E 42\n#ifndef F\n#define F \"x\\\"y\"\n#endif\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"A": "fleet", "B": "fleet/", "F": `x"y`} {
		if got, err := cStringDefine(path, name); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"C", "E", "G"} {
		if got, err := cStringDefine(path, name); err == nil {
			t.Errorf("%s = %q, want an error", name, got)
		}
	}
}

var cToken = regexp.MustCompile(`^\s*("(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*)`)

// cStringDefine returns the string an object-like #define of a C header expands to.
func cStringDefine(path, name string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	defines := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(strings.TrimSpace(strings.TrimPrefix(line, "#")))
		if len(fields) < 3 || fields[0] != "define" || strings.Contains(fields[1], "(") {
			continue
		}
		value := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(line, "#")), "define"))
		value = strings.TrimSpace(strings.TrimPrefix(value, fields[1]))
		defines[fields[1]] = value
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return expandString(defines, name, 0)
}

func expandString(defines map[string]string, name string, depth int) (string, error) {
	value, ok := defines[name]
	if !ok {
		return "", fmt.Errorf("#define %s missing", name)
	}
	if depth > 8 {
		return "", fmt.Errorf("#define %s: nested too deep", name)
	}
	var b strings.Builder
	rest := value
	for {
		rest = strings.TrimSpace(rest)
		if rest == "" || strings.HasPrefix(rest, "//") || strings.HasPrefix(rest, "/*") {
			break
		}
		m := cToken.FindStringSubmatch(rest)
		if m == nil {
			return "", fmt.Errorf("#define %s %s: not a string", name, strings.TrimSpace(value))
		}
		rest = rest[len(m[0]):]
		if strings.HasPrefix(m[1], `"`) {
			s, err := strconv.Unquote(m[1])
			if err != nil {
				return "", fmt.Errorf("#define %s %s: %w", name, value, err)
			}
			b.WriteString(s)
			continue
		}
		s, err := expandString(defines, m[1], depth+1)
		if err != nil {
			return "", fmt.Errorf("#define %s: %w", name, err)
		}
		b.WriteString(s)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("#define %s is empty", name)
	}
	return b.String(), nil
}
