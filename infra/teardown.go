package infra

import (
	"strconv"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// RegistryTeardownProps configures RegistryTeardown.
type RegistryTeardownProps struct {
	CAs            []*TenantCA
	Policy         *DevicePolicy
	ModuleRoot     string  // directory holding go.mod; the handler is built from <ModuleRoot>/lambda/teardown
	ProvisionedBy  *string // the provisionedBy attribute value of JITR-created things
	RetainRegistry bool    // keep the registry (certificates, things) on delete: see config.KeyRetainRegistry
}

// RegistryTeardown is a custom resource that, when the stack is deleted, removes what just-in-time registration
// created outside CloudFormation: every certificate of the stack's CAs and every thing the JITR Lambda made. It
// references the CAs and the device policy, so CloudFormation deletes it (and runs the cleanup) before them.
type RegistryTeardown struct {
	constructs.Construct
	Function awslambda.Function
	Resource awscdk.CustomResource
}

// NewRegistryTeardown declares the teardown.
func NewRegistryTeardown(scope constructs.Construct, id string, props *RegistryTeardownProps) *RegistryTeardown {
	c := constructs.NewConstruct(scope, jsii.String(id))

	f := newGoFunction(c, goFunctionProps{
		ModuleRoot:      props.ModuleRoot,
		Package:         "lambda/teardown",
		Description:     "Removes JITR-created certificates and things when the stack is deleted",
		RoleDescription: "Registry teardown: remove JITR-created certificates and things on stack delete",
		// The longest a Lambda may run; work that needs longer goes on in the function's next invocation (it
		// invokes itself) within the custom resource's hour, and work beyond that hour is refused before anything
		// is deleted, naming `fleetctl decommission -all` (internal/teardown).
		Timeout: awscdk.Duration_Minutes(jsii.Number(15)),
	})
	fn, role := f.Function, f.Role
	// Each grant names the ARN AWS authorizes the action on (Service Authorization Reference for AWS IoT): the
	// certificate for the detachments and ListPrincipalThings, the thing for ListThingPrincipals and DeleteThing;
	// ListCertificatesByCA and ListThings have no resource type, so IAM accepts only * for them.
	iotGrant(role, "cacert/*", "iot:UpdateCACertificate")
	iotGrant(role, "cert/*", "iot:UpdateCertificate", "iot:DeleteCertificate", "iot:DetachPolicy",
		"iot:DetachThingPrincipal", "iot:ListPrincipalThings")
	iotGrant(role, "thing/*", "iot:ListThingPrincipals", "iot:DeleteThing")
	// The estimate counts the stack's things in the fleet index (the stack turns registry indexing on).
	iotGrant(role, "index/AWS_Things", "iot:GetStatistics")
	role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("iot:ListCertificatesByCA", "iot:ListThings"),
		Resources: jsii.Strings("*"),
	}))
	suppress(role, "AwsSolutions-IAM5",
		"Certificates and things are created at run time by JITR, so the teardown's IoT actions are scoped to the "+
			"cacert/*, cert/* and thing/* resource types; ListCertificatesByCA and ListThings have no resource type "+
			"in IAM and can only be granted on *",
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:cacert/*",
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:cert/*",
		"Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:thing/*",
		"Resource::*")

	ids := make([]*string, 0, len(props.CAs))
	for _, ca := range props.CAs {
		ids = append(ids, ca.CertificateID())
	}
	res := awscdk.NewCustomResource(c, jsii.String("Resource"), &awscdk.CustomResourceProps{
		ServiceToken: fn.FunctionArn(),
		ResourceType: jsii.String(contract.TeardownResourceType),
		// CloudFormation's longest wait for the answer, and the teardown's budget (teardown.CustomResourceTimeout).
		ServiceTimeout: awscdk.Duration_Seconds(jsii.Number(3600)),
		Properties: &map[string]any{
			contract.PropCACertificateIDs: ids,
			contract.PropPolicyName:       props.Policy.PolicyName(),
			contract.PropProvisionedBy:    props.ProvisionedBy,
			contract.PropRetainRegistry:   strconv.FormatBool(props.RetainRegistry),
		},
	})
	// The function continues its own work in a new invocation. A policy of its own, not the role's default one,
	// which the function depends on: naming the function's ARN there would be a circular dependency.
	continueSelf := awsiam.NewPolicy(c, jsii.String("ContinuePolicy"), &awsiam.PolicyProps{
		Roles: &[]awsiam.IRole{role},
		Statements: &[]awsiam.PolicyStatement{awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Actions: jsii.Strings("lambda:InvokeFunction"), Resources: &[]*string{fn.FunctionArn()},
		})},
	})
	// The function's permissions must outlive the resource, so its last Delete can still call IoT.
	res.Node().AddDependency(role, continueSelf)
	return &RegistryTeardown{Construct: c, Function: fn, Resource: res}
}
