// Package contract holds every name that crosses a process boundary between the parts of sphere-jitr: the stack
// name, the stack's outputs, the Lambda environment variables, the custom resource's properties, the thing
// attribute JITR writes, and the MQTT topics (the certificate-registered event, the devices' own topics). The CDK app, the Lambdas, the
// device-image tooling and the local emulator all take them from here, so a rename cannot leave one side behind.
// It imports only the standard library, so any of them can use it without linking the others.
package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// StackName is the name of the stack the CDK app deploys (and the default the tools look up).
const StackName = "SphereJitr"

// MetricsNamespace is the CloudWatch namespace of the Lambdas' embedded-metric-format records and of the alarms
// and dashboards that read them.
const MetricsNamespace = StackName

// MetricDimension is the dimension of the Lambdas' metrics whose value is the stack name, so that several stacks in
// one account keep their figures apart.
const MetricDimension = "ProvisionedBy"

// Metric names the JITR function emits (CloudWatch embedded metric format, namespace MetricsNamespace, dimension
// MetricDimension), one record per event; the stack's alarms read them.
const (
	MetricProvisioned = "Provisioned" // certificate activated for its thing
	MetricRotated     = "Rotated"     // older certificate of the device deactivated and deleted
	MetricRevoked     = "Revoked"     // certificate revoked because a newer one of the device is attached
	MetricRefused     = "Refused"     // event or certificate failed the checks; certificate revoked if it exists
	MetricIgnored     = "Ignored"     // event for another CA or account, or certificate already settled or gone
	MetricDeferred    = "Deferred"    // certificate left PENDING_ACTIVATION: it may become acceptable, a later event provisions it
	// MetricCAMismatch counts events whose CA id differs from the CA AWS IoT reports for the certificate (also
	// Deferred); an alarm watches it.
	MetricCAMismatch      = "CAMismatch"
	MetricOtherAccount    = "OtherAccount"    // event for another AWS account (also Ignored)
	MetricForeignAttached = "ForeignAttached" // certificate of another issuer or device attached to the thing, left alone by rotation
	// MetricDenied counts certificates refused because their device is on the deny-list (`fleetctl revoke`); the
	// certificate is revoked.
	MetricDenied = "Denied"
	// MetricDuplicate counts registered events dropped before any AWS IoT call: their certificate was settled, or
	// is being provisioned, by another delivery (AWS IoT re-publishes the event at every connection attempt).
	MetricDuplicate = "Duplicate"
	// MetricRetirementDeferred counts retirements put back on their queue because registered events are queued:
	// activation comes first, both share the same quotas.
	MetricRetirementDeferred = "RetirementDeferred"
	// MetricRequeued counts the reconciler's work: certificates found PENDING_ACTIVATION whose registered event it
	// queued again, and devices whose older certificates it queued for retirement again.
	MetricRequeued = "Requeued"
	// MetricDeadlineCut counts invocations that ran into their deadline: a record's paced call found no slot before
	// it, or its context ended (the batch is sized so that this stays 0).
	MetricDeadlineCut = "DeadlineCut"
	// MetricHandedBack counts records a batch handed back unstarted, as batch item failures, because the
	// invocation had not the time to finish them at its pacing.
	MetricHandedBack = "HandedBack"
)

// Metrics of the scheduled tenant-CA check (namespace MetricsNamespace, dimension MetricDimension; the per-CA
// metric also has MetricCADimension).
const (
	// MetricTenantCADaysLeft is the number of days until one registered tenant CA expires.
	MetricTenantCADaysLeft = "TenantCADaysLeft"
	// MetricDaysLeftWithoutSuccessor is the number of days until the last of the stack's ACTIVE tenant CAs with
	// auto-registration expires: from then on no new device certificate can be provisioned. An alarm fires when it
	// drops below 60, i.e. a CA is within 60 days of expiry and no successor is registered.
	MetricDaysLeftWithoutSuccessor = "TenantCADaysLeftWithoutSuccessor"
	// MetricCADimension is the dimension of MetricTenantCADaysLeft whose value is the CA certificate id.
	MetricCADimension = "CaCertificateId"
)

// The deny-list: a DynamoDB table of the devices `fleetctl revoke` shut out, read by the JITR function before it
// provisions anything. One item per device; the partition key is the thing name (the lower-case device ID).
const (
	DenyListKey       = "DeviceId"  // partition key, string: the thing name
	DenyListRevokedAt = "RevokedAt" // RFC 3339 time of the revocation
	DenyListReason    = "Reason"    // free text the operator gave
	DenyListRevokedBy = "RevokedBy" // the caller identity (ARN) that revoked it
)

// Output names of the stack (the keys of its CloudFormation Outputs).
const (
	OutputIotEndpoint      = "IotEndpoint"
	OutputCACertificateIDs = "CaCertificateIds"
	OutputDevicePolicyName = "DevicePolicyName"
	OutputDemoBucketName   = "DemoBucketName"
	OutputRegion           = "Region"
	OutputTenantID         = "TenantId"
	OutputRetainRegistry   = "RetainRegistry"
	OutputDeviceTopicRoot  = "DeviceTopicRoot"
	OutputDenyListTable    = "DenyListTable"
	OutputDashboardName    = "DashboardName"
	// OutputRegistrationQueueURL and OutputDeadLetterQueueURL are the JITR function's registration queue and its
	// dead-letter queue: fleetctl status reads their depth.
	OutputRegistrationQueueURL = "RegistrationQueueUrl"
	OutputDeadLetterQueueURL   = "DeadLetterQueueUrl"
)

// Outputs lists every output name, in the order the stack declares them.
var Outputs = []string{OutputIotEndpoint, OutputCACertificateIDs, OutputDevicePolicyName, OutputDemoBucketName,
	OutputRegion, OutputTenantID, OutputRetainRegistry, OutputDeviceTopicRoot, OutputDenyListTable, OutputDashboardName,
	OutputRegistrationQueueURL, OutputDeadLetterQueueURL}

// Environment variables the stack gives the JITR Lambda.
const (
	EnvCACertificateIDs  = "CA_CERTIFICATE_IDS"  // comma-separated AWS IoT ids of the stack's tenant CAs
	EnvCACertificatesPEM = "CA_CERTIFICATES_PEM" // the same CAs' certificates, PEM, in the same order
	EnvDevicePolicyName  = "DEVICE_POLICY_NAME"  // the IoT policy attached to every device certificate
	EnvProvisionedBy     = "PROVISIONED_BY"      // value of AttrProvisionedBy on the things JITR creates
	// EnvClockSkewTolerance is how far a device certificate's NotBefore may be ahead of the function's clock (a
	// Go duration such as "5m").
	EnvClockSkewTolerance = "CLOCK_SKEW_TOLERANCE"
	// EnvDenyListTable is the name of the deny-list table (DenyListKey is its partition key).
	EnvDenyListTable = "DENY_LIST_TABLE"
	// EnvLedgerTable is the name of the provisioning ledger (LedgerKey is its partition key): which certificates
	// are being or have been handled, so duplicate events are dropped before any AWS IoT call.
	EnvLedgerTable = "LEDGER_TABLE"
	// EnvRegistrationQueueURL is the queue the topic rules send registered events to (the reconciler queues the
	// events of certificates left pending there, and retirement waits while it has a backlog).
	EnvRegistrationQueueURL = "REGISTRATION_QUEUE_URL"
	// EnvRetirementQueueURL is the queue of deferred retirements (RetirementRequest messages).
	EnvRetirementQueueURL = "RETIREMENT_QUEUE_URL"
	// EnvIoTRateLimits is one execution environment's share of the account's AWS IoT quotas: a JSON object
	// API name → requests per second (the quota divided by the event source mapping's maximum concurrency).
	EnvIoTRateLimits = "IOT_RATE_LIMITS"
	// EnvIoTRateShares is how many execution environments share the quotas (the maximum concurrency
	// EnvIoTRateLimits divides them by): one that finds the others idle may pace itself to that many shares, the
	// whole quota.
	EnvIoTRateShares = "IOT_RATE_SHARES"
)

// JitrEnv lists the JITR Lambda's environment variables.
var JitrEnv = []string{EnvCACertificateIDs, EnvCACertificatesPEM, EnvDevicePolicyName, EnvProvisionedBy, EnvClockSkewTolerance,
	EnvDenyListTable, EnvLedgerTable, EnvRegistrationQueueURL, EnvRetirementQueueURL, EnvIoTRateLimits, EnvIoTRateShares}

// The provisioning ledger: a DynamoDB table with one item per certificate JITR has claimed. A claim is a lease
// (LedgerState inflight until LedgerLeaseUntil); a settled certificate stays (LedgerState done) until
// LedgerExpiresAt (the table's TTL attribute). LedgerRetired and LedgerRetirement let the reconciler find devices
// whose older certificates were never retired.
const (
	LedgerKey        = "CertificateId" // partition key, string
	LedgerState      = "State"         // LedgerInflight or LedgerDone
	LedgerLeaseUntil = "LeaseUntil"    // Unix seconds; an inflight claim older than this may be taken over
	LedgerExpiresAt  = "ExpiresAt"     // Unix seconds; the table's time-to-live attribute
	LedgerRetired    = "Retired"       // boolean: false until the device's older certificates are retired
	LedgerRetirement = "Retirement"    // the RetirementRequest (JSON) queued for the certificate
	LedgerQueuedAt   = "QueuedAt"      // Unix seconds when the retirement was last queued
	LedgerInflight   = "inflight"
	LedgerDone       = "done"
	// LedgerDeleted is the state of a certificate a retirement deleted: an event for it afterwards is about a new
	// registration of the same certificate (AWS IoT registers it anew when the device presents it again).
	LedgerDeleted = "retired"
	// LedgerRetirementPending is set (to LedgerPending) only while the certificate's retirement request is queued
	// and not done: the partition key of the sparse index LedgerRetirementIndex, whose sort key is LedgerQueuedAt,
	// so the reconciler reads the retirements left to do and nothing else.
	LedgerRetirementPending = "RetirementPending"
	LedgerPending           = "queued"
	// LedgerRetirementIndex is the ledger's global secondary index of pending retirements (projecting
	// LedgerRetirement).
	LedgerRetirementIndex = "PendingRetirements"
)

// RetirementRequest is a message on the retirement queue: the certificate JITR activated for a thing, whose older
// certificates are to be retired (deactivated, detached, deleted) once activations leave quota to spare.
type RetirementRequest struct {
	Thing          string `json:"thing"`
	CertificateID  string `json:"certificateId"`
	CertificateARN string `json:"certificateArn"`
	NotBefore      int64  `json:"notBefore"` // Unix seconds of the certificate's NotBefore
	// NewThing says the activation found no thing and created it: the device most likely has nothing older, so
	// its retirement lists the thing's principals even while registrations are queued (a call activation does not
	// use) instead of waiting for them. A hint only: what is retired is decided by that list.
	NewThing bool `json:"newThing,omitempty"`
}

// ScheduledEventDetailType is the detail-type of the events an EventBridge schedule sends a function: the JITR
// function runs its reconciler on them.
const ScheduledEventDetailType = "Scheduled Event"

// CACheckEnv lists the environment variables of the scheduled tenant-CA check.
var CACheckEnv = []string{EnvCACertificateIDs, EnvProvisionedBy}

// The registry teardown custom resource: its type and properties.
const (
	TeardownResourceType = "Custom::RegistryTeardown"
	PropCACertificateIDs = "CaCertificateIds"
	PropPolicyName       = "DevicePolicyName"
	PropProvisionedBy    = "ProvisionedBy"
	PropRetainRegistry   = "RetainRegistry"
	// PropRetainDevicesLegacy is the name PropRetainRegistry had before retainDevices became retainRegistry: a
	// teardown resource deployed before the rename still carries it, and "true" there still means keep.
	PropRetainDevicesLegacy = "RetainDevices"
)

// TeardownProps lists the teardown resource's properties.
var TeardownProps = []string{PropCACertificateIDs, PropPolicyName, PropProvisionedBy, PropRetainRegistry}

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

// RegisteredEvent is the payload AWS IoT publishes on RegisteredEventTopic(caCertificateId) when it
// auto-registers a device certificate signed by a registered CA (AWS IoT Developer Guide, "Just-in-time
// registration"). The topic rule passes it to the JITR function unchanged.
type RegisteredEvent struct {
	CertificateID     string      `json:"certificateId"`
	CACertificateID   string      `json:"caCertificateId"`
	Timestamp         EpochMillis `json:"timestamp"`
	CertificateStatus string      `json:"certificateStatus"`
	AWSAccountID      string      `json:"awsAccountId"`
	// CertificateRegistrationTimestamp is often null in real events; zero means absent.
	CertificateRegistrationTimestamp EpochMillis `json:"certificateRegistrationTimestamp"`
}

// EpochMillis is a time in milliseconds since the Unix epoch. It decodes from a JSON number, a quoted number or
// null (zero), because AWS IoT event payloads are not consistent about it, and encodes as a number.
type EpochMillis int64

// UnmarshalJSON accepts 1541544880127, "1541544880127" and null.
func (m *EpochMillis) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) {
		*m = 0
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		if s == "" {
			*m = 0
			return nil
		}
		data = []byte(s)
	}
	v, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %s is not a whole number of milliseconds", data)
	}
	*m = EpochMillis(v)
	return nil
}

// DeviceObjectPrefix starts every S3 key of a device's own objects: devices/<thingName>/<name>, which only that
// device may be given a URL for (PUT or GET).
const DeviceObjectPrefix = "devices/"

// FleetObjectPrefix starts every S3 key of an object the whole fleet reads: fleet/<name>, put there by the operator;
// a device may be given a GET URL for it (the image's baked URL, or one asked for with S3URLScopeFleet), never a PUT.
const FleetObjectPrefix = S3URLScopeFleet + "/"

// The S3 URL service on MQTT: a device publishes a request on <root>/<thing>/s3/url, the presign function answers on
// <root>/<thing>/s3/url/accepted or <root>/<thing>/s3/url/rejected (the topic rule's SQL takes the thing from the
// topic, which the device policy lets only that device publish on).
const (
	S3URLTopicSuffix  = "s3/url"
	ReplyAccepted     = "accepted"
	ReplyRejected     = "rejected"
	S3OperationPut    = "PUT"
	S3OperationGet    = "GET"
	S3URLRuleThingVar = "topicThing" // the rule's SELECT adds the thing name under this key
)

// The scopes of a URL request (its "scope" field): which prefix its name is under.
const (
	S3URLScopeDevice = ""      // the device's own objects, DeviceObjectPrefix<thing>/<name> (PUT or GET)
	S3URLScopeFleet  = "fleet" // the fleet's shared read-only objects, FleetObjectPrefix<name> (GET only)
)

// S3URLRequestTopic is the topic a device asks for a URL on.
func S3URLRequestTopic(root, thing string) string { return root + "/" + thing + "/" + S3URLTopicSuffix }

// S3URLReplyTopic is the topic the answer to a device's request arrives on (accepted or rejected).
func S3URLReplyTopic(root, thing, outcome string) string {
	return S3URLRequestTopic(root, thing) + "/" + outcome
}

// S3URLRequest is what a device publishes on its request topic.
type S3URLRequest struct {
	Operation     string `json:"operation"`               // S3OperationPut or S3OperationGet
	Scope         string `json:"scope,omitempty"`         // S3URLScopeDevice (omitted) or S3URLScopeFleet
	Name          string `json:"name"`                    // object name under devices/<thing>/, or fleet/ for S3URLScopeFleet
	ContentLength int64  `json:"contentLength,omitempty"` // PUT only: the exact number of bytes the device sends
	ClientToken   string `json:"clientToken,omitempty"`   // echoed in the reply, so the device matches it to its request
}

// S3URLReply is the answer on the accepted topic (URL set) or on the rejected topic (Reason set).
type S3URLReply struct {
	ClientToken   string `json:"clientToken,omitempty"`
	URL           string `json:"url,omitempty"`
	Method        string `json:"method,omitempty"`
	Key           string `json:"key,omitempty"`
	ContentLength int64  `json:"contentLength,omitempty"`
	ExpiresAt     int64  `json:"expiresAt,omitempty"` // Unix seconds
	Reason        string `json:"reason,omitempty"`
}

// TelemetryTopic is the topic a device publishes its telemetry on, <root>/<thing>/telemetry (the device policy
// lets only that device publish under <root>/<thing>/).
func TelemetryTopic(root, thing string) string {
	return root + "/" + thing + "/" + TelemetryTopicLeaf
}

// ShadowTopic is the topic of one operation on a thing's classic shadow, $aws/things/<thing>/shadow/<op>, op being
// "update", "get", or either followed by "/accepted" or "/rejected", or "update/delta" (AWS IoT Developer Guide,
// "Device Shadow MQTT topics"; AWS IoT reserves the names).
func ShadowTopic(thing, op string) string { return "$aws/things/" + thing + "/shadow/" + op }

// Environment variables the stack gives the presign Lambda.
const (
	EnvBucketName       = "BUCKET_NAME"                // the bucket the devices' objects live in
	EnvIotDataEndpoint  = "IOT_DATA_ENDPOINT"          // host[:port] of the account's AWS IoT data endpoint (iot:Data-ATS)
	EnvDeviceTopicRoot  = "DEVICE_TOPIC_ROOT"          // first level of each device's own topic tree
	EnvPresignMaxBytes  = "PRESIGN_MAX_PUT_BYTES"      // largest PUT a URL is signed for
	EnvPresignExpirySec = "PRESIGN_URL_EXPIRY_SECONDS" // lifetime of a URL
)

// PresignEnv lists the presign Lambda's environment variables (it also reads EnvProvisionedBy for its metrics).
var PresignEnv = []string{EnvBucketName, EnvIotDataEndpoint, EnvDeviceTopicRoot, EnvPresignMaxBytes, EnvPresignExpirySec, EnvProvisionedBy}

// The local emulator's AWS IoT control-plane quotas (testkit/moto/quotas.py, in the moto process): its settings,
// the header that exempts the emulator's own registry reads from them, and the figures' endpoints.
const (
	EnvIoTQuotas           = "IOT_QUOTAS"                 // JSON object API → requests per second, over the AWS defaults; 0 lifts one
	EnvIoTQuotaScale       = "IOT_QUOTA_SCALE"            // multiplies every rate (the storm benchmark's STORM_SCALE)
	EnvIoTQuotasOff        = "IOT_QUOTAS_OFF"             // "1" lifts every quota
	EmulatorInternalHeader = "X-Sphere-Emulator-Internal" // on a request the quotas neither count nor throttle
	QuotasPath             = "/_sphere/quotas"            // GET: the figures
	QuotasResetPath        = "/_sphere/quotas/reset"      // POST: zero the figures, refill the buckets
	QuotasScalePath        = "/_sphere/quotas/scale"      // POST {"scale": K}: every limit K × its start value
)

// The account-settings custom resource (fleet indexing and AWS IoT logging, account-wide settings the stack widens
// and puts back on delete): its type and properties.
const (
	AccountSettingsResourceType = "Custom::IoTAccountSettings"
	PropLogLevel                = "LogLevel"   // AWS IoT v2 log level the stack needs (ERROR, WARN, INFO, DEBUG), or "" for none
	PropLogRoleARN              = "LogRoleArn" // the role AWS IoT logs with when the account has no logging of its own
)

// AccountSettingsProps lists the account-settings resource's properties.
var AccountSettingsProps = []string{PropLogLevel, PropLogRoleARN}

// IndexedThingAttributes are the thing attributes the stack adds to fleet indexing as custom fields (type String):
// fleetctl, the fleet metric and its alarm select the stack's devices by AttrProvisionedBy, and `fleetctl stale`
// finds the never-connected ones by AttrProvisionedAt (RFC 3339 in UTC sorts as time).
var IndexedThingAttributes = []string{AttrProvisionedBy, AttrProvisionedAt}

// ThingAttributeField is the fleet-indexing field of a thing attribute, e.g. attributes.provisionedBy.
func ThingAttributeField(attr string) string { return "attributes." + attr }

// ConnectivityControlPath is the local emulator's control endpoint (testkit/moto/indexing.py) through which its
// MQTT broker reports a client's connection state to the fleet index: POST {"clientId", "connected",
// "timestamp" (epoch ms), "disconnectReason"} or {"clients": [...]}; GET ?clientId= reads it back.
const ConnectivityControlPath = "/emulator-api/iot/connectivity"
