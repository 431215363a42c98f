package accountsettings

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// IoTAPI is the part of AWS IoT the resource calls, with the SDK's signatures.
type IoTAPI interface {
	GetIndexingConfiguration(ctx context.Context, in *iot.GetIndexingConfigurationInput, optFns ...func(*iot.Options)) (*iot.GetIndexingConfigurationOutput, error)
	UpdateIndexingConfiguration(ctx context.Context, in *iot.UpdateIndexingConfigurationInput, optFns ...func(*iot.Options)) (*iot.UpdateIndexingConfigurationOutput, error)
	GetV2LoggingOptions(ctx context.Context, in *iot.GetV2LoggingOptionsInput, optFns ...func(*iot.Options)) (*iot.GetV2LoggingOptionsOutput, error)
	SetV2LoggingOptions(ctx context.Context, in *iot.SetV2LoggingOptionsInput, optFns ...func(*iot.Options)) (*iot.SetV2LoggingOptionsOutput, error)
}

var _ IoTAPI = (*iot.Client)(nil)

// Fields are the custom fields the stack adds to fleet indexing: the thing attributes the product writes.
func Fields() []types.Field {
	out := make([]types.Field, 0, len(contract.IndexedThingAttributes))
	for _, a := range contract.IndexedThingAttributes {
		out = append(out, types.Field{Name: aws.String(contract.ThingAttributeField(a)), Type: types.FieldTypeString})
	}
	return out
}

// Resource handles the custom resource's events.
type Resource struct {
	iot IoTAPI
	log *slog.Logger
}

// New returns the handler.
func New(api IoTAPI, log *slog.Logger) *Resource { return &Resource{iot: api, log: log} }

// state is what the resource must remember to put the account back: it lives in the physical id, the one value
// CloudFormation hands back on Delete. It is written at Create and never changes, because a new physical id on
// Update would make CloudFormation delete the old resource, and so undo the settings.
type state struct {
	Indexing Added   `json:"i"`
	Logging  Logging `json:"l"` // the account's logging before the stack
}

const idPrefix = "iot-account-settings:"

// maxPhysicalID is CloudFormation's limit on a physical resource id.
const maxPhysicalID = 1024

func encode(s state) (string, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	id := idPrefix + base64.RawURLEncoding.EncodeToString(data)
	if len(id) > maxPhysicalID {
		return "", fmt.Errorf("the account's previous settings take %d characters, more than a physical id holds (%d)", len(id), maxPhysicalID)
	}
	return id, nil
}

func decode(id string) (state, error) {
	var s state
	rest, ok := strings.CutPrefix(id, idPrefix)
	if !ok {
		return s, fmt.Errorf("physical id %q was not written by this resource", id)
	}
	data, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return s, fmt.Errorf("physical id %q: %w", id, err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("physical id %q: %w", id, err)
	}
	return s, nil
}

// want is what the resource's properties ask for.
type want struct {
	level types.LogLevel // "" for no logging
	role  string
}

func wantOf(props map[string]any) (want, error) {
	level, _ := props[contract.PropLogLevel].(string)
	role, _ := props[contract.PropLogRoleARN].(string)
	w := want{level: types.LogLevel(strings.ToUpper(level)), role: role}
	if w.level == "" {
		return w, nil
	}
	if _, ok := verbosity[w.level]; !ok || w.level == types.LogLevelDisabled {
		return w, fmt.Errorf("%s %q: want ERROR, WARN, INFO or DEBUG", contract.PropLogLevel, level)
	}
	if role == "" {
		return w, fmt.Errorf("%s %s needs %s", contract.PropLogLevel, level, contract.PropLogRoleARN)
	}
	return w, nil
}

// HandleEvent is the custom resource's handler (wrap it with cfn.LambdaWrap). Create records the account's
// settings in the physical id and widens them; Update widens again (logging on or off as the properties now say);
// Delete takes back what Create added.
func (r *Resource) HandleEvent(ctx context.Context, e cfn.Event) (string, map[string]any, error) {
	w, err := wantOf(e.ResourceProperties)
	if err != nil {
		return e.PhysicalResourceID, nil, err
	}
	switch e.RequestType {
	case cfn.RequestCreate:
		return r.create(ctx, w)
	case cfn.RequestUpdate:
		s, err := decode(e.PhysicalResourceID)
		if err != nil {
			return e.PhysicalResourceID, nil, err
		}
		old, _ := wantOf(e.OldResourceProperties)
		return e.PhysicalResourceID, nil, r.update(ctx, s, old, w)
	case cfn.RequestDelete:
		s, err := decode(e.PhysicalResourceID)
		if err != nil {
			// A Create that failed before writing anything leaves CloudFormation's placeholder id: nothing to undo.
			r.log.Info("nothing to put back", "step", "delete", "physicalId", e.PhysicalResourceID)
			return e.PhysicalResourceID, nil, nil
		}
		return e.PhysicalResourceID, nil, r.delete(ctx, s, w)
	}
	return e.PhysicalResourceID, nil, nil
}

func (r *Resource) create(ctx context.Context, w want) (string, map[string]any, error) {
	cur, err := r.indexing(ctx)
	if err != nil {
		return "", nil, err
	}
	logging, err := r.logging(ctx)
	if err != nil {
		return "", nil, err
	}
	widened, added := WidenIndexing(cur, Fields())
	s := state{Indexing: added, Logging: logging}
	id, err := encode(s)
	if err != nil {
		return "", nil, err
	}
	if err := r.setIndexing(ctx, cur, widened, "create"); err != nil {
		return "", nil, err
	}
	if w.level != "" {
		if err := r.setLogging(ctx, logging, WidenLogging(logging, w.level, w.role), "create"); err != nil {
			return "", nil, err
		}
	}
	return id, nil, nil
}

func (r *Resource) update(ctx context.Context, s state, old, w want) error {
	cur, err := r.indexing(ctx)
	if err != nil {
		return err
	}
	widened, _ := WidenIndexing(cur, Fields())
	if err := r.setIndexing(ctx, cur, widened, "update"); err != nil {
		return err
	}
	logging, err := r.logging(ctx)
	if err != nil {
		return err
	}
	switch {
	case w.level != "":
		return r.setLogging(ctx, logging, WidenLogging(s.Logging, w.level, w.role), "update")
	case old.level != "":
		return r.restoreLogging(ctx, logging, s.Logging, WidenLogging(s.Logging, old.level, old.role), "update")
	}
	return nil
}

func (r *Resource) delete(ctx context.Context, s state, w want) error {
	cur, err := r.indexing(ctx)
	if err != nil {
		return err
	}
	if err := r.setIndexing(ctx, cur, RevertIndexing(cur, s.Indexing), "delete"); err != nil {
		return err
	}
	if w.level == "" {
		return nil
	}
	logging, err := r.logging(ctx)
	if err != nil {
		return err
	}
	return r.restoreLogging(ctx, logging, s.Logging, WidenLogging(s.Logging, w.level, w.role), "delete")
}

func (r *Resource) indexing(ctx context.Context) (types.ThingIndexingConfiguration, error) {
	out, err := r.iot.GetIndexingConfiguration(ctx, &iot.GetIndexingConfigurationInput{})
	if err != nil {
		return types.ThingIndexingConfiguration{}, fmt.Errorf("get indexing configuration: %w", err)
	}
	if out.ThingIndexingConfiguration == nil {
		return types.ThingIndexingConfiguration{ThingIndexingMode: types.ThingIndexingModeOff}, nil
	}
	return *out.ThingIndexingConfiguration, nil
}

func (r *Resource) setIndexing(ctx context.Context, cur, next types.ThingIndexingConfiguration, step string) error {
	if SameIndexing(cur, next) {
		r.log.Info("fleet indexing unchanged", "step", step, "thingIndexingMode", string(cur.ThingIndexingMode),
			"thingConnectivityIndexingMode", string(cur.ThingConnectivityIndexingMode))
		return nil
	}
	if _, err := r.iot.UpdateIndexingConfiguration(ctx, &iot.UpdateIndexingConfigurationInput{ThingIndexingConfiguration: &next}); err != nil {
		return fmt.Errorf("update indexing configuration to %s/%s: %w", next.ThingIndexingMode, next.ThingConnectivityIndexingMode, err)
	}
	r.log.Info("fleet indexing set", "step", step, "thingIndexingMode", string(next.ThingIndexingMode),
		"thingConnectivityIndexingMode", string(next.ThingConnectivityIndexingMode), "customFields", len(next.CustomFields))
	return nil
}

func (r *Resource) logging(ctx context.Context) (Logging, error) {
	out, err := r.iot.GetV2LoggingOptions(ctx, &iot.GetV2LoggingOptionsInput{})
	var notConfigured *types.NotConfiguredException
	if errors.As(err, &notConfigured) {
		return Logging{}, nil
	}
	if err != nil {
		return Logging{}, fmt.Errorf("get AWS IoT logging options: %w", err)
	}
	return Logging{Configured: true, RoleARN: aws.ToString(out.RoleArn), Level: out.DefaultLogLevel, Disabled: out.DisableAllLogs}, nil
}

func (r *Resource) setLogging(ctx context.Context, cur, next Logging, step string) error {
	if cur == next {
		r.log.Info("AWS IoT logging unchanged", "step", step, "level", string(cur.Level))
		return nil
	}
	in := &iot.SetV2LoggingOptionsInput{DefaultLogLevel: next.Level, DisableAllLogs: next.Disabled}
	if next.RoleARN != "" {
		in.RoleArn = aws.String(next.RoleARN)
	}
	if _, err := r.iot.SetV2LoggingOptions(ctx, in); err != nil {
		return fmt.Errorf("set AWS IoT logging to %s: %w", next.Level, err)
	}
	r.log.Info("AWS IoT logging set", "step", step, "level", string(next.Level), "disabled", next.Disabled)
	return nil
}

func (r *Resource) restoreLogging(ctx context.Context, cur, prev, set Logging, step string) error {
	next, ok := RestoreLogging(cur, prev, set)
	if !ok {
		r.log.Info("AWS IoT logging changed by someone else since: left as it is", "step", step, "level", string(cur.Level))
		return nil
	}
	return r.setLogging(ctx, cur, next, step)
}
