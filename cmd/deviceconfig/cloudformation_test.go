package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// With no outputs file the command reads the outputs of the deployed stack through CloudFormation
// DescribeStacks (moto here, through the real SDK client and the default credential chain).
func TestOutputsFromCloudFormation(t *testing.T) {
	ctx := context.Background()
	moto, err := motoserver.Start(ctx, motoserver.Options{})
	if err != nil {
		t.Fatalf("start moto: %v", err)
	}
	t.Cleanup(moto.Stop)

	cfn := cloudformation.NewFromConfig(aws.Config{
		Region:      motoserver.Region,
		Credentials: credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""),
	}, func(o *cloudformation.Options) { o.BaseEndpoint = aws.String(moto.URL) })
	outputs := map[string]any{}
	for k, v := range map[string]string{
		"IotEndpoint": "moto1234-ats.iot.us-east-1.amazonaws.com", "CaCertificateIds": "abc", "DevicePolicyName": "p",
		"DemoBucketName": "spherejitr-demobucket-moto", "Region": "us-east-1", "TenantId": "fedcba98-7654-3210-fedc-ba9876543210",
		"RetainRegistry": "false", "DeviceTopicRoot": "devices",
	} {
		outputs[k] = map[string]any{"Value": v}
	}
	template, _ := json.Marshal(map[string]any{
		"Resources": map[string]any{"Bucket": map[string]any{"Type": "AWS::S3::Bucket"}},
		"Outputs":   outputs,
	})
	if _, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("SphereJitr"), TemplateBody: aws.String(string(template))}); err != nil {
		t.Fatalf("create stack: %v", err)
	}

	// The default credential chain, pointed at moto for CloudFormation only: S3 URLs must name the real S3 host.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_CLOUDFORMATION": moto.URL, "AWS_REGION": motoserver.Region, "AWS_ACCESS_KEY_ID": motoserver.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": motoserver.SecretAccessKey, "AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}

	t.Run("stack outputs", func(t *testing.T) {
		dir := t.TempDir()
		var stdout, stderr bytes.Buffer
		if code := run(ctx, []string{"-out", dir, "-device-dir", deviceDir}, &stdout, &stderr, defaultEnv()); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "CloudFormation stack SphereJitr in us-east-1") {
			t.Errorf("source not reported: %s", stdout.String())
		}
		header, err := os.ReadFile(filepath.Join(dir, "device_config.h"))
		if err != nil {
			t.Fatal(err)
		}
		if got := headerValue(t, string(header), "AWS_IOT_ENDPOINT"); got != "moto1234-ats.iot.us-east-1.amazonaws.com" {
			t.Errorf("endpoint %s", got)
		}
		if got := headerValue(t, string(header), "S3_FLEET_GET_URL"); !strings.HasPrefix(got, "https://spherejitr-demobucket-moto.s3.us-east-1.amazonaws.com/"+DefaultFleetKey+"?") {
			t.Errorf("fleet GET URL %s", got)
		}
		manifest, err := os.ReadFile(filepath.Join(dir, "app_manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(manifest), `"DeviceAuthentication": "fedcba98-7654-3210-fedc-ba9876543210"`) {
			t.Errorf("manifest: %s", manifest)
		}
	})
	t.Run("stack not deployed", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"-out", t.TempDir(), "-device-dir", deviceDir, "-stack", "NotDeployed"}, &stdout, &stderr, defaultEnv())
		if code != 1 || !strings.Contains(stderr.String(), "stack NotDeployed does not exist in us-east-1") || !strings.Contains(stderr.String(), "make deploy") {
			t.Errorf("exit %d, stderr %s", code, stderr.String())
		}
	})
}
