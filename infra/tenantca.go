// Package infra holds the reusable constructs of the product: the tenant CA registration, the device policy, the
// JITR provisioning pipeline, the demo bucket, the IoT endpoint lookup and the registry teardown. The stack in
// package stacks only wires them together.
package infra

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiot"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
)

// TenantCAProps configures a TenantCA.
type TenantCAProps struct {
	Certificate     *x509.Certificate
	Verification    *x509.Certificate // required in DEFAULT mode, nil in SNI_ONLY
	CertificateMode string            // DEFAULT or SNI_ONLY
	// Retain keeps the CA registered when the stack is deleted (retainRegistry=true; the devices still lock themselves
	// out at their next certificate rotation, see config.RetainRegistryLockout).
	Retain bool
}

// TenantCA registers an Azure Sphere tenant CA with AWS IoT, ACTIVE and with auto-registration on, so device
// certificates it signed are registered just in time when they first connect.
type TenantCA struct {
	constructs.Construct
	Resource awsiot.CfnCACertificate
	PEM      string
	// Key is a short fingerprint of the certificate, used in the ids of resources declared per CA.
	Key string
}

// NewTenantCA declares the CA registration.
func NewTenantCA(scope constructs.Construct, id string, props *TenantCAProps) *TenantCA {
	c := constructs.NewConstruct(scope, jsii.String(id))
	pemText := azsphere.EncodePEM(props.Certificate)
	cfnProps := &awsiot.CfnCACertificateProps{
		CaCertificatePem:       jsii.String(pemText),
		Status:                 jsii.String("ACTIVE"),
		AutoRegistrationStatus: jsii.String("ENABLE"),
		CertificateMode:        jsii.String(props.CertificateMode),
	}
	if props.Verification != nil {
		cfnProps.VerificationCertificatePem = jsii.String(azsphere.EncodePEM(props.Verification))
	}
	res := awsiot.NewCfnCACertificate(c, jsii.String("Resource"), cfnProps)
	if props.Retain {
		res.ApplyRemovalPolicy(awscdk.RemovalPolicy_RETAIN, nil)
	}
	return &TenantCA{Construct: c, Resource: res, PEM: pemText, Key: Fingerprint(props.Certificate, 8)}
}

// CertificateID is the id AWS IoT gives the CA (the CloudFormation Ref).
func (t *TenantCA) CertificateID() *string { return t.Resource.Ref() }

// Fingerprint returns the first n hex characters of the SHA-256 of the certificate's DER. Construct ids derived from
// it stay stable when the other tenant CA is added or removed.
func Fingerprint(cert *x509.Certificate, n int) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])[:n]
}
