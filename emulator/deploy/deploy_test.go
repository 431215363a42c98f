package deploy

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

func fixtureTemplate(t *testing.T, caPEMs, verifPEMs []string) *stacktemplate.Template {
	t.Helper()
	tmpl, err := stacktemplate.Fixture(caPEMs, verifPEMs)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func newTestCA(t *testing.T, cn string) (caPEM, verificationPEM string) {
	t.Helper()
	caPEM, verificationPEM, err := stacktemplate.FixtureCA(cn)
	if err != nil {
		t.Fatal(err)
	}
	return caPEM, verificationPEM
}

// fakeDeployAPI records what Deploy creates.
type fakeDeployAPI struct {
	cas      []*iot.RegisterCACertificateInput
	policies map[string]string
	rules    map[string]string
	buckets  []string
}

func (f *fakeDeployAPI) RegisterCACertificate(_ context.Context, in *iot.RegisterCACertificateInput, _ ...func(*iot.Options)) (*iot.RegisterCACertificateOutput, error) {
	f.cas = append(f.cas, in)
	id := strings.Repeat(string(rune('a'+len(f.cas))), 64)
	return &iot.RegisterCACertificateOutput{CertificateId: aws.String(id), CertificateArn: aws.String("arn:aws:iot:r:a:cacert/" + id)}, nil
}

func (f *fakeDeployAPI) CreatePolicy(_ context.Context, in *iot.CreatePolicyInput, _ ...func(*iot.Options)) (*iot.CreatePolicyOutput, error) {
	f.policies[aws.ToString(in.PolicyName)] = aws.ToString(in.PolicyDocument)
	return &iot.CreatePolicyOutput{}, nil
}

func (f *fakeDeployAPI) CreateTopicRule(_ context.Context, in *iot.CreateTopicRuleInput, _ ...func(*iot.Options)) (*iot.CreateTopicRuleOutput, error) {
	f.rules[aws.ToString(in.RuleName)] = aws.ToString(in.TopicRulePayload.Sql)
	return &iot.CreateTopicRuleOutput{}, nil
}

func (f *fakeDeployAPI) CreateBucket(_ context.Context, in *s3.CreateBucketInput, _ ...func(*s3.Options)) (*s3.CreateBucketOutput, error) {
	f.buckets = append(f.buckets, aws.ToString(in.Bucket))
	return &s3.CreateBucketOutput{}, nil
}

func TestDeployResolvesTemplateValues(t *testing.T) {
	ca1, v1 := newTestCA(t, "CA one")
	ca2, v2 := newTestCA(t, "CA two")
	f := &fakeDeployAPI{policies: map[string]string{}, rules: map[string]string{}}
	d, err := Deploy(context.Background(), fixtureTemplate(t, []string{ca1, ca2}, []string{v1, v2}), f, f,
		Options{StackName: "SphereJitr", Region: "us-east-1", AccountID: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.cas) != 2 || !f.cas[0].SetAsActive || !f.cas[0].AllowAutoRegistration || f.cas[0].VerificationCertificate == nil {
		t.Errorf("CA registrations = %+v, want 2, active, auto-registration, with verification certificate", f.cas)
	}
	ids := d.CAs[0].ID + "," + d.CAs[1].ID
	if got := d.JITR().Env["CA_CERTIFICATE_IDS"]; got != ids {
		t.Errorf("CA_CERTIFICATE_IDS = %q, want %q", got, ids)
	}
	if got := d.JITR().Env["PROVISIONED_BY"]; got != "SphereJitr" {
		t.Errorf("PROVISIONED_BY = %q", got)
	}
	name := d.JITR().Env["DEVICE_POLICY_NAME"]
	doc, ok := f.policies[name]
	if !ok || !strings.HasPrefix(name, "SphereJitr-DevicePolicy1-") {
		t.Fatalf("DEVICE_POLICY_NAME %q does not name the created policy (created %v)", name, f.policies)
	}
	if !strings.Contains(doc, `arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}`) {
		t.Errorf("policy document intrinsics not resolved: %s", doc)
	}
	if !strings.Contains(d.JITR().Env["DLQ"], "arn:aws:sqs:us-east-1:123456789012:SphereJitr-Dlq1-") {
		t.Errorf("Fn::Sub over an undeployed resource = %q", d.JITR().Env["DLQ"])
	}
	if len(d.Rules) != 2 || d.Rules[0].TopicFilter != "$aws/events/certificates/registered/"+d.CAs[0].ID {
		t.Errorf("rules = %+v", d.Rules)
	}
	if len(f.buckets) != 1 || d.Bucket != f.buckets[0] || d.Outputs["DemoBucketName"] != d.Bucket || d.Outputs["CaCertificateIds"] != ids {
		t.Errorf("bucket %q, outputs %v", d.Bucket, d.Outputs)
	}
}

func TestDeployRefusesForgedVerificationCertificate(t *testing.T) {
	ca1, _ := newTestCA(t, "CA one")
	_, otherVerif := newTestCA(t, "Other")
	f := &fakeDeployAPI{policies: map[string]string{}, rules: map[string]string{}}
	_, err := Deploy(context.Background(), fixtureTemplate(t, []string{ca1}, []string{otherVerif}), f, f, Options{Region: "us-east-1", AccountID: "1"})
	if err == nil || !strings.Contains(err.Error(), "not signed by the CA") {
		t.Errorf("Deploy with a verification certificate of another CA: err = %v", err)
	}
}
