package teardown

import (
	"context"
	"fmt"

	"github.com/aws/aws-lambda-go/cfn"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// HandleEvent is the custom resource's handler (wrap it with cfn.LambdaWrap). It acts on Delete only, unless
// the registry is retained (retainRegistry: then nothing is removed, and the devices lock themselves out at their
// next certificate rotation, see config.RetainRegistryLockout); on Update it removes the certificates of tenant CAs that left the stack (their CA
// registration is deleted next), and on Create it does nothing. The physical id never changes, because a new
// one would make CloudFormation delete the old resource, and so empty the registry.
func (t *Teardown) HandleEvent(ctx context.Context, e cfn.Event) (string, map[string]any, error) {
	physicalID := e.PhysicalResourceID
	if e.RequestType == cfn.RequestCreate {
		physicalID = "registry-teardown-" + e.LogicalResourceID
	}
	props := e.ResourceProperties
	if e.RequestType == cfn.RequestDelete && retained(props) {
		t.log.Info("registry retained: nothing removed", "step", "delete")
		return physicalID, nil, nil
	}

	var scope Scope
	switch e.RequestType {
	case cfn.RequestDelete:
		scope = Scope{CACertificateIDs: stringList(props[contract.PropCACertificateIDs]), PolicyName: str(props[contract.PropPolicyName]), ProvisionedBy: str(props[contract.PropProvisionedBy])}
	case cfn.RequestUpdate:
		if retained(props) {
			return physicalID, nil, nil
		}
		scope = Scope{CACertificateIDs: removed(stringList(e.OldResourceProperties[contract.PropCACertificateIDs]), stringList(props[contract.PropCACertificateIDs])),
			PolicyName: str(e.OldResourceProperties[contract.PropPolicyName])}
		if len(scope.CACertificateIDs) == 0 {
			return physicalID, nil, nil
		}
	default:
		return physicalID, nil, nil
	}

	return t.remove(ctx, e, physicalID, scope)
}

// retained reports whether the resource's properties ask to keep the registry, under the property's current name
// or the one it had before the rename (a resource deployed before it still carries that one).
func retained(props map[string]any) bool {
	return fmt.Sprint(props[contract.PropRetainRegistry]) == "true" || fmt.Sprint(props[contract.PropRetainDevicesLegacy]) == "true"
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func stringList(v any) []string {
	var out []string
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
	case []string:
		out = t
	case string:
		if t != "" {
			out = []string{t}
		}
	}
	return out
}

// removed returns the ids in old that are not in current.
func removed(old, current []string) []string {
	keep := map[string]bool{}
	for _, c := range current {
		keep[c] = true
	}
	var out []string
	for _, o := range old {
		if !keep[o] {
			out = append(out, o)
		}
	}
	return out
}
