package moto_test

import (
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/servicequotas"
	sqtypes "github.com/aws/aws-sdk-go-v2/service/servicequotas/types"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// The account-wide answers of account.py, as cmd/preflight reads them through the real SDK clients.

func awsConfigIn(region string) aws.Config {
	return aws.Config{Region: region, BaseEndpoint: aws.String(moto.URL), Retryer: motoserver.LostAnswerRetryer,
		Credentials: credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, "")}
}

var registrationCodeShape = regexp.MustCompile(`^[0-9a-f]{64}$`) // iot model: RegistrationCode, 64 hex characters

// TestRegistrationCodeIsOnePerAccountAndRegion: AWS IoT gives an account one registration code per region, the same
// on every call (moto alone: a new UUID each call).
func TestRegistrationCodeIsOnePerAccountAndRegion(t *testing.T) {
	client(t)
	ctx := context.Background()
	code := func(region string) string {
		out, err := iot.NewFromConfig(awsConfigIn(region)).GetRegistrationCode(ctx, &iot.GetRegistrationCodeInput{})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.RegistrationCode)
	}
	first, again, other := code("us-east-1"), code("us-east-1"), code("eu-west-1")
	if !registrationCodeShape.MatchString(first) {
		t.Errorf("registration code %q is not 64 hexadecimal characters", first)
	}
	if first != again {
		t.Errorf("two calls gave %s and %s: the code of an account and region never changes", first, again)
	}
	if first == other {
		t.Errorf("us-east-1 and eu-west-1 share the code %s: it is per region", first)
	}
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	if after := code("us-east-1"); after != first {
		t.Errorf("after a reset the code is %s, was %s: it belongs to the account, not to moto's state", after, first)
	}
}

// TestServiceQuotasForIoTCore: iotcore's rate quotas, named "<API> API TPS", carry the rates the emulator enforces.
func TestServiceQuotasForIoTCore(t *testing.T) {
	client(t)
	ctx := context.Background()
	sq := servicequotas.NewFromConfig(awsConfigIn(motoserver.Region))
	byName := map[string]sqtypes.ServiceQuota{}
	pages := servicequotas.NewListServiceQuotasPaginator(sq, &servicequotas.ListServiceQuotasInput{ServiceCode: aws.String("iotcore"), MaxResults: aws.Int32(5)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range page.Quotas {
			byName[aws.ToString(q.QuotaName)] = q
		}
	}
	for name, want := range map[string]float64{"DescribeCertificate API TPS": 10, "UpdateCertificate API TPS": 10, "AttachPolicy API TPS": 15, "CreateThing API TPS": 100} {
		q, ok := byName[name]
		if !ok || q.Value == nil || *q.Value != want {
			t.Errorf("%s: %+v, want value %g", name, q, want)
			continue
		}
		got, err := sq.GetServiceQuota(ctx, &servicequotas.GetServiceQuotaInput{ServiceCode: aws.String("iotcore"), QuotaCode: q.QuotaCode})
		if err != nil || aws.ToString(got.Quota.QuotaName) != name {
			t.Errorf("GetServiceQuota %s: %v, %+v", aws.ToString(q.QuotaCode), err, got)
		}
	}
	_, err := sq.GetServiceQuota(ctx, &servicequotas.GetServiceQuotaInput{ServiceCode: aws.String("iotcore"), QuotaCode: aws.String("L-00000000")})
	var nsr *sqtypes.NoSuchResourceException
	if !errors.As(err, &nsr) {
		t.Errorf("unknown quota code: %v, want NoSuchResourceException", err)
	}
}

// TestChangeSetStackHasItsTemplatesOutputs: a stack created through a change set (as the CDK CLI deploys, `cdk
// bootstrap` included) reports its template's outputs (moto alone: none).
func TestChangeSetStackHasItsTemplatesOutputs(t *testing.T) {
	client(t)
	ctx := context.Background()
	cfn := cloudformation.NewFromConfig(awsConfigIn(motoserver.Region))
	template := `{"Resources":{"Version":{"Type":"AWS::SSM::Parameter","Properties":{"Type":"String","Name":"/cdk-bootstrap/hnb659fds/version","Value":"30"}}},
	  "Outputs":{"BootstrapVersion":{"Value":"30"}}}`
	cs, err := cfn.CreateChangeSet(ctx, &cloudformation.CreateChangeSetInput{StackName: aws.String("CDKToolkit"),
		ChangeSetName: aws.String("cdk-deploy-change-set"), ChangeSetType: cftypes.ChangeSetTypeCreate, TemplateBody: &template})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfn.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{ChangeSetName: cs.Id}); err != nil {
		t.Fatal(err)
	}
	out, err := cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("CDKToolkit")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out.Stacks[0].Outputs {
		got = append(got, aws.ToString(o.OutputKey)+"="+aws.ToString(o.OutputValue))
	}
	if len(got) != 1 || got[0] != "BootstrapVersion=30" {
		t.Errorf("outputs %v, want [BootstrapVersion=30]", got)
	}
}
