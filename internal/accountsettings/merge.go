// Package accountsettings is the logic of the Custom::IoTAccountSettings resource: AWS IoT fleet indexing and AWS
// IoT logging (v2) are settings of the account and Region, not of a stack, so the stack widens them to what the
// product needs and, on delete, puts back what it added — never narrowing what the account had, never switching off
// what it had on. The merge rules are pure functions (this file); the handler (resource.go) reads, merges, writes,
// and keeps what it must undo in the resource's physical id.
package accountsettings

import (
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// Added is what the stack changed in the thing indexing configuration, so Delete can take exactly that back.
type Added struct {
	Registry     bool     `json:"r,omitempty"` // thingIndexingMode was OFF, set to REGISTRY
	Connectivity bool     `json:"c,omitempty"` // thingConnectivityIndexingMode was OFF, set to STATUS
	Fields       []string `json:"f,omitempty"` // custom fields the stack added (names)
}

// WidenIndexing returns cur widened to what the product needs: registry indexing (REGISTRY, or more if the account
// has it), connectivity indexing (STATUS), and fields as custom fields (a field the account already has, by name,
// is kept with its type). Everything else (shadow, Device Defender, named-shadow modes, the filter) is kept as it
// is. ManagedFields are AWS's and are not sent back.
func WidenIndexing(cur types.ThingIndexingConfiguration, fields []types.Field) (types.ThingIndexingConfiguration, Added) {
	out := cur
	out.ManagedFields = nil
	var added Added
	if out.ThingIndexingMode == "" || out.ThingIndexingMode == types.ThingIndexingModeOff {
		out.ThingIndexingMode, added.Registry = types.ThingIndexingModeRegistry, true
	}
	if out.ThingConnectivityIndexingMode == "" || out.ThingConnectivityIndexingMode == types.ThingConnectivityIndexingModeOff {
		out.ThingConnectivityIndexingMode, added.Connectivity = types.ThingConnectivityIndexingModeStatus, true
	}
	out.CustomFields = slices.Clone(cur.CustomFields)
	for _, f := range fields {
		if !hasField(out.CustomFields, aws.ToString(f.Name)) {
			out.CustomFields = append(out.CustomFields, f)
			added.Fields = append(added.Fields, aws.ToString(f.Name))
		}
	}
	return out, added
}

// RevertIndexing takes back from cur what added records, and only that: a mode the stack switched on is switched
// off again only if it still has the value the stack set (someone who widened it further since keeps it), and the
// stack's custom fields are removed. Connectivity indexing needs registry indexing, so both go off together.
func RevertIndexing(cur types.ThingIndexingConfiguration, added Added) types.ThingIndexingConfiguration {
	out := cur
	out.ManagedFields = nil
	if added.Connectivity && out.ThingConnectivityIndexingMode == types.ThingConnectivityIndexingModeStatus {
		out.ThingConnectivityIndexingMode = types.ThingConnectivityIndexingModeOff
	}
	if added.Registry && out.ThingIndexingMode == types.ThingIndexingModeRegistry &&
		(out.ThingConnectivityIndexingMode == "" || out.ThingConnectivityIndexingMode == types.ThingConnectivityIndexingModeOff) {
		out.ThingIndexingMode = types.ThingIndexingModeOff
	}
	// Non-nil, so an empty list is sent as [] and clears the fields rather than leaving them as they are.
	out.CustomFields = []types.Field{}
	for _, f := range cur.CustomFields {
		if !slices.Contains(added.Fields, aws.ToString(f.Name)) {
			out.CustomFields = append(out.CustomFields, f)
		}
	}
	return out
}

// SameIndexing reports whether writing b over a would change nothing the stack touches.
func SameIndexing(a, b types.ThingIndexingConfiguration) bool {
	if a.ThingIndexingMode != b.ThingIndexingMode || a.ThingConnectivityIndexingMode != b.ThingConnectivityIndexingMode ||
		len(a.CustomFields) != len(b.CustomFields) {
		return false
	}
	for _, f := range a.CustomFields {
		if !hasField(b.CustomFields, aws.ToString(f.Name)) {
			return false
		}
	}
	return true
}

func hasField(fields []types.Field, name string) bool {
	return slices.ContainsFunc(fields, func(f types.Field) bool { return aws.ToString(f.Name) == name })
}

// Logging is the account's AWS IoT v2 logging options (GetV2LoggingOptions), or Configured false when it never had
// any (NotConfiguredException).
type Logging struct {
	Configured bool           `json:"c,omitempty"`
	RoleARN    string         `json:"r,omitempty"`
	Level      types.LogLevel `json:"l,omitempty"`
	Disabled   bool           `json:"d,omitempty"`
}

// verbosity orders the log levels: DISABLED logs nothing, DEBUG everything.
var verbosity = map[types.LogLevel]int{types.LogLevelDisabled: 0, types.LogLevelError: 1, types.LogLevelWarn: 2,
	types.LogLevelInfo: 3, types.LogLevelDebug: 4}

// Logs reports whether l writes any log line.
func (l Logging) Logs() bool { return l.Configured && !l.Disabled && verbosity[l.Level] > 0 }

// WidenLogging returns the logging options that give the product at least level: the account's own options when
// they already log at least as much (their role kept), the account's role at the higher level when it logs less,
// and role at level when the account does not log.
func WidenLogging(cur Logging, level types.LogLevel, role string) Logging {
	if cur.Logs() {
		if verbosity[cur.Level] < verbosity[level] {
			cur.Level = level
		}
		return cur
	}
	return Logging{Configured: true, RoleARN: role, Level: level}
}

// RestoreLogging is what Delete writes back: prev, or, for an account that had never configured logging (AWS has no
// call to unconfigure it), logging switched off with no role, which logs nothing as before. ok is false when the
// account's options are no longer those the stack set (set): someone changed them since, and they are left alone.
func RestoreLogging(cur, prev, set Logging) (Logging, bool) {
	if cur.RoleARN != set.RoleARN || cur.Level != set.Level || cur.Disabled != set.Disabled {
		return Logging{}, false
	}
	if !prev.Configured {
		return Logging{Configured: true, Level: types.LogLevelDisabled, Disabled: true}, true
	}
	return prev, true
}
