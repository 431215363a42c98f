// Package iotquota is the one table of AWS IoT Core's default control-plane rates the project relies on: the JITR
// function paces itself to a share of them (internal/config), fleetctl to another share (internal/operate via
// internal/iotapi), and the emulator enforces the same figures (testkit/moto/quotas.py, held to this table by
// TestQuotaTableMatchesGo in testkit/motoserver). The figures are AWS's defaults per account and Region; every one
// is adjustable in Service Quotas (service code iotcore, quota "<API> API TPS"), so an account may have more. It
// imports only the standard library, so the CDK app, the Lambdas and the tools can all read it.
package iotquota

import (
	"fmt"
	"maps"
)

// Source is where the figures come from.
const Source = `AWS General Reference, "AWS IoT Core endpoints and quotas", the control-plane API TPS table ` +
	`(https://docs.aws.amazon.com/general/latest/gr/iot-core.html); Service Quotas, service code iotcore`

// defaults are requests per second per account and Region, by API operation name, of the AWS IoT control-plane
// calls the project makes, each with its Service Quotas code: `aws service-quotas get-aws-default-service-quota
// --service-code iotcore --quota-code <code>` prints AWS's current default, `get-service-quota` the account's.
// Checked against a published listing of Service Quotas' defaults: the thing-registry figures (marked ✓). Not
// confirmed at the last edit (the figures the design notes took from the General Reference; no stored copy of the
// table showed their value): the certificate and policy figures. Check them before sizing a deployment on them.
var defaults = map[string]float64{
	"DescribeCertificate":  10,  // L-FC864907
	"UpdateCertificate":    10,  // L-77B523DC
	"DeleteCertificate":    10,  // L-EEB8F0B1
	"ListCertificatesByCA": 10,  // L-5A0AFD83
	"AttachPolicy":         15,  // L-CA7D4E3E
	"DetachPolicy":         15,  // L-EC88D510
	"CreateThing":          100, // L-64CBACAC ✓
	"UpdateThing":          100, // L-211F680E ✓
	"DescribeThing":        350, // L-0EF0F5EE ✓
	"ListThingPrincipals":  10,  // L-FC3EF4D9 ✓
	"AttachThingPrincipal": 100, // L-F64D1AA6 ✓
	"DetachThingPrincipal": 100, // L-B5EE4A16 ✓
}

// Unlisted is the rate to assume for an AWS IoT control-plane operation without an entry in the table: the lowest
// default of the table (ListThings has it too, L-57AAC135 ✓), so a client paced to it stays under any listed
// operation's default.
const Unlisted = 10

// Defaults returns a copy of the table: requests per second by API operation name.
func Defaults() map[string]float64 { return maps.Clone(defaults) }

// Rate is the default rate of one operation, and whether the table lists it.
func Rate(operation string) (float64, bool) {
	r, ok := defaults[operation]
	return r, ok
}

// Select returns the defaults of the named operations. It panics on an operation the table does not list: callers
// name the operations they make in their source, so a typo is a programming error that every test catches.
func Select(operations ...string) map[string]float64 {
	out := make(map[string]float64, len(operations))
	for _, op := range operations {
		r, ok := defaults[op]
		if !ok {
			panic(fmt.Sprintf("iotquota: %s is not in the table of AWS IoT default quotas", op))
		}
		out[op] = r
	}
	return out
}
