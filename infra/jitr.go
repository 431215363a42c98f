package infra

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiot"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdadestinations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// JitrProvisioningProps configures JitrProvisioning.
type JitrProvisioningProps struct {
	CAs        []*TenantCA
	Policy     *DevicePolicy
	ModuleRoot string // directory holding go.mod; the handler is built from <ModuleRoot>/lambda/jitr
	// ProvisionedBy marks the things the handler creates (thing attribute provisionedBy), so teardown deletes
	// only those.
	ProvisionedBy *string
	// DenyList is the table of revoked devices the handler reads (GetItem only) before provisioning.
	DenyList *DenyList
}

// JitrProvisioning is the just-in-time registration pipeline: one topic rule per own tenant CA on its
// certificate-registered event, invoking the JITR Lambda asynchronously; what still fails after Lambda's retries,
// and what the rule cannot deliver, lands in a dead-letter queue watched by an alarm.
type JitrProvisioning struct {
	constructs.Construct
	Function        awslambda.Function
	Role            awsiam.Role
	LogGroup        awslogs.LogGroup
	DeadLetterQueue awssqs.Queue
	Rules           []awsiot.CfnTopicRule
	DLQAlarm        awscloudwatch.Alarm
	ErrorsAlarm     awscloudwatch.Alarm
	// CAMismatchAlarm fires when an event names another CA than AWS IoT reports for its certificate: the
	// certificate is left PENDING rather than revoked, so someone should look.
	CAMismatchAlarm awscloudwatch.Alarm
}

// NewJitrProvisioning declares the pipeline.
func NewJitrProvisioning(scope constructs.Construct, id string, props *JitrProvisioningProps) *JitrProvisioning {
	c := constructs.NewConstruct(scope, jsii.String(id))
	j := &JitrProvisioning{Construct: c}

	j.DeadLetterQueue = awssqs.NewQueue(c, jsii.String("DeadLetterQueue"), &awssqs.QueueProps{
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})
	suppress(j.DeadLetterQueue, "AwsSolutions-SQS3",
		"This queue is the dead-letter queue: the JITR Lambda's on-failure destination and the topic rule's error action")

	ids := make([]*string, 0, len(props.CAs))
	pems := make([]string, 0, len(props.CAs))
	for _, ca := range props.CAs {
		ids = append(ids, ca.CertificateID())
		pems = append(pems, ca.PEM)
	}
	fn := newGoFunction(c, goFunctionProps{
		ModuleRoot:      props.ModuleRoot,
		Package:         "lambda/jitr",
		Description:     "Just-in-time registration of Azure Sphere device certificates",
		RoleDescription: "JITR Lambda: verify, provision, rotate and revoke device certificates",
		// Long enough for the SDK retryer to ride out IoT control-plane throttling when a fleet reboots together.
		Timeout:       awscdk.Duration_Seconds(jsii.Number(60)),
		RetryAttempts: jsii.Number(2),
		OnFailure:     awslambdadestinations.NewSqsDestination(j.DeadLetterQueue),
		Environment: &map[string]*string{
			contract.EnvCACertificateIDs:  awscdk.Fn_Join(jsii.String(","), &ids),
			contract.EnvCACertificatesPEM: jsii.String(strings.Join(pems, "")),
			contract.EnvDevicePolicyName:  props.Policy.PolicyName(),
			contract.EnvProvisionedBy:     props.ProvisionedBy,
			// Azure Sphere's clock and Lambda's are independent: a genuine certificate may start a little in the
			// function's future, and is then provisioned rather than left for a later event.
			contract.EnvClockSkewTolerance: jsii.String("5m"),
			contract.EnvDenyListTable:      props.DenyList.TableName(),
		},
	})
	j.Function, j.Role, j.LogGroup = fn.Function, fn.Role, fn.LogGroup
	// Each grant names the ARN AWS authorizes the action on (Service Authorization Reference, "Actions, resources,
	// and condition keys for AWS IoT"): the certificate for the attachments, which are not authorized on the thing
	// nor on the policy; the thing only for the calls that name no certificate. TestRoleGrantsMatchAWSResourceTypes
	// checks every statement against AWS's authorization data.
	iotGrant(j.Role, "cert/*", "iot:DescribeCertificate", "iot:UpdateCertificate", "iot:DeleteCertificate",
		"iot:AttachPolicy", "iot:DetachPolicy", "iot:AttachThingPrincipal", "iot:DetachThingPrincipal")
	iotGrant(j.Role, "thing/*", "iot:CreateThing", "iot:ListThingPrincipals")
	// The deny-list is only read, one item per event: GetItem on the table resource type, nothing else.
	j.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("dynamodb:GetItem"),
		Resources: &[]*string{props.DenyList.Table.TableArn()},
	}))
	suppress(j.Role, "AwsSolutions-IAM5",
		"Device certificate ids and thing names are created at run time by JITR, so the IoT actions are scoped to "+
			"the cert/* and thing/* resource types of this account and region, never to *",
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:cert/*",
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:thing/*")

	// The rule delivers to the same queue what it cannot hand to Lambda.
	errorRole := ruleErrorRole(c, "JITR topic rule error action: send undeliverable events to the dead-letter queue", j.DeadLetterQueue)
	for _, ca := range props.CAs {
		sql := awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("SELECT * FROM '" + contract.RegisteredEventTopicPrefix), ca.CertificateID(), jsii.String("'")})
		j.Rules = append(j.Rules, lambdaRule(c, "RegisteredRule"+ca.Key, "InvokeByRule"+ca.Key,
			"Certificates auto-registered under one own tenant CA go to the JITR Lambda", sql, j.Function, j.DeadLetterQueue, errorRole))
	}

	j.DLQAlarm, j.ErrorsAlarm = failureAlarms(c, j.Function, j.DeadLetterQueue,
		"Certificate-registered events that JITR could not process are waiting in the dead-letter queue",
		"The JITR Lambda returned errors (they are retried; persistent ones reach the dead-letter queue)")
	j.CAMismatchAlarm = anyAlarm(c, "CAMismatchAlarm",
		"A certificate-registered event named another CA than the one AWS IoT reports for the certificate; the "+
			"certificate was left PENDING_ACTIVATION (see the JITR log lines with outcome deferred)",
		awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace:     jsii.String(contract.MetricsNamespace),
			MetricName:    jsii.String(contract.MetricCAMismatch),
			DimensionsMap: &map[string]*string{contract.MetricDimension: props.ProvisionedBy},
			Period:        awscdk.Duration_Minutes(jsii.Number(5)),
			Statistic:     jsii.String("Sum"),
		}))
	return j
}

// iotGrant allows actions on the AWS IoT resources of this account and region whose ARN ends in resource
// (e.g. "cert/*").
func iotGrant(role awsiam.Role, resource string, actions ...string) {
	role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings(actions...),
		Resources: &[]*string{awscdk.Stack_Of(role).FormatArn(&awscdk.ArnComponents{Service: jsii.String("iot"), Resource: jsii.String(resource)})},
	}))
}

// anyAlarm raises an alarm as soon as metric reaches 1 in one period; no data is not a breach.
func anyAlarm(scope constructs.Construct, id, description string, metric awscloudwatch.IMetric) awscloudwatch.Alarm {
	return awscloudwatch.NewAlarm(scope, jsii.String(id), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(description),
		Metric:             metric,
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
}
