package stackoutputs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

func sample() *Outputs {
	return &Outputs{Stack: contract.StackName, Source: "cdk-outputs.json", Values: map[string]string{
		contract.OutputIotEndpoint: "abc-ats.iot.eu-west-1.amazonaws.com", contract.OutputDemoBucketName: "spherejitr-demobucket-1", contract.OutputRegion: "eu-west-1",
		contract.OutputTenantID: "01234567-89AB-CDEF-0123-456789ABCDEF", contract.OutputDeviceTopicRoot: "devices",
	}}
}

func TestDevice(t *testing.T) {
	s, err := sample().Device()
	if err != nil {
		t.Fatal(err)
	}
	want := DeviceSettings{Endpoint: "abc-ats.iot.eu-west-1.amazonaws.com", Bucket: "spherejitr-demobucket-1", Region: "eu-west-1",
		TenantID: "01234567-89ab-cdef-0123-456789abcdef", TopicRoot: "devices"}
	if *s != want {
		t.Errorf("got %+v, want %+v", *s, want)
	}
}

func TestDeviceRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, key, value, want string
	}{
		{"missing endpoint", contract.OutputIotEndpoint, "", `"IotEndpoint": is missing from cdk-outputs.json`},
		{"missing bucket", contract.OutputDemoBucketName, "", `"DemoBucketName": is missing`},
		{"missing region", contract.OutputRegion, "", `"Region": is missing`},
		{"missing tenant", contract.OutputTenantID, "", `"TenantId": is missing`},
		{"missing topic root", contract.OutputDeviceTopicRoot, "", `"DeviceTopicRoot": is missing`},
		{"tenant not a GUID", contract.OutputTenantID, "01234567-89ab-cdef-0123", "is not an Azure Sphere tenant id"},
		{"endpoint is a URL", contract.OutputIotEndpoint, "https://abc-ats.iot.eu-west-1.amazonaws.com/", "is not a host name"},
		{"endpoint with a port", contract.OutputIotEndpoint, "abc-ats.iot.eu-west-1.amazonaws.com:8883", "is not a host name"},
		{"bucket upper case", contract.OutputDemoBucketName, "Bucket", "is not an S3 bucket name"},
		{"region", contract.OutputRegion, "Ireland", "is not an AWS region"},
		{"topic root with a wildcard", contract.OutputDeviceTopicRoot, "devices/#", "is not a single MQTT topic level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := sample()
			if tc.value == "" {
				delete(o.Values, tc.key)
			} else {
				o.Values[tc.key] = tc.value
			}
			_, err := o.Device()
			var refusal *Error
			if !errors.As(err, &refusal) || refusal.Output != tc.key || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Fix:") {
				t.Errorf("err = %v, want a refusal of %s mentioning %q and the fix", err, tc.key, tc.want)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	o, err := ReadFile(write("ok.json", `{"Other":{},"SphereJitr":{"IotEndpoint":"e","Count":2,"Flag":true}}`), contract.StackName)
	if err != nil {
		t.Fatal(err)
	}
	if o.Values["IotEndpoint"] != "e" || o.Values["Count"] != "2" || o.Values["Flag"] != "true" {
		t.Errorf("values %v", o.Values)
	}
	for name, tc := range map[string]struct{ path, want string }{
		"missing file": {filepath.Join(dir, "none.json"), "does not exist: run 'make deploy'"},
		"not JSON":     {write("bad.json", "{"), "is not the JSON"},
		"other stack":  {write("other.json", `{"B":{},"A":{}}`), `has no stack "SphereJitr" (it has: A, B)`},
		"nested value": {write("nested.json", `{"SphereJitr":{"IotEndpoint":{"x":1}}}`), "not a string"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadFile(tc.path, contract.StackName); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

type describeFunc func(context.Context, *cloudformation.DescribeStacksInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)

func (f describeFunc) DescribeStacks(ctx context.Context, in *cloudformation.DescribeStacksInput, opts ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
	return f(ctx, in, opts...)
}

func TestReadStack(t *testing.T) {
	api := describeFunc(func(_ context.Context, in *cloudformation.DescribeStacksInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
		if aws.ToString(in.StackName) != "SphereJitr" {
			return nil, &smithy.GenericAPIError{Code: "ValidationError", Message: "Stack with id " + aws.ToString(in.StackName) + " does not exist"}
		}
		return &cloudformation.DescribeStacksOutput{Stacks: []types.Stack{{Outputs: []types.Output{
			{OutputKey: aws.String(contract.OutputIotEndpoint), OutputValue: aws.String("e")},
		}}}}, nil
	})
	o, err := ReadStack(context.Background(), api, "SphereJitr", "eu-west-1")
	if err != nil || o.Values[contract.OutputIotEndpoint] != "e" || o.Source != "CloudFormation stack SphereJitr in eu-west-1" {
		t.Errorf("outputs %+v, err %v", o, err)
	}
	if _, err := ReadStack(context.Background(), api, "Gone", "eu-west-1"); err == nil || !errors.Is(err, ErrNoStack) || !strings.Contains(err.Error(), "stack Gone does not exist in eu-west-1") {
		t.Errorf("err = %v", err)
	}
}

func TestOperations(t *testing.T) {
	id := strings.Repeat("ab", 32)
	o := &Outputs{Stack: "SphereJitr", Source: "test", Values: map[string]string{
		contract.OutputCACertificateIDs: id + "," + id, contract.OutputDevicePolicyName: "policy", contract.OutputDenyListTable: "table",
	}}
	s, err := o.Operations()
	if err != nil || s.Name != "SphereJitr" || len(s.CAIDs) != 2 || s.DevicePolicy != "policy" || s.DenyListTable != "table" {
		t.Fatalf("Operations = %+v, %v", s, err)
	}
	delete(o.Values, contract.OutputDenyListTable)
	o.Values[contract.OutputCACertificateIDs] = "not-an-id"
	_, err = o.Operations()
	if err == nil || !strings.Contains(err.Error(), contract.OutputDenyListTable) || !strings.Contains(err.Error(), "not a certificate id") {
		t.Errorf("Operations error = %v, want both problems", err)
	}
}
