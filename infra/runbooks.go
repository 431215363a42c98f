package infra

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/jsii-runtime-go"
)

// RunbookDir is where each alarm's runbook lives in the project: RunbookDir/<name>.md, the name being the alarm's
// logical id without CDK's hash (the construct path below the stack, joined), e.g. JitrDeadLetterAlarm.
const RunbookDir = "docs/runbooks"

// RunbookName is the runbook's name of an alarm: its construct path below the stack, joined, as CDK builds the
// readable part of the logical id.
func RunbookName(alarm awscloudwatch.Alarm) string {
	stackPath := *awscdk.Stack_Of(alarm).Node().Path()
	rel := strings.TrimPrefix(strings.TrimPrefix(*alarm.Node().Path(), stackPath), "/")
	return strings.ReplaceAll(rel, "/", "")
}

// withRunbook ends the alarm's description with its runbook's path, so whoever the alarm wakes finds what it means,
// how to see why and what to do: "... Runbook: docs/runbooks/<name>.md".
func withRunbook(alarm awscloudwatch.Alarm) awscloudwatch.Alarm {
	cfn := alarm.Node().DefaultChild().(awscloudwatch.CfnAlarm)
	desc := strings.TrimRight(strings.TrimSpace(strOr(cfn.AlarmDescription())), ".")
	cfn.SetAlarmDescription(jsii.String(desc + ". Runbook: " + RunbookDir + "/" + RunbookName(alarm) + ".md"))
	return alarm
}

func strOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
