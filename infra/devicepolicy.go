package infra

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiot"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// ThingNameVariable is the IoT policy variable for the name of the thing attached to the connection's certificate.
const ThingNameVariable = "${iot:Connection.Thing.ThingName}"

// DefaultTopicRoot is the first level of every device's own topic tree: devices/<thingName>/...
// (contract.DefaultDeviceTopicRoot, which the C app and the device simulator share).
const DefaultTopicRoot = contract.DefaultDeviceTopicRoot

// DevicePolicyProps configures a DevicePolicy.
type DevicePolicyProps struct {
	TopicRoot string // default DefaultTopicRoot
	// Retain keeps the policy when the stack is deleted: the retained registry's certificates stay attached to it.
	Retain bool
}

// DevicePolicy is the AWS IoT policy attached to every device certificate. A device may connect only as its own
// thing, with a certificate attached to that thing, and may only use its own topic tree
// (<root>/<thingName>/...) and its own classic shadow.
type DevicePolicy struct {
	constructs.Construct
	Resource  awsiot.CfnPolicy
	TopicRoot string
}

// NewDevicePolicy declares the policy.
func NewDevicePolicy(scope constructs.Construct, id string, props *DevicePolicyProps) *DevicePolicy {
	c := constructs.NewConstruct(scope, jsii.String(id))
	root := props.TopicRoot
	if root == "" {
		root = DefaultTopicRoot
	}
	stack := awscdk.Stack_Of(c)
	arn := func(resource string) *string {
		return stack.FormatArn(&awscdk.ArnComponents{Service: jsii.String("iot"), Resource: jsii.String(resource)})
	}
	thing := ThingNameVariable
	shadow := "$aws/things/" + thing + "/shadow/"
	own := root + "/" + thing + "/*"
	doc := map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{
			map[string]any{
				"Sid":       "ConnectAsOwnThing",
				"Effect":    "Allow",
				"Action":    []string{"iot:Connect"},
				"Resource":  []*string{arn("client/" + thing)},
				"Condition": map[string]any{"Bool": map[string]string{"iot:Connection.Thing.IsAttached": "true"}},
			},
			map[string]any{
				"Sid":    "PublishOwnTopicsAndShadowRequests",
				"Effect": "Allow",
				"Action": []string{"iot:Publish"},
				"Resource": []*string{arn("topic/" + own),
					arn("topic/" + shadow + "update"), arn("topic/" + shadow + "get"), arn("topic/" + shadow + "delete")},
			},
			map[string]any{
				"Sid":      "SubscribeOwnTopicsAndShadowReplies",
				"Effect":   "Allow",
				"Action":   []string{"iot:Subscribe"},
				"Resource": []*string{arn("topicfilter/" + own), arn("topicfilter/" + shadow + "*")},
			},
			map[string]any{
				"Sid":      "ReceiveOwnTopicsAndShadowReplies",
				"Effect":   "Allow",
				"Action":   []string{"iot:Receive"},
				"Resource": []*string{arn("topic/" + own), arn("topic/" + shadow + "*")},
			},
		},
	}
	res := awsiot.NewCfnPolicy(c, jsii.String("Resource"), &awsiot.CfnPolicyProps{PolicyDocument: doc})
	if props.Retain {
		res.ApplyRemovalPolicy(awscdk.RemovalPolicy_RETAIN, nil)
	}
	return &DevicePolicy{Construct: c, Resource: res, TopicRoot: root}
}

// PolicyName is the generated policy name (the CloudFormation Ref).
func (p *DevicePolicy) PolicyName() *string { return p.Resource.Ref() }

// PolicyArn is the policy's ARN.
func (p *DevicePolicy) PolicyArn() *string { return p.Resource.AttrArn() }
