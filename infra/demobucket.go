package infra

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// DemoBucket is the bucket the device app uploads to and downloads from through presigned URLs. It is private,
// encrypted, TLS-only, and emptied and removed with the stack.
type DemoBucket struct {
	constructs.Construct
	Bucket awss3.Bucket
}

// NewDemoBucket declares the bucket.
func NewDemoBucket(scope constructs.Construct, id string) *DemoBucket {
	c := constructs.NewConstruct(scope, jsii.String(id))
	b := awss3.NewBucket(c, jsii.String("Bucket"), &awss3.BucketProps{
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		RemovalPolicy:     awscdk.RemovalPolicy_DESTROY,
		AutoDeleteObjects: jsii.Bool(true),
		LifecycleRules: &[]*awss3.LifecycleRule{{
			// Device uploads are demo data: keep the bucket small.
			Expiration:                          awscdk.Duration_Days(jsii.Number(30)),
			AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(1)),
		}},
	})
	suppress(b, "AwsSolutions-S1",
		"Demo bucket reached only through short-lived presigned URLs of the user's own devices; server access logs "+
			"would need a second bucket for demo data. Enable CloudTrail S3 data events where an audit trail is needed")
	return &DemoBucket{Construct: c, Bucket: b}
}
