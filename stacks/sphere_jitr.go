// Package stacks wires the constructs of package infra into the deployable stack.
package stacks

import (
	"strconv"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/infra"
	"github.com/sphere-jitr/sphere-jitr/internal/config"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// SphereJitrStackProps configures the stack.
type SphereJitrStackProps struct {
	awscdk.StackProps
	Config *config.Config
	// ModuleRoot is the directory holding go.mod, where the Lambda handlers are built from.
	ModuleRoot string
}

// SphereJitrStack puts a fleet of Azure Sphere devices of one tenant on AWS IoT Core with just-in-time registration.
type SphereJitrStack struct {
	awscdk.Stack
	CAs          []*infra.TenantCA
	Policy       *infra.DevicePolicy
	DenyList     *infra.DenyList
	Provisioning *infra.JitrProvisioning
	Operations   *infra.FleetOperations
	Bucket       *infra.DemoBucket
	Endpoint     *infra.IotEndpoint
	Teardown     *infra.RegistryTeardown
	S3Urls       *infra.S3UrlService
	FleetIndex   *infra.FleetIndex
}

// NewSphereJitrStack declares the stack.
func NewSphereJitrStack(scope constructs.Construct, id string, props *SphereJitrStackProps) *SphereJitrStack {
	stack := awscdk.NewStack(scope, &id, &props.StackProps)
	s := &SphereJitrStack{Stack: stack}
	cfg := props.Config

	for _, ca := range cfg.TenantCAs {
		s.CAs = append(s.CAs, infra.NewTenantCA(stack, "TenantCA"+infra.Fingerprint(ca.Cert, 8), &infra.TenantCAProps{
			Certificate:     ca.Cert,
			Verification:    ca.Verification,
			CertificateMode: cfg.CertificateMode,
			Retain:          cfg.RetainRegistry,
		}))
	}
	if cfg.RetainRegistry {
		// Where the user chooses it, cdk synth and cdk deploy say what it costs.
		awscdk.Annotations_Of(stack).AddWarningV2(jsii.String("sphere-jitr:retainRegistry"), jsii.String(
			"-c "+config.KeyRetainRegistry+"=true: "+config.RetainRegistryLockout), nil)
	}
	s.Policy = infra.NewDevicePolicy(stack, "DevicePolicy", &infra.DevicePolicyProps{Retain: cfg.RetainRegistry})
	s.DenyList = infra.NewDenyList(stack, "DenyList", &infra.DenyListProps{Retain: cfg.RetainRegistry})
	s.Provisioning = infra.NewJitrProvisioning(stack, "Jitr", &infra.JitrProvisioningProps{
		CAs:           s.CAs,
		Policy:        s.Policy,
		ModuleRoot:    props.ModuleRoot,
		ProvisionedBy: stack.StackName(),
		DenyList:      s.DenyList,
		Storm: infra.StormSettings{MaxConcurrency: cfg.JitrConcurrency, BatchSize: cfg.JitrBatchSize,
			BatchWindow: cfg.JitrBatchWindow, Quotas: cfg.IoTQuotas},
	})
	s.Teardown = infra.NewRegistryTeardown(stack, "RegistryTeardown", &infra.RegistryTeardownProps{
		CAs:            s.CAs,
		Policy:         s.Policy,
		ModuleRoot:     props.ModuleRoot,
		ProvisionedBy:  stack.StackName(),
		RetainRegistry: cfg.RetainRegistry,
	})
	s.Bucket = infra.NewDemoBucket(stack, "DemoBucket")
	s.Endpoint = infra.NewIotEndpoint(stack, "DataEndpoint")
	s.S3Urls = infra.NewS3UrlService(stack, "S3Urls", &infra.S3UrlServiceProps{
		Policy:        s.Policy,
		Bucket:        s.Bucket,
		Endpoint:      s.Endpoint,
		ModuleRoot:    props.ModuleRoot,
		MaxPutBytes:   cfg.PresignMaxPutBytes,
		URLExpiry:     awscdk.Duration_Seconds(jsii.Number(cfg.PresignURLExpiry.Seconds())),
		ProvisionedBy: stack.StackName(),
	})
	s.FleetIndex = infra.NewFleetIndex(stack, "FleetIndex", &infra.FleetIndexProps{
		ModuleRoot:       props.ModuleRoot,
		ProvisionedBy:    stack.StackName(),
		LogLevel:         cfg.IoTLogLevel,
		DropAlarmPercent: cfg.ConnectedDropAlarmPercent,
	})
	s.Operations = infra.NewFleetOperations(stack, "Operations", &infra.FleetOperationsProps{
		CAs:              s.CAs,
		Provisioning:     s.Provisioning,
		OtherAlarms:      []awscloudwatch.Alarm{s.S3Urls.DLQAlarm, s.S3Urls.ErrorsAlarm, s.FleetIndex.DropAlarm},
		ModuleRoot:       props.ModuleRoot,
		ProvisionedBy:    stack.StackName(),
		AlarmEmail:       cfg.AlarmEmail,
		ConnectedDevices: s.FleetIndex.Connected,
	})

	caIDs := make([]*string, 0, len(s.CAs))
	for _, ca := range s.CAs {
		caIDs = append(caIDs, ca.CertificateID())
	}
	output := func(name, description string, value *string) {
		awscdk.NewCfnOutput(stack, jsii.String(name), &awscdk.CfnOutputProps{Value: value, Description: jsii.String(description)})
	}
	output(contract.OutputIotEndpoint, "AWS IoT data endpoint (iot:Data-ATS) the devices connect to", s.Endpoint.Address())
	output(contract.OutputCACertificateIDs, "AWS IoT ids of the registered tenant CA certificates", awscdk.Fn_Join(jsii.String(","), &caIDs))
	output(contract.OutputDevicePolicyName, "IoT policy attached to every device certificate", s.Policy.PolicyName())
	output(contract.OutputDemoBucketName, "S3 bucket of the devices' objects (devices/<thing>/..., through runtime presigned URLs) and the fleet file", s.Bucket.Bucket.BucketName())
	output(contract.OutputRegion, "Region of the stack", stack.Region())
	output(contract.OutputTenantID, "Azure Sphere tenant (catalog) id", jsii.String(cfg.TenantID))
	output(contract.OutputRetainRegistry, "Whether cdk destroy keeps the registry (certificates, things, CA registration, device policy, deny-list); it does not keep the devices connected", jsii.String(strconv.FormatBool(cfg.RetainRegistry)))
	output(contract.OutputDeviceTopicRoot, "First level of each device's own MQTT topic tree: <root>/<thingName>/...", jsii.String(s.Policy.TopicRoot))
	output(contract.OutputDenyListTable, "DynamoDB table of revoked devices (fleetctl revoke / allow)", s.DenyList.TableName())
	output(contract.OutputDashboardName, "CloudWatch dashboard of the fleet's provisioning", s.Operations.Dashboard.DashboardName())
	output(contract.OutputRegistrationQueueURL, "SQS queue of certificate-registered events waiting for the JITR function (fleetctl status: pending registrations)", s.Provisioning.RegistrationQueue.QueueUrl())
	output(contract.OutputDeadLetterQueueURL, "SQS dead-letter queue of registrations the JITR function gave up on (fleetctl status)", s.Provisioning.DeadLetterQueue.QueueUrl())
	return s
}
