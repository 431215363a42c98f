package devicesim

import (
	"testing"

	"github.com/sphere-jitr/sphere-jitr/infra"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// TestTopicsAreTheProducts pins every topic the simulated device publishes or subscribes on to the product's
// names: the stack's default topic root (infra, which the device policy and the presign function's topic rule
// use), and internal/contract's telemetry, S3 URL and shadow topics (which the presign function and the device app
// use). The wire forms are spelled out as well, so that a change of a contract name shows here as a change of what
// the devices send.
func TestTopicsAreTheProducts(t *testing.T) {
	if DefaultTopicRoot != infra.DefaultTopicRoot {
		t.Errorf("DefaultTopicRoot = %q, the stack's default topic root is %q", DefaultTopicRoot, infra.DefaultTopicRoot)
	}
	d := NewDevice("device-1", newCA(t), Config{})
	th := d.Thing
	for _, tc := range []struct{ what, got, product, wire string }{
		{"telemetry", d.TelemetryTopic(), contract.TelemetryTopic(infra.DefaultTopicRoot, th), "devices/" + th + "/telemetry"},
		{"URL request", d.S3URLTopic(""), contract.S3URLRequestTopic(infra.DefaultTopicRoot, th), "devices/" + th + "/s3/url"},
		{"URL accepted", d.S3URLTopic(contract.ReplyAccepted), contract.S3URLReplyTopic(infra.DefaultTopicRoot, th, contract.ReplyAccepted), "devices/" + th + "/s3/url/accepted"},
		{"URL rejected", d.S3URLTopic(contract.ReplyRejected), contract.S3URLReplyTopic(infra.DefaultTopicRoot, th, contract.ReplyRejected), "devices/" + th + "/s3/url/rejected"},
		{"shadow update", d.ShadowTopic("update"), contract.ShadowTopic(th, "update"), "$aws/things/" + th + "/shadow/update"},
		{"shadow get accepted", d.ShadowTopic("get/accepted"), contract.ShadowTopic(th, "get/accepted"), "$aws/things/" + th + "/shadow/get/accepted"},
	} {
		if tc.got != tc.product || tc.got != tc.wire {
			t.Errorf("%s topic: the simulator uses %q, the product %q, the wire form is %q", tc.what, tc.got, tc.product, tc.wire)
		}
	}
	other := NewDevice("device-2", newCA(t), Config{TopicRoot: "fleet-a"})
	if got, want := other.TelemetryTopic(), contract.TelemetryTopic("fleet-a", other.Thing); got != want {
		t.Errorf("with the stack's topic root fleet-a, telemetry goes to %q, want %q", got, want)
	}
}
