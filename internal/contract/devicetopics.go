package contract

// A device's own MQTT topic tree is <root>/<thing>/<leaf>: the stack's device policy allows a thing only its own
// tree and shadow. The C app declares the same strings (device/src/topics.h, device/src/s3_url_request.h); the
// test cmd/deviceconfig/topics_test.go reads its headers and fails when one side changes alone.
const (
	// DefaultDeviceTopicRoot is the first level of every device's tree unless the stack is given another
	// (OutputDeviceTopicRoot says which one a stack uses; the device image takes it from there).
	DefaultDeviceTopicRoot = "devices"
	TelemetryTopicLeaf     = "telemetry" // the device publishes telemetry on <root>/<thing>/telemetry
	CommandsTopicLeaf      = "commands"  // the device receives commands on <root>/<thing>/commands
)
