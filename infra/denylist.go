package infra

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// DenyListProps configures DenyList.
type DenyListProps struct {
	// Retain keeps the table when the stack is deleted, with the retained registry whose devices it keeps out.
	Retain bool
}

// DenyList is the DynamoDB table of the devices `fleetctl revoke` shut out: one item per device, keyed by thing
// name. The JITR function reads it (GetItem only) before it provisions a certificate, so a revoked device's new
// certificates are refused even though Azure Sphere keeps issuing them until the device leaves the tenant.
// On-demand, encrypted with the AWS managed key, point-in-time recovery on.
type DenyList struct {
	constructs.Construct
	Table awsdynamodb.Table
}

// NewDenyList declares the table.
func NewDenyList(scope constructs.Construct, id string, props *DenyListProps) *DenyList {
	c := constructs.NewConstruct(scope, jsii.String(id))
	removal := awscdk.RemovalPolicy_DESTROY
	if props.Retain {
		removal = awscdk.RemovalPolicy_RETAIN
	}
	table := awsdynamodb.NewTable(c, jsii.String("Table"), &awsdynamodb.TableProps{
		PartitionKey: &awsdynamodb.Attribute{Name: jsii.String(contract.DenyListKey), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:  awsdynamodb.BillingMode_PAY_PER_REQUEST,
		Encryption:   awsdynamodb.TableEncryption_AWS_MANAGED,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		RemovalPolicy: removal,
	})
	return &DenyList{Construct: c, Table: table}
}

// TableName is the physical name of the table.
func (d *DenyList) TableName() *string { return d.Table.TableName() }
