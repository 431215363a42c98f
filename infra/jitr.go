package infra

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiot"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdadestinations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/config"
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
	// Storm sizes the registration path; the zero value means DefaultStorm.
	Storm StormSettings
}

// StormSettings size the registration path for a fleet that reboots together: how many execution environments
// drain the registration queue at once, how the event source mapping batches, and the account's AWS IoT quotas
// the function paces itself to (each environment gets quota ÷ MaxConcurrency of every API).
type StormSettings struct {
	MaxConcurrency int
	BatchSize      int
	BatchWindow    time.Duration
	Quotas         map[string]float64
}

// DefaultStorm is two environments (the fewest AWS allows), batches of 50 gathered for up to a second, and AWS
// IoT's default quotas.
func DefaultStorm() StormSettings {
	return StormSettings{MaxConcurrency: config.DefaultJitrConcurrency, BatchSize: config.DefaultJitrBatchSize,
		BatchWindow: config.DefaultJitrBatchWindow, Quotas: config.DefaultIoTQuotas}
}

// rateLimits is contract.EnvIoTRateLimits: every quota divided among the concurrent environments, as JSON with
// sorted keys (a stable template).
func (s StormSettings) rateLimits() string {
	share := make(map[string]float64, len(s.Quotas))
	for api, rate := range s.Quotas {
		share[api] = rate / float64(s.MaxConcurrency)
	}
	b, _ := json.Marshal(share)
	return string(b)
}

// JitrProvisioning is the just-in-time registration pipeline, built to take a whole fleet rebooting at once: one
// topic rule per own tenant CA sends its certificate-registered events to the registration queue; the JITR Lambda
// drains it through an event source mapping of bounded concurrency, activating each certificate first and queueing
// the retirement of the device's older certificates on the retirement queue, drained by a second mapping once
// registrations leave quota to spare. A ledger table drops duplicate events before any AWS IoT call; a schedule
// runs the reconciler. What fails past the queues' receive counts, and what the rule cannot deliver, lands in a
// dead-letter queue watched by an alarm.
type JitrProvisioning struct {
	constructs.Construct
	Function          awslambda.Function
	Role              awsiam.Role
	LogGroup          awslogs.LogGroup
	DeadLetterQueue   awssqs.Queue
	RegistrationQueue awssqs.Queue
	RetirementQueue   awssqs.Queue
	Ledger            awsdynamodb.Table
	Schedule          awsevents.Rule
	Rules             []awsiot.CfnTopicRule
	DLQAlarm          awscloudwatch.Alarm
	ErrorsAlarm       awscloudwatch.Alarm
	// CAMismatchAlarm fires when an event names another CA than AWS IoT reports for its certificate: the
	// certificate is left PENDING rather than revoked, so someone should look.
	CAMismatchAlarm awscloudwatch.Alarm
}

// NewJitrProvisioning declares the pipeline.
func NewJitrProvisioning(scope constructs.Construct, id string, props *JitrProvisioningProps) *JitrProvisioning {
	c := constructs.NewConstruct(scope, jsii.String(id))
	j := &JitrProvisioning{Construct: c}
	storm := props.Storm
	if storm.MaxConcurrency == 0 {
		storm = DefaultStorm()
	}
	j.addQueues(c)
	j.addFunction(c, props, storm)
	j.grantRegistrationPath()
	j.addTriggers(c, storm)
	j.grantDenyList(props.DenyList)
	j.addRules(c, props.CAs)
	j.addAlarms(c, props.ProvisionedBy)
	return j
}

// addQueues declares the dead-letter queue, the registration and retirement queues and the ledger.
func (j *JitrProvisioning) addQueues(c constructs.Construct) {
	j.DeadLetterQueue = awssqs.NewQueue(c, jsii.String("DeadLetterQueue"), &awssqs.QueueProps{
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})
	suppress(j.DeadLetterQueue, "AwsSolutions-SQS3",
		"This queue is the dead-letter queue: the JITR Lambda's on-failure destination, the topic rule's error action and the two queues' redrive target")
	// Both source queues follow AWS's Lambda–SQS guidance (Lambda developer guide, "Creating and configuring an
	// Amazon SQS event source mapping"): a visibility timeout of at least six times the function's timeout, so a
	// batch Lambda takes while the function is throttled is not handed out again while it may still run, and a
	// maxReceiveCount of at least 5. Retries do not wait for it: the handler shortens the visibility of every record
	// it reports failed (10 s for a failure, 5 s behind another delivery's claim, as long as the backlog has lasted
	// (30 s to 15 min) for a retirement put back during a registration backlog); only the records of an invocation
	// that crashed or timed out wait the full timeout. A registration goes to the dead-letter queue after five
	// receives (the device's next connection attempt publishes its event again). A retirement is put back while
	// registrations are queued: five or six receives in its retirementGrace (15 min in internal/jitr), then one per
	// 15 min until a ration lets it run during a backlog that never drains: 100 receives is more than a day of it.
	newQueue := func(id string, receives float64) awssqs.Queue {
		return awssqs.NewQueue(c, jsii.String(id), &awssqs.QueueProps{
			Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
			EnforceSSL:        jsii.Bool(true),
			VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(6 * jitrTimeoutSeconds)),
			RetentionPeriod:   awscdk.Duration_Days(jsii.Number(4)),
			DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: j.DeadLetterQueue, MaxReceiveCount: jsii.Number(receives)},
		})
	}
	j.RegistrationQueue = newQueue("RegistrationQueue", 5)
	j.RetirementQueue = newQueue("RetirementQueue", 100)
	// The ledger: one item per certificate claimed, kept a week (TTL), never worth retaining.
	j.Ledger = awsdynamodb.NewTable(c, jsii.String("Ledger"), &awsdynamodb.TableProps{
		PartitionKey:        &awsdynamodb.Attribute{Name: jsii.String(contract.LedgerKey), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		Encryption:          awsdynamodb.TableEncryption_AWS_MANAGED,
		TimeToLiveAttribute: jsii.String(contract.LedgerExpiresAt),
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	// The reconciler's sparse index: only the items whose retirement is pending carry its key, so one pass reads
	// the work left, oldest first, whatever the size of the fleet. One partition key value for all: its writes
	// (queued, done) are paced by the AWS IoT quotas to tens a second, far below a partition's limit.
	j.Ledger.AddGlobalSecondaryIndex(&awsdynamodb.GlobalSecondaryIndexProps{
		IndexName:        jsii.String(contract.LedgerRetirementIndex),
		PartitionKey:     &awsdynamodb.Attribute{Name: jsii.String(contract.LedgerRetirementPending), Type: awsdynamodb.AttributeType_STRING},
		SortKey:          &awsdynamodb.Attribute{Name: jsii.String(contract.LedgerQueuedAt), Type: awsdynamodb.AttributeType_NUMBER},
		ProjectionType:   awsdynamodb.ProjectionType_INCLUDE,
		NonKeyAttributes: jsii.Strings(contract.LedgerRetirement),
	})
}

// addFunction declares the JITR function with the environment the handler reads (internal/jitr ConfigFromEnv).
func (j *JitrProvisioning) addFunction(c constructs.Construct, props *JitrProvisioningProps, storm StormSettings) {
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
		// Long enough for a batch paced to the quotas and for the SDK retryer to ride out throttling by other
		// clients of the account.
		Timeout:       awscdk.Duration_Seconds(jsii.Number(jitrTimeoutSeconds)),
		RetryAttempts: jsii.Number(2),
		OnFailure:     awslambdadestinations.NewSqsDestination(j.DeadLetterQueue),
		Environment: &map[string]*string{
			contract.EnvCACertificateIDs:  awscdk.Fn_Join(jsii.String(","), &ids),
			contract.EnvCACertificatesPEM: jsii.String(strings.Join(pems, "")),
			contract.EnvDevicePolicyName:  props.Policy.PolicyName(),
			contract.EnvProvisionedBy:     props.ProvisionedBy,
			// Azure Sphere's clock and Lambda's are independent: a genuine certificate may start a little in the
			// function's future, and is then provisioned rather than left for a later event.
			contract.EnvClockSkewTolerance:   jsii.String("5m"),
			contract.EnvDenyListTable:        props.DenyList.TableName(),
			contract.EnvLedgerTable:          j.Ledger.TableName(),
			contract.EnvRegistrationQueueURL: j.RegistrationQueue.QueueUrl(),
			contract.EnvRetirementQueueURL:   j.RetirementQueue.QueueUrl(),
			contract.EnvIoTRateLimits:        jsii.String(storm.rateLimits()),
			// A registration batch that finds the other environments idle (the storm's tail) takes the whole quota.
			contract.EnvIoTRateShares: jsii.String(strconv.Itoa(storm.MaxConcurrency)),
		},
	})
	j.Function, j.Role, j.LogGroup = fn.Function, fn.Role, fn.LogGroup
}

// grantRegistrationPath gives the function's role what activation, retirement and the reconciler call.
func (j *JitrProvisioning) grantRegistrationPath() {
	// Each grant names the ARN AWS authorizes the action on (Service Authorization Reference, "Actions, resources,
	// and condition keys for AWS IoT"): the certificate for the attachments, which are not authorized on the thing
	// nor on the policy; the thing only for the calls that name no certificate. TestRoleGrantsMatchAWSResourceTypes
	// checks every statement against AWS's authorization data.
	iotGrant(j.Role, "cert/*", "iot:DescribeCertificate", "iot:UpdateCertificate", "iot:DeleteCertificate",
		"iot:AttachPolicy", "iot:DetachPolicy", "iot:AttachThingPrincipal", "iot:DetachThingPrincipal")
	iotGrant(j.Role, "thing/*", "iot:CreateThing", "iot:ListThingPrincipals")
	// The ledger: conditional claims, their release and settlement; the reconciler reads the index of pending
	// retirements only.
	j.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("dynamodb:UpdateItem", "dynamodb:DeleteItem"),
		Resources: &[]*string{j.Ledger.TableArn()},
	}))
	j.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("dynamodb:Query"),
		Resources: &[]*string{awscdk.Fn_Join(jsii.String(""), &[]*string{j.Ledger.TableArn(), jsii.String("/index/" + contract.LedgerRetirementIndex)})},
	}))
	// Retirements and re-queued events are sent; the backlog of the registration queue is read.
	j.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("sqs:SendMessage"),
		Resources: &[]*string{j.RegistrationQueue.QueueArn(), j.RetirementQueue.QueueArn()},
	}))
	j.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("sqs:GetQueueAttributes"),
		Resources: &[]*string{j.RegistrationQueue.QueueArn()},
	}))
}

// addTriggers connects the function to its two queues and to the reconciler's schedule.
func (j *JitrProvisioning) addTriggers(c constructs.Construct, storm StormSettings) {
	// The event source mappings: bounded concurrency, partial batch failures (only the failed records return).
	j.Function.AddEventSource(awslambdaeventsources.NewSqsEventSource(j.RegistrationQueue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(float64(storm.BatchSize)),
		MaxBatchingWindow:       awscdk.Duration_Seconds(jsii.Number(storm.BatchWindow.Seconds())),
		MaxConcurrency:          jsii.Number(float64(storm.MaxConcurrency)),
		ReportBatchItemFailures: jsii.Bool(true),
	}))
	// Retirements in batches of up to 50: enough at once to keep each paced API busy, few enough to finish within
	// the function's timeout at the default quotas (50 ÷ 5 per second per environment). Gathered for up to 10 s:
	// retirement is never urgent, and a batch gathered for a second held what arrived in it, so a fleet coming up
	// at 15 devices a second (the 10 000-device run on 2 cores) cost an invocation per 7 or 8 retirements, and
	// more per device the slower it came; in 10 s the two pollers fill their batches at 10 retirements a second.
	j.Function.AddEventSource(awslambdaeventsources.NewSqsEventSource(j.RetirementQueue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(50),
		MaxBatchingWindow:       awscdk.Duration_Seconds(jsii.Number(retirementBatchWindowSeconds)),
		MaxConcurrency:          jsii.Number(2),
		ReportBatchItemFailures: jsii.Bool(true),
	}))
	// The reconciler, every ten minutes.
	j.Schedule = awsevents.NewRule(c, jsii.String("ReconcileSchedule"), &awsevents.RuleProps{
		Description: jsii.String("Runs the JITR reconciler: certificates left pending, retirements never finished"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(10))),
	})
	j.Schedule.AddTarget(awseventstargets.NewLambdaFunction(j.Function, nil))
}

// grantDenyList lets the function read the deny-list, and records why the role's wildcards are as narrow as AWS
// allows.
func (j *JitrProvisioning) grantDenyList(denyList *DenyList) {
	// The deny-list is only read, one item per event: GetItem on the table resource type, nothing else.
	j.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("dynamodb:GetItem"),
		Resources: &[]*string{denyList.Table.TableArn()},
	}))
	suppress(j.Role, "AwsSolutions-IAM5",
		"Device certificate ids and thing names are created at run time by JITR, so the IoT actions are scoped to "+
			"the cert/* and thing/* resource types of this account and region",
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:cert/*",
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:thing/*")
}

// addRules declares one topic rule per own tenant CA, sending its registered events to the registration queue.
func (j *JitrProvisioning) addRules(c constructs.Construct, cas []*TenantCA) {
	// Each rule sends its events to the registration queue, and to the dead-letter queue what it cannot deliver.
	errorRole := ruleErrorRole(c, "JITR topic rule error action: send undeliverable events to the dead-letter queue", j.DeadLetterQueue)
	sendRole := awsiam.NewRole(c, jsii.String("RuleSendRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("iot.amazonaws.com"), nil),
		Description: jsii.String("JITR topic rule: send registered events to the registration queue"),
	})
	j.RegistrationQueue.GrantSendMessages(sendRole)
	for _, ca := range cas {
		sql := awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("SELECT * FROM '" + contract.RegisteredEventTopicPrefix), ca.CertificateID(), jsii.String("'")})
		j.Rules = append(j.Rules, queueRule(c, "RegisteredRule"+ca.Key,
			"Certificates auto-registered under one own tenant CA go to the JITR registration queue", sql,
			j.RegistrationQueue, sendRole, j.DeadLetterQueue, errorRole))
	}
}

// addAlarms declares the pipeline's alarms: dead letters, function errors, CA mismatches.
func (j *JitrProvisioning) addAlarms(c constructs.Construct, provisionedBy *string) {
	j.DLQAlarm, j.ErrorsAlarm = failureAlarms(c, j.Function, j.DeadLetterQueue,
		"Certificate-registered events that JITR could not process are waiting in the dead-letter queue",
		"The JITR Lambda returned errors (they are retried; persistent ones reach the dead-letter queue)")
	j.CAMismatchAlarm = anyAlarm(c, "CAMismatchAlarm",
		"A certificate-registered event named another CA than the one AWS IoT reports for the certificate; the "+
			"certificate was left PENDING_ACTIVATION (see the JITR log lines with outcome deferred)",
		awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace:     jsii.String(contract.MetricsNamespace),
			MetricName:    jsii.String(contract.MetricCAMismatch),
			DimensionsMap: &map[string]*string{contract.MetricDimension: provisionedBy},
			Period:        awscdk.Duration_Minutes(jsii.Number(5)),
			Statistic:     jsii.String("Sum"),
		}))
}

// jitrTimeoutSeconds is the JITR function's timeout.
const jitrTimeoutSeconds = 60

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
	return withRunbook(awscloudwatch.NewAlarm(scope, jsii.String(id), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(description),
		Metric:             metric,
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	}))
}

// retirementBatchWindowSeconds is how long the retirement queue's event source mapping gathers a batch at most.
const retirementBatchWindowSeconds = 10
