package accountsettings_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/accountsettings"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

var moto *motoserver.Server

func TestMain(m *testing.M) { os.Exit(motoserver.RunTests(m, &moto)) }

const logRole = "arn:aws:iam::" + motoserver.AccountID + ":role/SphereJitr-IoTLogging"

func iotClient(t *testing.T) *iot.Client {
	t.Helper()
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	return iot.NewFromConfig(aws.Config{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")})
}

func event(kind cfn.RequestType, physicalID, level string) cfn.Event {
	props := map[string]any{"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x"}
	if level != "" {
		props[contract.PropLogLevel], props[contract.PropLogRoleARN] = level, logRole
	}
	return cfn.Event{RequestType: kind, PhysicalResourceID: physicalID, LogicalResourceID: "AccountSettings",
		ResourceType: contract.AccountSettingsResourceType, ResourceProperties: props, OldResourceProperties: props}
}

func fieldNames(fs []types.Field) []string {
	var out []string
	for _, f := range fs {
		out = append(out, aws.ToString(f.Name))
	}
	slices.Sort(out)
	return out
}

// Against moto (with testkit/moto/indexing.py): Create widens the account's settings, Delete puts back exactly
// what the account had, whatever that was.
func TestCreateThenDeletePutsTheAccountBack(t *testing.T) {
	cases := []struct {
		name    string
		before  *types.ThingIndexingConfiguration // nil: never configured (OFF)
		logging *iot.SetV2LoggingOptionsInput     // nil: never configured
		level   string
		want    types.ThingIndexingMode
	}{
		{"indexing off, logging never configured, WARN asked", nil, nil, "WARN", types.ThingIndexingModeRegistry},
		{"registry and shadow with a custom field, logging DEBUG of its own", &types.ThingIndexingConfiguration{
			ThingIndexingMode: types.ThingIndexingModeRegistryAndShadow, ThingConnectivityIndexingMode: types.ThingConnectivityIndexingModeOff,
			CustomFields: []types.Field{{Name: aws.String("attributes.site"), Type: types.FieldTypeString}}},
			&iot.SetV2LoggingOptionsInput{DefaultLogLevel: types.LogLevelDebug, RoleArn: aws.String("arn:aws:iam::123456789012:role/theirs")},
			"WARN", types.ThingIndexingModeRegistryAndShadow},
		{"no logging asked", nil, nil, "", types.ThingIndexingModeRegistry},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			api := iotClient(t)
			ctx := context.Background()
			if c.before != nil {
				if _, err := api.UpdateIndexingConfiguration(ctx, &iot.UpdateIndexingConfigurationInput{ThingIndexingConfiguration: c.before}); err != nil {
					t.Fatal(err)
				}
			}
			if c.logging != nil {
				if _, err := api.SetV2LoggingOptions(ctx, c.logging); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := api.GetIndexingConfiguration(ctx, &iot.GetIndexingConfigurationInput{})
			logBefore, logErr := api.GetV2LoggingOptions(ctx, &iot.GetV2LoggingOptionsInput{})
			r := accountsettings.New(api, slog.New(slog.NewTextHandler(io.Discard, nil)))

			id, _, err := r.HandleEvent(ctx, event(cfn.RequestCreate, "", c.level))
			if err != nil {
				t.Fatal(err)
			}
			during, _ := api.GetIndexingConfiguration(ctx, &iot.GetIndexingConfigurationInput{})
			ti := during.ThingIndexingConfiguration
			if ti.ThingIndexingMode != c.want || ti.ThingConnectivityIndexingMode != types.ThingConnectivityIndexingModeStatus {
				t.Errorf("after create: %s/%s, want %s/STATUS", ti.ThingIndexingMode, ti.ThingConnectivityIndexingMode, c.want)
			}
			for _, f := range []string{"attributes.provisionedBy", "attributes.provisionedAt"} {
				if !slices.Contains(fieldNames(ti.CustomFields), f) {
					t.Errorf("after create: custom fields %v lack %s", fieldNames(ti.CustomFields), f)
				}
			}
			logDuring, err := api.GetV2LoggingOptions(ctx, &iot.GetV2LoggingOptionsInput{})
			switch {
			case c.level == "" && (err == nil) != (logErr == nil):
				t.Errorf("logging not asked for, but its configuration changed: %v", err)
			case c.level != "" && (err != nil || logDuring.DisableAllLogs || logDuring.DefaultLogLevel == types.LogLevelError):
				t.Errorf("after create: logging %+v %v, want at least %s", logDuring, err, c.level)
			case c.logging != nil && (logDuring.DefaultLogLevel != types.LogLevelDebug || aws.ToString(logDuring.RoleArn) != aws.ToString(c.logging.RoleArn)):
				t.Errorf("after create: the account's DEBUG logging became %+v", logDuring)
			}

			if _, _, err := r.HandleEvent(ctx, event(cfn.RequestDelete, id, c.level)); err != nil {
				t.Fatal(err)
			}
			after, _ := api.GetIndexingConfiguration(ctx, &iot.GetIndexingConfigurationInput{})
			a, b := after.ThingIndexingConfiguration, before.ThingIndexingConfiguration
			if a.ThingIndexingMode != b.ThingIndexingMode || a.ThingConnectivityIndexingMode != b.ThingConnectivityIndexingMode ||
				!slices.Equal(fieldNames(a.CustomFields), fieldNames(b.CustomFields)) {
				t.Errorf("after delete: %s/%s %v, want the account's %s/%s %v", a.ThingIndexingMode, a.ThingConnectivityIndexingMode,
					fieldNames(a.CustomFields), b.ThingIndexingMode, b.ThingConnectivityIndexingMode, fieldNames(b.CustomFields))
			}
			logAfter, err := api.GetV2LoggingOptions(ctx, &iot.GetV2LoggingOptionsInput{})
			switch {
			case logErr == nil && (err != nil || logAfter.DefaultLogLevel != logBefore.DefaultLogLevel || aws.ToString(logAfter.RoleArn) != aws.ToString(logBefore.RoleArn)):
				t.Errorf("after delete: logging %+v %v, want the account's %+v", logAfter, err, logBefore)
			case logErr != nil && c.level != "" && (err != nil || !logAfter.DisableAllLogs):
				t.Errorf("after delete: logging %+v %v, want switched off (it was never configured)", logAfter, err)
			}
		})
	}
}

// snapshotTemplate is the stack as `cdk synth` writes it: the snapshot the stacks tests keep equal to the synthesis.
const snapshotTemplate = "../../stacks/testdata/SphereJitr.template.snapshot.json"

// accountSettingsFunction is the logical id of the function serving the account-settings resource.
func accountSettingsFunction(t *stacktemplate.Template) (string, error) {
	for _, id := range t.OfType(contract.AccountSettingsResourceType) {
		if fn := stacktemplate.ReferencedResource(t.Prop(id, "ServiceToken")); t.Resources[fn].Type == "AWS::Lambda::Function" {
			return fn, nil
		}
	}
	return "", fmt.Errorf("template has no %s served by a function of the template", contract.AccountSettingsResourceType)
}

// The function's role, as synthesized, lets it do its create and delete in moto, which enforces IAM for it; and
// without one of its grants it is refused (the check can fail).
func TestTheRoleAllowsCreateAndDelete(t *testing.T) {
	ctx := context.Background()
	for _, broken := range []bool{false, true} {
		if err := moto.Reset(); err != nil {
			t.Fatal(err)
		}
		var edit func(*stacktemplate.Template)
		if broken {
			edit = func(tm *stacktemplate.Template) {
				for _, id := range tm.OfType("AWS::IAM::Policy") {
					doc := asMap(asMap(tm.Resources[id].Properties)["PolicyDocument"])
					for _, st := range doc["Statement"].([]any) {
						s := asMap(st)
						if strings.Contains(fmt.Sprint(s["Action"]), "iot:UpdateIndexingConfiguration") {
							s["Action"] = []any{"iot:GetIndexingConfiguration", "iot:GetV2LoggingOptions", "iot:SetV2LoggingOptions"}
						}
					}
				}
			}
		}
		p, err := stacktemplate.SnapshotRole{Template: snapshotTemplate, Stack: "SphereJitrSettingsTest", Edit: edit, Function: accountSettingsFunction}.Register(ctx, moto)
		if err != nil {
			t.Fatal(err)
		}
		api := iot.NewFromConfig(aws.Config{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: p.Credentials()})
		r := accountsettings.New(api, slog.New(slog.NewTextHandler(io.Discard, nil)))
		id, _, err := r.HandleEvent(ctx, event(cfn.RequestCreate, "", ""))
		if broken {
			if err == nil || !strings.Contains(err.Error(), "AccessDenied") {
				t.Errorf("create without iot:UpdateIndexingConfiguration: %v, want AccessDenied", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("create as the function's role: %v", err)
		}
		if _, _, err := r.HandleEvent(ctx, event(cfn.RequestDelete, id, "")); err != nil {
			t.Fatalf("delete as the function's role: %v", err)
		}
	}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
