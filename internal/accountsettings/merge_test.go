package accountsettings

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

func field(name string, t types.FieldType) types.Field {
	return types.Field{Name: aws.String(name), Type: t}
}

func names(fs []types.Field) []string {
	var out []string
	for _, f := range fs {
		out = append(out, aws.ToString(f.Name)+":"+string(f.Type))
	}
	return out
}

var ours = []types.Field{field("attributes.provisionedBy", types.FieldTypeString), field("attributes.provisionedAt", types.FieldTypeString)}

func TestWidenIndexingThenRevertPutsBack(t *testing.T) {
	shadowFilter := &types.IndexingFilter{NamedShadowNames: []string{"config"}}
	cases := []struct {
		name       string
		cur        types.ThingIndexingConfiguration
		wantMode   types.ThingIndexingMode
		wantConn   types.ThingConnectivityIndexingMode
		wantFields []string
		wantAdded  Added
	}{
		{"off becomes registry and connectivity with our fields", types.ThingIndexingConfiguration{ThingIndexingMode: types.ThingIndexingModeOff},
			types.ThingIndexingModeRegistry, types.ThingConnectivityIndexingModeStatus,
			[]string{"attributes.provisionedBy:String", "attributes.provisionedAt:String"},
			Added{Registry: true, Connectivity: true, Fields: []string{"attributes.provisionedBy", "attributes.provisionedAt"}}},
		{"empty answer counts as off", types.ThingIndexingConfiguration{},
			types.ThingIndexingModeRegistry, types.ThingConnectivityIndexingModeStatus,
			[]string{"attributes.provisionedBy:String", "attributes.provisionedAt:String"},
			Added{Registry: true, Connectivity: true, Fields: []string{"attributes.provisionedBy", "attributes.provisionedAt"}}},
		{"registry gains connectivity", types.ThingIndexingConfiguration{ThingIndexingMode: types.ThingIndexingModeRegistry},
			types.ThingIndexingModeRegistry, types.ThingConnectivityIndexingModeStatus,
			[]string{"attributes.provisionedBy:String", "attributes.provisionedAt:String"},
			Added{Connectivity: true, Fields: []string{"attributes.provisionedBy", "attributes.provisionedAt"}}},
		{"registry and shadow kept, custom fields kept, ours added",
			types.ThingIndexingConfiguration{ThingIndexingMode: types.ThingIndexingModeRegistryAndShadow,
				ThingConnectivityIndexingMode: types.ThingConnectivityIndexingModeStatus,
				NamedShadowIndexingMode:       types.NamedShadowIndexingModeOn, Filter: shadowFilter,
				CustomFields: []types.Field{field("attributes.site", types.FieldTypeString)}},
			types.ThingIndexingModeRegistryAndShadow, types.ThingConnectivityIndexingModeStatus,
			[]string{"attributes.site:String", "attributes.provisionedBy:String", "attributes.provisionedAt:String"},
			Added{Fields: []string{"attributes.provisionedBy", "attributes.provisionedAt"}}},
		{"a field the account has is kept with its type",
			types.ThingIndexingConfiguration{ThingIndexingMode: types.ThingIndexingModeRegistry, ThingConnectivityIndexingMode: types.ThingConnectivityIndexingModeStatus,
				CustomFields: []types.Field{field("attributes.provisionedBy", types.FieldTypeString), field("attributes.provisionedAt", types.FieldTypeString)}},
			types.ThingIndexingModeRegistry, types.ThingConnectivityIndexingModeStatus,
			[]string{"attributes.provisionedBy:String", "attributes.provisionedAt:String"}, Added{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, added := WidenIndexing(c.cur, ours)
			if got.ThingIndexingMode != c.wantMode || got.ThingConnectivityIndexingMode != c.wantConn {
				t.Errorf("modes = %s/%s, want %s/%s", got.ThingIndexingMode, got.ThingConnectivityIndexingMode, c.wantMode, c.wantConn)
			}
			if !slices.Equal(names(got.CustomFields), c.wantFields) {
				t.Errorf("custom fields = %v, want %v", names(got.CustomFields), c.wantFields)
			}
			if got.NamedShadowIndexingMode != c.cur.NamedShadowIndexingMode || got.Filter != c.cur.Filter {
				t.Errorf("shadow settings changed: %s %v", got.NamedShadowIndexingMode, got.Filter)
			}
			if added.Registry != c.wantAdded.Registry || added.Connectivity != c.wantAdded.Connectivity || !slices.Equal(added.Fields, c.wantAdded.Fields) {
				t.Errorf("added = %+v, want %+v", added, c.wantAdded)
			}
			back := RevertIndexing(got, added)
			wantMode, wantConn := c.cur.ThingIndexingMode, c.cur.ThingConnectivityIndexingMode
			if wantMode == "" {
				wantMode = types.ThingIndexingModeOff
			}
			if wantConn == "" {
				wantConn = types.ThingConnectivityIndexingModeOff
			}
			if back.ThingIndexingMode != wantMode || back.ThingConnectivityIndexingMode != wantConn ||
				!slices.Equal(names(back.CustomFields), names(c.cur.CustomFields)) {
				t.Errorf("put back = %s/%s %v, want %s/%s %v", back.ThingIndexingMode, back.ThingConnectivityIndexingMode,
					names(back.CustomFields), wantMode, wantConn, names(c.cur.CustomFields))
			}
		})
	}
}

// What someone widened after the stack's create stays: revert takes back only a mode still at the stack's value.
func TestRevertIndexingKeepsLaterWidening(t *testing.T) {
	cur := types.ThingIndexingConfiguration{ThingIndexingMode: types.ThingIndexingModeRegistryAndShadow,
		ThingConnectivityIndexingMode: types.ThingConnectivityIndexingModeStatus,
		CustomFields:                  append([]types.Field{field("attributes.site", types.FieldTypeString)}, ours...)}
	back := RevertIndexing(cur, Added{Registry: true, Connectivity: true, Fields: []string{"attributes.provisionedBy", "attributes.provisionedAt"}})
	if back.ThingIndexingMode != types.ThingIndexingModeRegistryAndShadow {
		t.Errorf("thingIndexingMode = %s, want the REGISTRY_AND_SHADOW set since", back.ThingIndexingMode)
	}
	if back.ThingConnectivityIndexingMode != types.ThingConnectivityIndexingModeOff {
		t.Errorf("connectivity = %s, want OFF (the stack switched it on)", back.ThingConnectivityIndexingMode)
	}
	if got := names(back.CustomFields); !slices.Equal(got, []string{"attributes.site:String"}) {
		t.Errorf("custom fields = %v, want the account's own only", got)
	}
}

func TestWidenAndRestoreLogging(t *testing.T) {
	const ourRole, theirRole = "arn:aws:iam::1:role/ours", "arn:aws:iam::1:role/theirs"
	cases := []struct {
		name string
		prev Logging
		set  Logging
		back Logging
	}{
		{"never configured: ours, then switched off", Logging{},
			Logging{Configured: true, RoleARN: ourRole, Level: types.LogLevelWarn},
			Logging{Configured: true, Level: types.LogLevelDisabled, Disabled: true}},
		{"disabled: ours, then the account's disabled options", Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelError, Disabled: true},
			Logging{Configured: true, RoleARN: ourRole, Level: types.LogLevelWarn},
			Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelError, Disabled: true}},
		{"ERROR: raised to WARN with their role, then ERROR again", Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelError},
			Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelWarn},
			Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelError}},
		{"DEBUG: kept", Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelDebug},
			Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelDebug},
			Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelDebug}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set := WidenLogging(c.prev, types.LogLevelWarn, ourRole)
			if set != c.set {
				t.Errorf("widened = %+v, want %+v", set, c.set)
			}
			back, ok := RestoreLogging(set, c.prev, set)
			if !ok || back != c.back {
				t.Errorf("restored = %+v (%v), want %+v", back, ok, c.back)
			}
		})
	}
	// Changed by someone else since: left alone.
	set := WidenLogging(Logging{}, types.LogLevelWarn, ourRole)
	if _, ok := RestoreLogging(Logging{Configured: true, RoleARN: theirRole, Level: types.LogLevelInfo}, Logging{}, set); ok {
		t.Error("options someone else set since were restored over")
	}
}

func TestPhysicalIDRoundTrip(t *testing.T) {
	s := state{Indexing: Added{Registry: true, Fields: []string{"attributes.provisionedBy"}},
		Logging: Logging{Configured: true, RoleARN: "arn:aws:iam::123456789012:role/x", Level: types.LogLevelError}}
	id, err := encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(id)
	if err != nil || got.Logging != s.Logging || !got.Indexing.Registry || !slices.Equal(got.Indexing.Fields, s.Indexing.Fields) {
		t.Errorf("decode(encode(%+v)) = %+v, %v", s, got, err)
	}
	if _, err := decode("SphereJitr-Settings-1234"); err == nil {
		t.Error("a placeholder physical id decoded")
	}
}
