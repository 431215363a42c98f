package infra

import (
	"strconv"
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

// S3UrlServiceProps configures S3UrlService.
type S3UrlServiceProps struct {
	Policy      *DevicePolicy // its TopicRoot is the root of the request and reply topics
	Bucket      *DemoBucket
	Endpoint    *IotEndpoint // the data endpoint the function publishes its answers through
	ModuleRoot  string       // directory holding go.mod; the handler is built from <ModuleRoot>/lambda/presign
	MaxPutBytes int64
	URLExpiry   awscdk.Duration
	// ProvisionedBy is the stack name, the dimension of the function's metrics.
	ProvisionedBy *string
}

// S3UrlService hands devices short-lived presigned S3 URLs at run time, for their own prefix and (GET only) for the
// fleet's shared fleet/ objects: a topic rule on <root>/+/s3/url passes each request, with the thing name taken from
// the topic, to the presign Lambda, which answers on <root>/<thing>/s3/url/accepted or …/rejected through the IoT
// data plane. Its role may only write and read objects under devices/*, read those under fleet/*, and publish only on
// the reply topics; invocations that fail, and requests the rule cannot deliver, land in a dead-letter queue watched
// by an alarm.
type S3UrlService struct {
	constructs.Construct
	Function        awslambda.Function
	Role            awsiam.Role
	LogGroup        awslogs.LogGroup
	DeadLetterQueue awssqs.Queue
	Rule            awsiot.CfnTopicRule
	DLQAlarm        awscloudwatch.Alarm
	ErrorsAlarm     awscloudwatch.Alarm
}

// NewS3UrlService declares the service.
func NewS3UrlService(scope constructs.Construct, id string, props *S3UrlServiceProps) *S3UrlService {
	c := constructs.NewConstruct(scope, jsii.String(id))
	s := &S3UrlService{Construct: c}
	root := props.Policy.TopicRoot

	s.DeadLetterQueue = awssqs.NewQueue(c, jsii.String("DeadLetterQueue"), &awssqs.QueueProps{
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})
	suppress(s.DeadLetterQueue, "AwsSolutions-SQS3",
		"This queue is the dead-letter queue: the presign Lambda's on-failure destination and the topic rule's error action")

	fn := newGoFunction(c, goFunctionProps{
		ModuleRoot:      props.ModuleRoot,
		Package:         "lambda/presign",
		Description:     "Short-lived presigned S3 URLs for a device's own prefix and the fleet's read-only files, answered over MQTT",
		RoleDescription: "presign Lambda: sign S3 URLs under devices/* and GETs under fleet/*, publish the answers on the devices' reply topics",
		Timeout:         awscdk.Duration_Seconds(jsii.Number(10)),
		// No retry: the device waits for its answer only seconds and asks again itself; a late answer is useless.
		RetryAttempts: jsii.Number(0),
		OnFailure:     awslambdadestinations.NewSqsDestination(s.DeadLetterQueue),
		Environment: &map[string]*string{
			contract.EnvBucketName:       props.Bucket.Bucket.BucketName(),
			contract.EnvIotDataEndpoint:  props.Endpoint.Address(),
			contract.EnvDeviceTopicRoot:  jsii.String(root),
			contract.EnvPresignMaxBytes:  jsii.String(strconv.FormatInt(props.MaxPutBytes, 10)),
			contract.EnvPresignExpirySec: jsii.String(strconv.FormatFloat(*props.URLExpiry.ToSeconds(nil), 'f', 0, 64)),
			contract.EnvProvisionedBy:    props.ProvisionedBy,
		},
	})
	s.Function, s.Role, s.LogGroup = fn.Function, fn.Role, fn.LogGroup

	s.grantDeviceObjectsAndReplies(props.Bucket, root)

	errorRole := ruleErrorRole(c, "S3 URL topic rule error action: send undeliverable requests to the dead-letter queue", s.DeadLetterQueue)
	// Named fields only, never SELECT *: the thing name comes from the topic, and a device cannot override it
	// with a field of its own payload.
	sql := "SELECT topic(2) AS " + contract.S3URLRuleThingVar + ", operation, scope, name, contentLength, clientToken FROM '" +
		contract.S3URLRequestTopic(root, "+") + "'"
	s.Rule = lambdaRule(c, "RequestRule", "InvokeByRule", "A device's request for a presigned S3 URL goes to the presign Lambda",
		jsii.String(sql), s.Function, s.DeadLetterQueue, errorRole)

	s.DLQAlarm, s.ErrorsAlarm = failureAlarms(c, s.Function, s.DeadLetterQueue,
		"Device URL requests the presign function could not answer are waiting in the dead-letter queue",
		"The presign Lambda returned errors: devices got no URL and retry (failed invocations reach the dead-letter queue)")
	return s
}

// grantDeviceObjectsAndReplies gives the function's role all that a device's URL and the answer need: objects under
// devices/* of the bucket, reading those under fleet/*, and the devices' reply topics.
func (s *S3UrlService) grantDeviceObjectsAndReplies(bucket *DemoBucket, root string) {
	// A presigned URL acts with the signer's permissions: these grants are all a device's URL can ever do.
	objects := bucket.Bucket.ArnForObjects(jsii.String(contract.DeviceObjectPrefix + "*"))
	s.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:PutObject", "s3:GetObject"),
		Resources: &[]*string{objects},
	}))
	// The fleet's files are read, never written, through a device's URL: the operator uploads them.
	fleetObjects := bucket.Bucket.ArnForObjects(jsii.String(contract.FleetObjectPrefix + "*"))
	s.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:GetObject"),
		Resources: &[]*string{fleetObjects},
	}))
	stack := awscdk.Stack_Of(s.Construct)
	replyTopics := []*string{}
	for _, outcome := range []string{contract.ReplyAccepted, contract.ReplyRejected} {
		replyTopics = append(replyTopics, stack.FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("iot"), Resource: jsii.String("topic"),
			ResourceName: jsii.String(contract.S3URLReplyTopic(root, "*", outcome)),
		}))
	}
	s.Role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("iot:Publish"),
		Resources: &replyTopics,
	}))
	suppress(s.Role, "AwsSolutions-IAM5",
		"Devices, their objects and the fleet's files are created at run time: the function may touch only objects "+
			"under devices/* of the demo bucket, read those under fleet/*, and publish only on the devices' "+
			"s3/url/accepted and s3/url/rejected topics",
		`/^Resource::<DemoBucket[0-9A-F]+\.Arn>\/`+strings.ReplaceAll(contract.DeviceObjectPrefix, "/", `\/`)+`\*$/`,
		`/^Resource::<DemoBucket[0-9A-F]+\.Arn>\/`+strings.ReplaceAll(contract.FleetObjectPrefix, "/", `\/`)+`\*$/`,
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:topic/"+contract.S3URLReplyTopic(root, "*", contract.ReplyAccepted),
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:topic/"+contract.S3URLReplyTopic(root, "*", contract.ReplyRejected))
}
