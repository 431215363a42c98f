package infra

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/customresources"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// IotEndpoint looks up the account's AWS IoT data endpoint (iot:Data-ATS, the one whose server certificate chains
// to the Amazon roots the device trusts) at deploy time.
type IotEndpoint struct {
	constructs.Construct
	Lookup customresources.AwsCustomResource
}

// NewIotEndpoint declares the lookup.
func NewIotEndpoint(scope constructs.Construct, id string) *IotEndpoint {
	c := constructs.NewConstruct(scope, jsii.String(id))
	call := &customresources.AwsSdkCall{
		Service:            jsii.String("Iot"),
		Action:             jsii.String("describeEndpoint"),
		Parameters:         map[string]string{"endpointType": "iot:Data-ATS"},
		PhysicalResourceId: customresources.PhysicalResourceId_Of(jsii.String("iot-data-ats-endpoint")),
	}
	lookup := customresources.NewAwsCustomResource(c, jsii.String("Lookup"), &customresources.AwsCustomResourceProps{
		OnCreate: call,
		OnUpdate: call,
		// DescribeEndpoint has no resource type: IAM only accepts "*" for it.
		Policy: customresources.AwsCustomResourcePolicy_FromStatements(&[]awsiam.PolicyStatement{
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Actions:   jsii.Strings("iot:DescribeEndpoint"),
				Resources: jsii.Strings("*"),
			}),
		}),
		InstallLatestAwsSdk: jsii.Bool(false),
	})
	suppress(lookup, "AwsSolutions-IAM5", "iot:DescribeEndpoint has no resource type; IAM accepts only * for it",
		"Resource::*")
	// The custom resource runs in a singleton function CDK adds to the stack; it logs with the managed basic role.
	singleton := awscdk.Stack_Of(c).Node().TryFindChild(jsii.String("AWS679f53fac002430cb0da5b7982bd2287"))
	if singleton != nil {
		suppress(singleton, "AwsSolutions-IAM4",
			"CDK's AwsCustomResource function: the managed AWSLambdaBasicExecutionRole only lets it write its own logs",
			"Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
		// With @aws-cdk/aws-lambda:useCdkManagedLogGroup (cdk.json) CDK gives that function a log group it would keep
		// after cdk destroy (RemovalPolicy RETAIN by default): the stack deletes it like every other log group.
		if lg := singleton.Node().TryFindChild(jsii.String("LogGroup")); lg != nil {
			var res awscdk.IResource
			jsii.UnsafeCast(lg, &res)
			res.ApplyRemovalPolicy(awscdk.RemovalPolicy_DESTROY)
		}
	}
	return &IotEndpoint{Construct: c, Lookup: lookup}
}

// Address is the endpoint host name, e.g. abc123-ats.iot.eu-west-1.amazonaws.com.
func (e *IotEndpoint) Address() *string {
	return e.Lookup.GetResponseField(jsii.String("endpointAddress"))
}
