package infra

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/interfaces/interfacesawscloudwatch"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// CAExpiryAlarmDays is the threshold of the tenant-CA alarm: it fires when fewer days than this remain before no
// registered CA can provision a device, i.e. a CA is that close to expiry and no successor is registered. Azure
// Sphere issues the next tenant CA about 90 days early, so there is time to register it.
const CAExpiryAlarmDays = 60

// CACheckIoTActions are the AWS IoT actions the scheduled CA check calls, on the cacert resource type of each of the
// stack's CAs (Service Authorization Reference: DescribeCACertificate → cacert).
var CACheckIoTActions = []string{"iot:DescribeCACertificate"}

// FleetOperationsProps configures FleetOperations.
type FleetOperationsProps struct {
	CAs          []*TenantCA
	Provisioning *JitrProvisioning
	// OtherAlarms are the stack's other alarms (the S3 URL service's): the dashboard and the alarm topic include them.
	OtherAlarms   []awscloudwatch.Alarm
	ModuleRoot    string  // directory holding go.mod; the CA check is built from <ModuleRoot>/lambda/cacheck
	ProvisionedBy *string // the stack name: the metrics' dimension
	// AlarmEmail, when set, subscribes this address to an SNS topic every alarm of the stack notifies.
	AlarmEmail string
	// ConnectedDevices, when set, is graphed on the dashboard (the fleet metric of FleetIndex).
	ConnectedDevices awscloudwatch.IMetric
}

// FleetOperations is what the people who run the fleet look at: the scheduled tenant-CA check and its alarm, a
// CloudWatch dashboard (provisioning outcomes, dead letters, the function's async queue, errors and throttles, CA
// days left, alarm states) and, optionally, an alarm topic with an e-mail subscription.
type FleetOperations struct {
	constructs.Construct
	CACheck          awslambda.Function
	CACheckRole      awsiam.Role
	Schedule         awsevents.Rule
	CAExpiryAlarm    awscloudwatch.Alarm
	CACheckErrors    awscloudwatch.Alarm
	ThrottlesAlarm   awscloudwatch.Alarm
	Dashboard        awscloudwatch.Dashboard
	AlarmTopic       awssns.Topic // nil without AlarmEmail
	AlarmTopicKey    awskms.Key   // nil without AlarmEmail
	alarms           []awscloudwatch.Alarm
	provisionedByDim *map[string]*string
}

// NewFleetOperations declares the check, the alarms and the dashboard.
func NewFleetOperations(scope constructs.Construct, id string, props *FleetOperationsProps) *FleetOperations {
	c := constructs.NewConstruct(scope, jsii.String(id))
	stack := awscdk.Stack_Of(c)
	o := &FleetOperations{Construct: c, provisionedByDim: &map[string]*string{contract.MetricDimension: props.ProvisionedBy}}

	ids := make([]*string, 0, len(props.CAs))
	caARNs := make([]*string, 0, len(props.CAs))
	for _, ca := range props.CAs {
		ids = append(ids, ca.CertificateID())
		caARNs = append(caARNs, stack.FormatArn(&awscdk.ArnComponents{Service: jsii.String("iot"), Resource: jsii.String("cacert"), ResourceName: ca.CertificateID()}))
	}
	fn := newGoFunction(constructs.NewConstruct(c, jsii.String("CaCheck")), goFunctionProps{
		ModuleRoot:      props.ModuleRoot,
		Package:         "lambda/cacheck",
		Description:     "Scheduled check of the tenant CAs: days left and whether a successor is registered",
		RoleDescription: "Tenant CA check: describe the stack's registered CA certificates",
		Timeout:         awscdk.Duration_Seconds(jsii.Number(30)),
		RetryAttempts:   jsii.Number(2),
		Environment: &map[string]*string{
			contract.EnvCACertificateIDs: awscdk.Fn_Join(jsii.String(","), &ids),
			contract.EnvProvisionedBy:    props.ProvisionedBy,
		},
	})
	o.CACheck, o.CACheckRole = fn.Function, fn.Role
	o.CACheckRole.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings(CACheckIoTActions...), Resources: &caARNs,
	}))
	// Twice a day, so each one-day alarm period holds at least one figure.
	o.Schedule = awsevents.NewRule(c, jsii.String("CaCheckSchedule"), &awsevents.RuleProps{
		Description: jsii.String("Runs the tenant CA check twice a day"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Hours(jsii.Number(12))),
		Targets:     &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(o.CACheck, &awseventstargets.LambdaFunctionProps{RetryAttempts: jsii.Number(2)})},
	})

	daysLeft := o.metric(contract.MetricDaysLeftWithoutSuccessor, "Minimum", awscdk.Duration_Days(jsii.Number(1)))
	o.CAExpiryAlarm = awscloudwatch.NewAlarm(c, jsii.String("CaExpiryAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String("A registered tenant CA expires within 60 days and no successor is registered: register the next " +
			"tenant CA ('make tenant-ca', then 'make deploy' with both CAs) before devices can no longer be provisioned; 'fleetctl cas' shows them"),
		Metric:             daysLeft,
		Threshold:          jsii.Number(CAExpiryAlarmDays),
		EvaluationPeriods:  jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD,
		// No figure means the check did not run: INSUFFICIENT_DATA, and the check's errors alarm says why.
		TreatMissingData: awscloudwatch.TreatMissingData_MISSING,
	})
	withRunbook(o.CAExpiryAlarm)
	o.CACheckErrors = anyAlarm(c, "CaCheckErrorsAlarm", "The scheduled tenant CA check failed (see its log group)",
		o.CACheck.MetricErrors(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Hours(jsii.Number(12)), Statistic: jsii.String("Sum")}))
	jitr := props.Provisioning
	o.ThrottlesAlarm = anyAlarm(c, "JitrThrottlesAlarm",
		"Invocations of the JITR Lambda were throttled (Lambda concurrency): events wait in the asynchronous queue",
		jitr.Function.MetricThrottles(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Sum")}))
	o.alarms = append([]awscloudwatch.Alarm{o.CAExpiryAlarm, o.CACheckErrors, o.ThrottlesAlarm, jitr.DLQAlarm, jitr.ErrorsAlarm, jitr.CAMismatchAlarm}, props.OtherAlarms...)

	if props.AlarmEmail != "" {
		o.alarmTopic(c, props.AlarmEmail)
	}
	o.dashboard(c, props)
	return o
}

// metric is one of the stack's own metrics (namespace contract.MetricsNamespace, dimension the stack name).
func (o *FleetOperations) metric(name, statistic string, period awscdk.Duration) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace: jsii.String(contract.MetricsNamespace), MetricName: jsii.String(name),
		DimensionsMap: o.provisionedByDim, Statistic: jsii.String(statistic), Period: period,
	})
}

// alarmTopic declares the topic every alarm notifies, encrypted with its own key (rotated) that CloudWatch may use
// for alarms of this account only: CloudWatch cannot publish to a topic under an AWS managed key.
func (o *FleetOperations) alarmTopic(c constructs.Construct, email string) {
	stack := awscdk.Stack_Of(c)
	o.AlarmTopicKey = awskms.NewKey(c, jsii.String("AlarmTopicKey"), &awskms.KeyProps{
		Description:       jsii.String("Encrypts the alarm topic of the sphere-jitr stack"),
		EnableKeyRotation: jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_DESTROY,
	})
	o.AlarmTopicKey.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudWatchAlarmsOfThisAccount"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
		Actions:    jsii.Strings("kms:Decrypt", "kms:GenerateDataKey*"),
		Resources:  jsii.Strings("*"), // in a key policy, "*" is this key
		Conditions: &map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": stack.Account()}},
	}), jsii.Bool(false))
	o.AlarmTopic = awssns.NewTopic(c, jsii.String("AlarmTopic"), &awssns.TopicProps{
		DisplayName: jsii.String("sphere-jitr alarms"),
		MasterKey:   o.AlarmTopicKey,
		EnforceSSL:  jsii.Bool(true),
	})
	o.AlarmTopic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(email), nil))
	action := awscloudwatchactions.NewSnsAction(o.AlarmTopic)
	for _, a := range o.alarms {
		a.AddAlarmAction(action)
		a.AddOkAction(action)
	}
}

func (o *FleetOperations) dashboard(c constructs.Construct, props *FleetOperationsProps) {
	jitr := props.Provisioning
	five := awscdk.Duration_Minutes(jsii.Number(5))
	sum := func(name string) awscloudwatch.IMetric { return o.metric(name, "Sum", five) }
	fnMetric := func(fn awslambda.Function, name, stat string) awscloudwatch.IMetric {
		return fn.Metric(jsii.String(name), &awscloudwatch.MetricOptions{Statistic: jsii.String(stat), Period: five})
	}
	graph := func(title string, left []awscloudwatch.IMetric, right []awscloudwatch.IMetric) awscloudwatch.IWidget {
		p := &awscloudwatch.GraphWidgetProps{Title: jsii.String(title), Left: &left, Width: jsii.Number(12), Height: jsii.Number(6)}
		if len(right) > 0 {
			p.Right = &right
		}
		return awscloudwatch.NewGraphWidget(p)
	}
	alarms := make([]interfacesawscloudwatch.IAlarmRef, len(o.alarms))
	for i, a := range o.alarms {
		alarms[i] = a
	}
	caDays := o.metric(contract.MetricDaysLeftWithoutSuccessor, "Minimum", awscdk.Duration_Hours(jsii.Number(12)))
	var presence []*[]awscloudwatch.IWidget
	if props.ConnectedDevices != nil {
		presence = append(presence, &[]awscloudwatch.IWidget{
			graph("Connected devices (fleet indexing, every 5 min)", []awscloudwatch.IMetric{props.ConnectedDevices}, nil)})
	}
	o.Dashboard = awscloudwatch.NewDashboard(c, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DefaultInterval: awscdk.Duration_Days(jsii.Number(7)),
		Widgets: &[]*[]awscloudwatch.IWidget{
			{awscloudwatch.NewAlarmStatusWidget(&awscloudwatch.AlarmStatusWidgetProps{Title: jsii.String("Alarms"), Alarms: &alarms, Width: jsii.Number(24), Height: jsii.Number(4)})},
			{
				graph("Provisioning outcomes (events per 5 min)", []awscloudwatch.IMetric{
					sum(contract.MetricProvisioned), sum(contract.MetricRotated), sum(contract.MetricRevoked), sum(contract.MetricDenied),
					sum(contract.MetricRefused), sum(contract.MetricDeferred), sum(contract.MetricIgnored), sum(contract.MetricCAMismatch),
				}, nil),
				graph("Registration and retirement queues: messages waiting; age of the oldest registration (s); duplicates dropped, retirements put back", []awscloudwatch.IMetric{
					jitr.RegistrationQueue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: five}),
					jitr.RetirementQueue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: five}),
					sum(contract.MetricDuplicate), sum(contract.MetricRetirementDeferred), sum(contract.MetricRequeued),
				}, []awscloudwatch.IMetric{
					jitr.RegistrationQueue.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: five}),
				}),
			},
			{
				graph("Dead-letter queue: messages waiting, age of the oldest (s)", []awscloudwatch.IMetric{
					jitr.DeadLetterQueue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: five}),
				}, []awscloudwatch.IMetric{
					jitr.DeadLetterQueue.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: five}),
				}),
				graph("JITR function: invocations, errors, throttles; duration p99 (ms)", []awscloudwatch.IMetric{
					fnMetric(jitr.Function, "Invocations", "Sum"), fnMetric(jitr.Function, "Errors", "Sum"), fnMetric(jitr.Function, "Throttles", "Sum"),
				}, []awscloudwatch.IMetric{fnMetric(jitr.Function, "Duration", "p99")}),
			},
			{
				graph("Tenant CA: days left before no CA can provision (alarm below 60)", []awscloudwatch.IMetric{caDays}, nil),
				graph("Tenant CA check: invocations, errors", []awscloudwatch.IMetric{
					fnMetric(o.CACheck, "Invocations", "Sum"), fnMetric(o.CACheck, "Errors", "Sum"),
				}, nil),
			},
		},
	})
	for _, row := range presence {
		o.Dashboard.AddWidgets(*row...)
	}
}
