// Package stackoutputs reads the outputs of the deployed SphereJitr stack, either from the JSON file
// `cdk deploy --outputs-file` writes or from CloudFormation, and checks the values the device build needs. The
// output names themselves are in package contract, which the stack declares them from.
package stackoutputs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/smithy-go"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// ErrNoStack is returned by ReadStack when CloudFormation has no stack of that name in the region.
var ErrNoStack = errors.New("does not exist")

// Outputs are the raw outputs of one stack and where they came from (for messages).
type Outputs struct {
	Stack  string
	Source string // "cdk-outputs.json" or "CloudFormation stack SphereJitr in eu-west-1"
	Values map[string]string
}

// DeviceSettings are the checked values the device build needs.
type DeviceSettings struct {
	Endpoint  string // AWS IoT data endpoint host
	Bucket    string // demo bucket name
	Region    string
	TenantID  string // lower-case GUID
	TopicRoot string
}

// Error is a refused or missing stack output.
type Error struct {
	Output  string
	Problem string
	Fix     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("stack output %q: %s. Fix: %s", e.Output, e.Problem, e.Fix)
}

// ReadFile reads the outputs of stack from a file written by `cdk deploy --outputs-file`.
func ReadFile(path, stack string) (*Outputs, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("outputs file %s does not exist: run 'make deploy' (it writes cdk-outputs.json), "+
			"or leave OUTPUTS unset to read the outputs from CloudFormation", path)
	}
	if err != nil {
		return nil, fmt.Errorf("read outputs file: %w", err)
	}
	var stacks map[string]map[string]any
	if err := json.Unmarshal(data, &stacks); err != nil {
		return nil, fmt.Errorf("outputs file %s is not the JSON 'cdk deploy --outputs-file' writes ({\"%s\": {\"%s\": ...}}): %v",
			path, contract.StackName, contract.OutputIotEndpoint, err)
	}
	raw, ok := stacks[stack]
	if !ok {
		names := make([]string, 0, len(stacks))
		for name := range stacks {
			names = append(names, name)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("outputs file %s has no stack %q (it has: %s)", path, stack, strings.Join(names, ", "))
	}
	values := make(map[string]string, len(raw))
	for k, v := range raw {
		switch t := v.(type) {
		case string:
			values[k] = t
		case float64:
			values[k] = strconv.FormatFloat(t, 'f', -1, 64)
		case bool:
			values[k] = strconv.FormatBool(t)
		default:
			return nil, fmt.Errorf("outputs file %s: output %s of stack %s is %T, not a string", path, k, stack, v)
		}
	}
	return &Outputs{Stack: stack, Source: path, Values: values}, nil
}

// DescribeStacksAPI is the CloudFormation call ReadStack needs.
type DescribeStacksAPI interface {
	DescribeStacks(ctx context.Context, params *cloudformation.DescribeStacksInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
}

var _ DescribeStacksAPI = (*cloudformation.Client)(nil)

// ReadStack reads the outputs of the deployed stack from CloudFormation; region is only used in messages.
func ReadStack(ctx context.Context, api DescribeStacksAPI, stack, region string) (*Outputs, error) {
	out, err := api.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: &stack})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationError" && strings.Contains(apiErr.ErrorMessage(), "does not exist") {
		return nil, fmt.Errorf("stack %s %w in %s", stack, ErrNoStack, region)
	}
	if err != nil {
		return nil, fmt.Errorf("describe stack %s in %s: %w", stack, region, err)
	}
	if len(out.Stacks) == 0 {
		return nil, fmt.Errorf("describe stack %s in %s: no stack returned", stack, region)
	}
	values := map[string]string{}
	for _, o := range out.Stacks[0].Outputs {
		if o.OutputKey != nil && o.OutputValue != nil {
			values[*o.OutputKey] = *o.OutputValue
		}
	}
	return &Outputs{Stack: stack, Source: fmt.Sprintf("CloudFormation stack %s in %s", stack, region), Values: values}, nil
}

var (
	// A DNS host name: dot-separated labels of letters, digits and inner hyphens.
	hostPattern   = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$`)
	regionPattern = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	// S3 bucket naming rules (general purpose buckets).
	bucketPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	topicPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

const fixRedeploy = "deploy the current stack with 'make deploy' (it writes cdk-outputs.json) and run the command again"

// Device checks and returns the values the device build needs. All problems are reported together.
func (o *Outputs) Device() (*DeviceSettings, error) {
	var errs []error
	get := func(name string) string {
		v, ok := o.Values[name]
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			errs = append(errs, &Error{name, fmt.Sprintf("is missing from %s", o.Source), fixRedeploy})
			return ""
		}
		return v
	}
	s := &DeviceSettings{
		Endpoint:  strings.ToLower(get(contract.OutputIotEndpoint)),
		Bucket:    get(contract.OutputDemoBucketName),
		Region:    get(contract.OutputRegion),
		TopicRoot: get(contract.OutputDeviceTopicRoot),
	}
	tenant := get(contract.OutputTenantID)

	if s.Endpoint != "" && !hostPattern.MatchString(s.Endpoint) {
		errs = append(errs, &Error{contract.OutputIotEndpoint, fmt.Sprintf("%q is not a host name (want <prefix>-ats.iot.<region>.amazonaws.com)", s.Endpoint),
			"check 'aws iot describe-endpoint --endpoint-type iot:Data-ATS' and " + fixRedeploy})
	}
	if s.Bucket != "" && !bucketPattern.MatchString(s.Bucket) {
		errs = append(errs, &Error{contract.OutputDemoBucketName, fmt.Sprintf("%q is not an S3 bucket name", s.Bucket), fixRedeploy})
	}
	if s.Region != "" && !regionPattern.MatchString(s.Region) {
		errs = append(errs, &Error{contract.OutputRegion, fmt.Sprintf("%q is not an AWS region", s.Region), fixRedeploy})
	}
	if s.TopicRoot != "" && !topicPattern.MatchString(s.TopicRoot) {
		errs = append(errs, &Error{contract.OutputDeviceTopicRoot, fmt.Sprintf("%q is not a single MQTT topic level of letters, digits, '_' and '-'", s.TopicRoot), fixRedeploy})
	}
	if tenant != "" {
		if !azsphere.IsTenantID(tenant) {
			errs = append(errs, &Error{contract.OutputTenantID, fmt.Sprintf("%q is not an Azure Sphere tenant id (a GUID like 01234567-89ab-cdef-0123-456789abcdef)", tenant),
				"redeploy with the id from 'az sphere catalog show' (or 'azsphere tenant show-selected'): make deploy CDK_ARGS='-c tenantId=<GUID> ...'"})
		} else {
			s.TenantID = strings.ToLower(tenant)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// OperationsSettings are the checked values the operator tool (fleetctl) needs.
type OperationsSettings struct {
	Name          string // the stack name: the provisionedBy attribute of its things
	CAIDs         []string
	DevicePolicy  string
	DenyListTable string
}

var certIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Operations checks and returns the values fleetctl needs. All problems are reported together.
func (o *Outputs) Operations() (*OperationsSettings, error) {
	var errs []error
	get := func(name string) string {
		v := strings.TrimSpace(o.Values[name])
		if v == "" {
			errs = append(errs, &Error{name, fmt.Sprintf("is missing from %s", o.Source), fixRedeploy})
		}
		return v
	}
	s := &OperationsSettings{Name: o.Stack, DevicePolicy: get(contract.OutputDevicePolicyName), DenyListTable: get(contract.OutputDenyListTable)}
	for _, id := range strings.Split(get(contract.OutputCACertificateIDs), ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if !certIDPattern.MatchString(id) {
			errs = append(errs, &Error{contract.OutputCACertificateIDs, fmt.Sprintf("%q is not a certificate id (64 lower-case hexadecimal characters)", id), fixRedeploy})
			continue
		}
		s.CAIDs = append(s.CAIDs, id)
	}
	if s.Name == "" {
		errs = append(errs, errors.New("the stack name is unknown"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}
