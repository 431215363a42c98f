package deploy

// The parts of the template around fleet indexing: the functions' log groups (AWS::Logs::LogGroup, where Lambda
// writes what a function prints) and the fleet metrics (AWS::IoT::FleetMetric), which need the index the
// Custom::IoTAccountSettings resource turns on (customresource.go).

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	logtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

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
