package deploy

// The parts of the template that turn on fleet indexing and read it: the functions' log groups (AWS::Logs::LogGroup,
// where Lambda writes what a function prints), the Custom::IoTAccountSettings resource (fleet indexing and AWS IoT
// logging, account-wide) and the fleet metrics (AWS::IoT::FleetMetric), which need the index the resource turns on.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	logtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// deployLogsAPI is the part of CloudWatch Logs the deployer uses.
type deployLogsAPI interface {
	CreateLogGroup(ctx context.Context, in *cloudwatchlogs.CreateLogGroupInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogGroupOutput, error)
}

// fleetMetricAPI is the part of AWS IoT CreateFleetMetrics uses.
type fleetMetricAPI interface {
	CreateFleetMetric(ctx context.Context, in *iot.CreateFleetMetricInput, optFns ...func(*iot.Options)) (*iot.CreateFleetMetricOutput, error)
}

var (
	_ deployLogsAPI  = (*cloudwatchlogs.Client)(nil)
	_ fleetMetricAPI = (*iot.Client)(nil)
)

// AccountSettings is a Custom::IoTAccountSettings resource of the template: the function that serves it, its
// role's identity (FunctionID, for stacktemplate.FunctionPrincipal) and its properties, resolved.
type AccountSettings struct {
	LogicalID  string
	FunctionID string
	Function   string // physical name
	LogGroup   string // where the function's lines go
	Properties map[string]any
}

// logGroups creates each AWS::Logs::LogGroup of the template in moto's CloudWatch Logs and gives each function
// the log group its LoggingConfig names (Lambda's default, /aws/lambda/<name>, without one).
func (dp *deployer) logGroups(ctx context.Context) error {
	for _, id := range dp.t.OfType("AWS::Logs::LogGroup") {
		name := stacktemplate.PhysicalName(dp.opts.StackName, id, dp.suffix, 512)
		if n, ok := dp.t.Prop(id, "LogGroupName").(string); ok {
			name = n
		}
		if dp.opts.Logs != nil {
			_, err := dp.opts.Logs.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(name)})
			var exists *logtypes.ResourceAlreadyExistsException
			if err != nil && !errors.As(err, &exists) {
				return fmt.Errorf("create log group %s: %w", name, err)
			}
		}
		dp.r.Refs[id] = name
		dp.r.Attrs[id+".Arn"] = fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s:*", dp.opts.Region, dp.opts.AccountID, name)
		dp.d.LogGroups = append(dp.d.LogGroups, name)
	}
	for id, f := range dp.d.Functions {
		f.LogGroup = dp.functionLogGroup(id, f.Name)
	}
	return nil
}

func (dp *deployer) functionLogGroup(id, name string) string {
	if lg := stacktemplate.ReferencedResource(dp.t.Prop(id, "LoggingConfig.LogGroup")); lg != "" {
		if n, ok := dp.r.Refs[lg]; ok {
			return n
		}
	}
	if n, err := dp.r.String(dp.t.Prop(id, "LoggingConfig.LogGroup")); err == nil && n != "" {
		return n
	}
	return "/aws/lambda/" + name
}

// accountSettings names the functions behind the Custom::IoTAccountSettings resources and resolves the resources'
// properties; the emulator runs them once its identities exist (ApplyAccountSettings).
func (dp *deployer) accountSettings(context.Context) error {
	for _, id := range dp.t.OfType(contract.AccountSettingsResourceType) {
		fn := stacktemplate.ReferencedResource(dp.t.Prop(id, "ServiceToken"))
		if dp.t.Resources[fn].Type != "AWS::Lambda::Function" {
			return fmt.Errorf("%s %s: its ServiceToken is not a function of this template", contract.AccountSettingsResourceType, id)
		}
		name := stacktemplate.PhysicalName(dp.opts.StackName, fn, dp.suffix, 64)
		arn := fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", dp.opts.Region, dp.opts.AccountID, name)
		dp.r.Refs[fn] = name
		dp.r.Attrs[fn+".Arn"] = arn
		// CloudFormation invokes it synchronously, once: no retries, no destination.
		dp.d.Functions[fn] = &Function{LogicalID: fn, Name: name, ARN: arn, Kind: KindAccountSettings}
		dp.d.AccountSettings = append(dp.d.AccountSettings, AccountSettings{LogicalID: id, FunctionID: fn, Function: name})
	}
	return nil
}

// accountSettingsProperties resolves the resources' properties, once everything they reference exists.
func (dp *deployer) accountSettingsProperties(context.Context) error {
	for i := range dp.d.AccountSettings {
		as := &dp.d.AccountSettings[i]
		props := map[string]any{}
		for k, v := range dp.t.Resources[as.LogicalID].Properties {
			if k == "ServiceToken" {
				continue
			}
			rv, err := dp.r.Resolve(v)
			if err != nil {
				return fmt.Errorf("%s %s property %s: %w", contract.AccountSettingsResourceType, as.LogicalID, k, err)
			}
			props[k] = rv
		}
		as.Properties = props
		as.LogGroup = dp.functionLogGroup(as.FunctionID, as.Function)
	}
	return nil
}

// CreateEvent is the CloudFormation Create request for the resource, as its function receives it; the function
// sends its response to responseURL (cfn.LambdaWrap).
func (as AccountSettings) CreateEvent(stackName, region, account, responseURL string) cfn.Event {
	return cfn.Event{
		RequestType: cfn.RequestCreate, RequestID: fmt.Sprintf("emulator-%d", time.Now().UnixNano()), ResponseURL: responseURL,
		StackID:           fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/emulator", region, account, stackName),
		LogicalResourceID: as.LogicalID, ResourceType: contract.AccountSettingsResourceType, ResourceProperties: as.Properties,
	}
}

// CreateFleetMetrics creates the template's AWS::IoT::FleetMetric resources (after the account settings: a fleet
// metric needs the index) and returns their names.
func CreateFleetMetrics(ctx context.Context, t *stacktemplate.Template, d *Deployment, api fleetMetricAPI) ([]string, error) {
	var names []string
	for _, id := range t.OfType("AWS::IoT::FleetMetric") {
		str := func(prop string) (string, error) {
			v := t.Prop(id, prop)
			if v == nil {
				return "", nil
			}
			return d.Resolver.String(v)
		}
		in := &iot.CreateFleetMetricInput{}
		var err error
		fields := []struct {
			prop string
			dst  **string
		}{{"MetricName", &in.MetricName}, {"QueryString", &in.QueryString}, {"AggregationField", &in.AggregationField},
			{"IndexName", &in.IndexName}, {"QueryVersion", &in.QueryVersion}, {"Description", &in.Description}}
		for _, f := range fields {
			s, e := str(f.prop)
			if e != nil {
				err = e
				break
			}
			if s != "" {
				*f.dst = aws.String(s)
			}
		}
		if err != nil {
			return names, fmt.Errorf("fleet metric %s: %w", id, err)
		}
		if p, ok := t.Prop(id, "Period").(float64); ok {
			in.Period = aws.Int32(int32(p))
		}
		if unit, _ := str("Unit"); unit != "" {
			in.Unit = iottypes.FleetMetricUnit(unit)
		}
		agg, _ := t.Prop(id, "AggregationType").(map[string]any)
		in.AggregationType = &iottypes.AggregationType{Name: iottypes.AggregationTypeName(text(agg["Name"]))}
		values, _ := agg["Values"].([]any)
		for _, v := range values {
			in.AggregationType.Values = append(in.AggregationType.Values, text(v))
		}
		if _, err := api.CreateFleetMetric(ctx, in); err != nil {
			return names, fmt.Errorf("create fleet metric %s: %w", aws.ToString(in.MetricName), err)
		}
		d.Resolver.Refs[id] = aws.ToString(in.MetricName)
		names = append(names, aws.ToString(in.MetricName))
	}
	return names, nil
}

// text is a template value as text (strings as they are, numbers without a fraction when they have none).
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return ""
}
