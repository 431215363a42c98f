// Package contract holds every name that crosses a process boundary between the parts of sphere-jitr: the stack
// name, the stack's outputs, the Lambda environment variables, the custom resource's properties, the thing
// attribute JITR writes, and the AWS IoT topic of the certificate-registered event. The CDK app, the Lambdas, the
// device-image tooling and the local emulator all take them from here, so a rename cannot leave one side behind.
// It imports nothing, so any of them can use it without linking the others.
package contract

// StackName is the name of the stack the CDK app deploys (and the default the tools look up).
const StackName = "SphereJitr"

// MetricsNamespace is the CloudWatch namespace of the Lambdas' embedded-metric-format records and of the alarms
// and dashboards that read them.
const MetricsNamespace = StackName

// MetricDimension is the dimension of the Lambdas' metrics whose value is the stack name, so that several stacks in
// one account keep their figures apart.
const MetricDimension = "ProvisionedBy"

// Output names of the stack (the keys of its CloudFormation Outputs).
const (
	OutputIotEndpoint      = "IotEndpoint"
	OutputCACertificateIDs = "CaCertificateIds"
	OutputDevicePolicyName = "DevicePolicyName"
	OutputDemoBucketName   = "DemoBucketName"
	OutputRegion           = "Region"
	OutputTenantID         = "TenantId"
	OutputRetainDevices    = "RetainDevices"
	OutputDeviceTopicRoot  = "DeviceTopicRoot"
)

// Outputs lists every output name, in the order the stack declares them.
var Outputs = []string{OutputIotEndpoint, OutputCACertificateIDs, OutputDevicePolicyName, OutputDemoBucketName,
	OutputRegion, OutputTenantID, OutputRetainDevices, OutputDeviceTopicRoot}

// Environment variables the stack gives the JITR Lambda.
const (
	EnvCACertificateIDs  = "CA_CERTIFICATE_IDS"  // comma-separated AWS IoT ids of the stack's tenant CAs
	EnvCACertificatesPEM = "CA_CERTIFICATES_PEM" // the same CAs' certificates, PEM, in the same order
	EnvDevicePolicyName  = "DEVICE_POLICY_NAME"  // the IoT policy attached to every device certificate
	EnvProvisionedBy     = "PROVISIONED_BY"      // value of AttrProvisionedBy on the things JITR creates
)

// JitrEnv lists the JITR Lambda's environment variables.
var JitrEnv = []string{EnvCACertificateIDs, EnvCACertificatesPEM, EnvDevicePolicyName, EnvProvisionedBy}

// The registry teardown custom resource: its type and properties.
const (
	TeardownResourceType = "Custom::RegistryTeardown"
	PropCACertificateIDs = "CaCertificateIds"
	PropPolicyName       = "DevicePolicyName"
	PropProvisionedBy    = "ProvisionedBy"
	PropRetainDevices    = "RetainDevices"
)

// TeardownProps lists the teardown resource's properties.
var TeardownProps = []string{PropCACertificateIDs, PropPolicyName, PropProvisionedBy, PropRetainDevices}

// Thing attributes JITR sets on the things it creates: provisionedBy is the stack name (teardown deletes only
// things carrying its own), provisionedAt the time of creation (RFC 3339).
const (
	AttrProvisionedBy = "provisionedBy"
	AttrProvisionedAt = "provisionedAt"
)

// RegisteredEventTopicPrefix is the topic AWS IoT publishes a certificate-registered event on, followed by the
// CA certificate id (AWS IoT Developer Guide, "Just-in-time registration").
const RegisteredEventTopicPrefix = "$aws/events/certificates/registered/"

// RegisteredEventTopic is the certificate-registered event topic of one CA.
func RegisteredEventTopic(caCertificateID string) string {
	return RegisteredEventTopicPrefix + caCertificateID
}
