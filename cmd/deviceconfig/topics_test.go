package main

import (
	"path/filepath"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/cheader"
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
		defines, err := cheader.Read(filepath.Join(root, c.header))
		if err != nil {
			t.Errorf("device/%s: %v", c.header, err)
			continue
		}
		got, err := defines.String(c.define)
		if err != nil {
			t.Errorf("device/%s: %v", c.header, err)
			continue
		}
		if got != c.want {
			t.Errorf("device/%s: #define %s is %q, but %s is %q", c.header, c.define, got, c.from, c.want)
		}
	}
}
