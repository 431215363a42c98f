package infra

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiot"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// AccountSettingsIoTActions are the AWS IoT actions of the account-settings function; none has a resource type
// (Service Authorization Reference), so IAM matches them on * only.
var AccountSettingsIoTActions = []string{"iot:GetIndexingConfiguration", "iot:UpdateIndexingConfiguration",
	"iot:GetV2LoggingOptions", "iot:SetV2LoggingOptions"}

// IoTLogGroupName is the log group AWS IoT writes its v2 logs to (AWS IoT Developer Guide, "Monitor AWS IoT using
// CloudWatch Logs"): account-wide, created by AWS IoT, not by the stack.
const IoTLogGroupName = "AWSIotLogsV2"

// FleetMetricsNamespace is the CloudWatch namespace AWS IoT publishes fleet metrics in, one metric per fleet metric,
// named as it.
const FleetMetricsNamespace = "AWS/IoT/FleetMetrics"

// ConnectedDropMinimumDevices is the smallest number of connected devices the drop alarm judges: below it a few
// devices going to sleep would be a large percentage.
const ConnectedDropMinimumDevices = 10

// FleetIndexProps configures FleetIndex.
type FleetIndexProps struct {
	ModuleRoot    string  // directory holding go.mod; the handler is built from <ModuleRoot>/lambda/accountsettings
	ProvisionedBy *string // the stack name: the provisionedBy attribute of its things
	// LogLevel turns on AWS IoT logging (v2) at this level (ERROR, WARN, INFO, DEBUG); "" leaves logging alone.
	LogLevel string
	// DropAlarmPercent is the drop of connected devices from one 5-minute period to the next that fires the alarm.
	DropAlarmPercent int
}

// FleetIndex turns on what fleet-wide reads need, account-wide, through the Custom::IoTAccountSettings resource:
// fleet indexing (registry with the product's thing attributes as custom fields, and connectivity) and, when asked,
// AWS IoT logging with its role; `cdk destroy` puts both back as the account had them. On the index: a fleet metric
// of the stack's connected devices and an alarm on a sudden drop of it.
type FleetIndex struct {
	constructs.Construct
	Function    awslambda.Function
	Role        awsiam.Role
	Resource    awscdk.CustomResource
	LoggingRole awsiam.Role // nil without LogLevel
	FleetMetric awsiot.CfnFleetMetric
	Connected   awscloudwatch.Metric // the fleet metric in CloudWatch (5-minute maximum)
	DropAlarm   awscloudwatch.Alarm
}

// NewFleetIndex declares the settings resource, the fleet metric and the alarm.
func NewFleetIndex(scope constructs.Construct, id string, props *FleetIndexProps) *FleetIndex {
	c := constructs.NewConstruct(scope, jsii.String(id))
	stack := awscdk.Stack_Of(c)
	x := &FleetIndex{Construct: c}

	f := newGoFunction(c, goFunctionProps{
		ModuleRoot:      props.ModuleRoot,
		Package:         "lambda/accountsettings",
		Description:     "Turns on AWS IoT fleet indexing (and logging when asked) for the stack and puts them back on delete",
		RoleDescription: "IoT account settings: read and widen fleet indexing and AWS IoT logging, put them back on delete",
		Timeout:         awscdk.Duration_Minutes(jsii.Number(2)),
	})
	x.Function, x.Role = f.Function, f.Role
	x.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings(AccountSettingsIoTActions...), Resources: jsii.Strings("*"),
	}))
	suppress(x.Role, "AwsSolutions-IAM5",
		"Fleet indexing and AWS IoT logging are settings of the account and Region: their Get/Update/Set actions have no "+
			"resource type in IAM and can only be granted on *",
		"Resource::*")

	properties := x.addLogging(c, stack, props.LogLevel)
	x.Resource = awscdk.NewCustomResource(c, jsii.String("Resource"), &awscdk.CustomResourceProps{
		ServiceToken: x.Function.FunctionArn(),
		ResourceType: jsii.String(contract.AccountSettingsResourceType),
		Properties:   &properties,
	})
	// The function's permissions (and the logging role AWS IoT uses) must outlive the resource, so its Delete can
	// still put the settings back.
	x.Resource.Node().AddDependency(x.Role)
	if x.LoggingRole != nil {
		x.Resource.Node().AddDependency(x.LoggingRole)
	}

	x.addConnectedDevices(c, props)
	return x
}

// addLogging declares, when AWS IoT logging is asked for (level), the role AWS IoT writes its log with and lets the
// settings function pass it; it returns the custom resource's properties that ask for the level.
func (x *FleetIndex) addLogging(c constructs.Construct, stack awscdk.Stack, level string) map[string]any {
	properties := map[string]any{}
	if level == "" {
		return properties
	}
	x.LoggingRole = awsiam.NewRole(c, jsii.String("LoggingRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("iot.amazonaws.com"), nil),
		Description: jsii.String("AWS IoT logging (v2): write to the " + IoTLogGroupName + " log group"),
	})
	logGroupARN := stack.FormatArn(&awscdk.ArnComponents{Service: jsii.String("logs"), Resource: jsii.String("log-group"),
		ResourceName: jsii.String(IoTLogGroupName + ":*"), ArnFormat: awscdk.ArnFormat_COLON_RESOURCE_NAME})
	x.LoggingRole.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"),
		Resources: &[]*string{logGroupARN},
	}))
	suppress(x.LoggingRole, "AwsSolutions-IAM5",
		"AWS IoT creates one log stream per source in its own "+IoTLogGroupName+" log group; the streams' names are AWS IoT's",
		"Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"+IoTLogGroupName+":*")
	x.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:    jsii.Strings("iam:PassRole"),
		Resources:  &[]*string{x.LoggingRole.RoleArn()},
		Conditions: &map[string]any{"StringEquals": map[string]any{"iam:PassedToService": "iot.amazonaws.com"}},
	}))
	properties[contract.PropLogLevel] = level
	properties[contract.PropLogRoleARN] = x.LoggingRole.RoleArn()
	return properties
}

// addConnectedDevices declares the fleet metric of connected devices and the alarm on a sudden drop of it.
func (x *FleetIndex) addConnectedDevices(c constructs.Construct, props *FleetIndexProps) {
	// Connected devices of the stack, counted by AWS IoT from the index every 5 minutes. Statistics need a number
	// field; registry.version is one every thing has, and its count is the number of things matched.
	name := awscdk.Fn_Join(jsii.String("-"), &[]*string{props.ProvisionedBy, jsii.String("ConnectedDevices")})
	x.FleetMetric = awsiot.NewCfnFleetMetric(c, jsii.String("ConnectedDevices"), &awsiot.CfnFleetMetricProps{
		MetricName:  name,
		Description: jsii.String("Devices of the stack connected to AWS IoT Core now (fleet indexing, connectivity)"),
		QueryString: awscdk.Fn_Join(jsii.String(""), &[]*string{
			jsii.String(contract.ThingAttributeField(contract.AttrProvisionedBy) + ":"), props.ProvisionedBy,
			jsii.String(" AND connectivity.connected:true")}),
		AggregationType:  &awsiot.CfnFleetMetric_AggregationTypeProperty{Name: jsii.String("Statistics"), Values: jsii.Strings("count")},
		AggregationField: jsii.String("registry.version"),
		Period:           jsii.Number(300),
		IndexName:        jsii.String("AWS_Things"),
		QueryVersion:     jsii.String("2017-09-30"),
	})
	x.FleetMetric.Node().AddDependency(x.Resource) // the index must exist first, and outlive the metric
	five := awscdk.Duration_Minutes(jsii.Number(5))
	x.Connected = awscloudwatch.NewMetric(&awscloudwatch.MetricProps{Namespace: jsii.String(FleetMetricsNamespace),
		MetricName: x.FleetMetric.MetricName(), Statistic: jsii.String("Maximum"), Period: five, Label: jsii.String("Connected devices")})
	// The drop in percent from the previous period (DIFF is the change since the previous point), judged only
	// while at least ConnectedDropMinimumDevices were connected before.
	drop := awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression:   jsii.String(fmt.Sprintf("IF((m - DIFF(m)) >= %d, -100 * DIFF(m) / (m - DIFF(m)), 0)", ConnectedDropMinimumDevices)),
		UsingMetrics: &map[string]awscloudwatch.IMetric{"m": x.Connected},
		Label:        jsii.String("Drop of connected devices since the previous 5 minutes (%)"),
		Period:       five,
	})
	x.DropAlarm = awscloudwatch.NewAlarm(c, jsii.String("ConnectedDropAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("Connected devices dropped by more than %d %% within 5 minutes: an outage of "+
			"the devices' network, a CA or policy change, or AWS IoT. 'fleetctl status' shows how many are connected, "+
			"'fleetctl stale -days 0' which are not and why they disconnected", props.DropAlarmPercent)),
		Metric:             drop,
		Threshold:          jsii.Number(float64(props.DropAlarmPercent)),
		EvaluationPeriods:  jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	withRunbook(x.DropAlarm)
}
