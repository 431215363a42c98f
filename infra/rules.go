package infra

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiot"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// ruleErrorRole is the role a topic rule's error action uses to hand the dead-letter queue what it could not
// deliver.
func ruleErrorRole(scope constructs.Construct, description string, deadLetters awssqs.Queue) awsiam.Role {
	role := awsiam.NewRole(scope, jsii.String("RuleErrorRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("iot.amazonaws.com"), nil),
		Description: jsii.String(description),
	})
	deadLetters.GrantSendMessages(role)
	return role
}

// lambdaRule declares the topic rule id that invokes fn with what sql selects, its error action to the dead-letter
// queue through errorRole, and fn's permission (permissionID) to be invoked by that rule of this account only.
func lambdaRule(scope constructs.Construct, id, permissionID, description string, sql *string, fn awslambda.Function,
	deadLetters awssqs.Queue, errorRole awsiam.Role) awsiot.CfnTopicRule {
	rule := awsiot.NewCfnTopicRule(scope, jsii.String(id), &awsiot.CfnTopicRuleProps{
		TopicRulePayload: &awsiot.CfnTopicRule_TopicRulePayloadProperty{
			Description:      jsii.String(description),
			Sql:              sql,
			AwsIotSqlVersion: jsii.String("2016-03-23"),
			RuleDisabled:     jsii.Bool(false),
			Actions: &[]*awsiot.CfnTopicRule_ActionProperty{{
				Lambda: &awsiot.CfnTopicRule_LambdaActionProperty{FunctionArn: fn.FunctionArn()},
			}},
			ErrorAction: &awsiot.CfnTopicRule_ActionProperty{
				Sqs: &awsiot.CfnTopicRule_SqsActionProperty{QueueUrl: deadLetters.QueueUrl(), RoleArn: errorRole.RoleArn()},
			},
		},
	})
	fn.AddPermission(jsii.String(permissionID), &awslambda.Permission{
		Principal:     awsiam.NewServicePrincipal(jsii.String("iot.amazonaws.com"), nil),
		SourceArn:     rule.AttrArn(),
		SourceAccount: awscdk.Aws_ACCOUNT_ID(),
	})
	return rule
}

// queueRule declares the topic rule id that sends what sql selects to queue through sendRole, with its error
// action to the dead-letter queue through errorRole.
func queueRule(scope constructs.Construct, id, description string, sql *string, queue awssqs.Queue, sendRole awsiam.Role,
	deadLetters awssqs.Queue, errorRole awsiam.Role) awsiot.CfnTopicRule {
	return awsiot.NewCfnTopicRule(scope, jsii.String(id), &awsiot.CfnTopicRuleProps{
		TopicRulePayload: &awsiot.CfnTopicRule_TopicRulePayloadProperty{
			Description:      jsii.String(description),
			Sql:              sql,
			AwsIotSqlVersion: jsii.String("2016-03-23"),
			RuleDisabled:     jsii.Bool(false),
			Actions: &[]*awsiot.CfnTopicRule_ActionProperty{{
				Sqs: &awsiot.CfnTopicRule_SqsActionProperty{QueueUrl: queue.QueueUrl(), RoleArn: sendRole.RoleArn()},
			}},
			ErrorAction: &awsiot.CfnTopicRule_ActionProperty{
				Sqs: &awsiot.CfnTopicRule_SqsActionProperty{QueueUrl: deadLetters.QueueUrl(), RoleArn: errorRole.RoleArn()},
			},
		},
	})
}

// failureAlarms declares the two alarms every rule-fed function of the stack has: messages waiting in its
// dead-letter queue (DeadLetterAlarm), and errors of the function itself (ErrorsAlarm), over 5 minutes.
func failureAlarms(scope constructs.Construct, fn awslambda.Function, deadLetters awssqs.Queue, deadLetterText, errorsText string) (dlq, errs awscloudwatch.Alarm) {
	five := awscdk.Duration_Minutes(jsii.Number(5))
	dlq = anyAlarm(scope, "DeadLetterAlarm", deadLetterText,
		deadLetters.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: five, Statistic: jsii.String("Maximum")}))
	errs = anyAlarm(scope, "ErrorsAlarm", errorsText,
		fn.MetricErrors(&awscloudwatch.MetricOptions{Period: five, Statistic: jsii.String("Sum")}))
	return dlq, errs
}
