package deploy

// The template's custom resources that the product's own functions serve: Custom::IoTAccountSettings (fleet
// indexing and AWS IoT logging, account-wide) and Custom::RegistryTeardown (what `cdk destroy` removes from the
// registry). The emulator sends them CloudFormation's requests, Create at deploy and Delete at destroy.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/cfn"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// customResourceKinds are the custom-resource types the emulator serves, in the order CloudFormation creates them
// here (the teardown needs nothing the account settings make), and the function kind that serves each.
var customResourceKinds = []struct {
	Type string
	Kind Kind
}{{contract.AccountSettingsResourceType, KindAccountSettings}, {contract.TeardownResourceType, KindTeardown}}

// CustomResource is a custom resource of the template served by one of the product's functions: its type, the
// function that serves it, its role's identity (FunctionID, for stacktemplate.FunctionPrincipal) and its
// properties, resolved.
type CustomResource struct {
	Type       string
	Kind       Kind
	LogicalID  string
	FunctionID string
	Function   string // physical name
	LogGroup   string // where the function's lines go
	Properties map[string]any
}

// customResources names the functions behind the custom resources; the emulator runs them once its identities
// exist.
func (dp *deployer) customResources(context.Context) error {
	for _, k := range customResourceKinds {
		for _, id := range dp.t.OfType(k.Type) {
			fn := stacktemplate.ReferencedResource(dp.t.Prop(id, "ServiceToken"))
			if dp.t.Resources[fn].Type != "AWS::Lambda::Function" {
				return fmt.Errorf("%s %s: its ServiceToken is not a function of this template", k.Type, id)
			}
			name := stacktemplate.PhysicalName(dp.opts.StackName, fn, dp.suffix, 64)
			arn := fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", dp.opts.Region, dp.opts.AccountID, name)
			dp.r.Refs[fn] = name
			dp.r.Attrs[fn+".Arn"] = arn
			// CloudFormation invokes it once per request: no retries, no destination.
			dp.d.Functions[fn] = &Function{LogicalID: fn, Name: name, ARN: arn, Kind: k.Kind, Timeout: dp.timeout(fn)}
			dp.d.CustomResources = append(dp.d.CustomResources, CustomResource{Type: k.Type, Kind: k.Kind, LogicalID: id, FunctionID: fn, Function: name})
		}
	}
	return nil
}

// customResourceProperties resolves the resources' properties, once everything they reference exists.
func (dp *deployer) customResourceProperties(context.Context) error {
	for i := range dp.d.CustomResources {
		cr := &dp.d.CustomResources[i]
		props := map[string]any{}
		for k, v := range dp.t.Resources[cr.LogicalID].Properties {
			if k == "ServiceToken" {
				continue
			}
			rv, err := dp.r.Resolve(v)
			if err != nil {
				return fmt.Errorf("%s %s property %s: %w", cr.Type, cr.LogicalID, k, err)
			}
			props[k] = rv
		}
		cr.Properties = props
		cr.LogGroup = dp.functionLogGroup(cr.FunctionID, cr.Function)
	}
	return nil
}

// timeout is the function's Timeout property (Lambda's default, 3 s, without one).
func (dp *deployer) timeout(fn string) time.Duration {
	if s, ok := dp.t.Prop(fn, "Timeout").(float64); ok {
		return time.Duration(s) * time.Second
	}
	return 3 * time.Second
}

// ServiceTimeout is how long CloudFormation waits for the resource's response: its ServiceTimeout property, or
// the custom resource's default, an hour.
func (cr CustomResource) ServiceTimeout() time.Duration {
	if s, err := strconv.Atoi(fmt.Sprint(cr.Properties["ServiceTimeout"])); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return time.Hour
}

// Event is CloudFormation's request for the resource, as its function receives it: Create (physicalID "") or
// Delete (physicalID: what the Create answered). The function sends its response to responseURL.
func (cr CustomResource) Event(request cfn.RequestType, physicalID, stackName, region, account, responseURL string) cfn.Event {
	return cfn.Event{
		RequestType: request, RequestID: fmt.Sprintf("emulator-%d", time.Now().UnixNano()), ResponseURL: responseURL,
		StackID:           fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/emulator", region, account, stackName),
		LogicalResourceID: cr.LogicalID, PhysicalResourceID: physicalID, ResourceType: cr.Type, ResourceProperties: cr.Properties,
	}
}
