package stacktemplate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// FunctionPrincipal is the IAM principal a function of the template runs as in the emulator: its own access key,
// the ARN of its execution role, the session Lambda opens for it (named after the function), and every
// identity-based policy of the role as the template states it (AWS::IAM::Policy resources attached to the role and
// the role's inline policies), with the intrinsics resolved by r. A role with managed policies is refused: their
// documents are not in the template, so the emulator could not enforce them.
func FunctionPrincipal(t *Template, r *Resolver, functionID string) (motoserver.Principal, error) {
	fn, ok := t.Resources[functionID]
	if !ok || fn.Type != "AWS::Lambda::Function" {
		return motoserver.Principal{}, fmt.Errorf("function %s: not an AWS::Lambda::Function of the template", functionID)
	}
	roleID := ReferencedResource(fn.Properties["Role"])
	if role, ok := t.Resources[roleID]; !ok || role.Type != "AWS::IAM::Role" {
		return motoserver.Principal{}, fmt.Errorf("function %s: its Role is not an AWS::IAM::Role of the template", functionID)
	}
	if managed := t.Prop(roleID, "ManagedPolicyArns"); managed != nil {
		return motoserver.Principal{}, fmt.Errorf("role %s: managed policies %v are not in the template; the emulator cannot enforce them", roleID, managed)
	}
	roleName, err := r.String(map[string]any{"Ref": roleID})
	if err != nil {
		return motoserver.Principal{}, fmt.Errorf("role %s: name: %w", roleID, err)
	}
	session, err := r.String(map[string]any{"Ref": functionID})
	if err != nil {
		return motoserver.Principal{}, fmt.Errorf("function %s: name: %w", functionID, err)
	}
	p := motoserver.Principal{
		AccessKeyID: motoserver.FunctionAccessKey(functionID),
		RoleArn:     fmt.Sprintf("arn:aws:iam::%s:role/%s", r.Pseudo["AWS::AccountId"], roleName),
		SessionName: session,
	}
	if p.Policies, err = RolePolicies(t, r, roleID); err != nil {
		return motoserver.Principal{}, err
	}
	return p, nil
}

// TeardownFunction returns the logical id of the function serving the registry teardown custom resource.
func TeardownFunction(t *Template) (string, error) {
	for _, id := range t.OfType(contract.TeardownResourceType) {
		fn := ReferencedResource(t.Prop(id, "ServiceToken"))
		if t.Resources[fn].Type == "AWS::Lambda::Function" {
			return fn, nil
		}
	}
	return "", fmt.Errorf("template has no %s served by a function of the template", contract.TeardownResourceType)
}

// RolePolicies returns the identity-based policies of a role of the template as IAM holds them: every
// AWS::IAM::Policy attached to the role and the role's inline policies, intrinsics resolved by r.
func RolePolicies(t *Template, r *Resolver, roleID string) ([]json.RawMessage, error) {
	var docs []any
	for _, id := range t.OfType("AWS::IAM::Policy") {
		roles, _ := t.Prop(id, "Roles").([]any)
		for _, ref := range roles {
			if ReferencedResource(ref) == roleID {
				docs = append(docs, t.Prop(id, "PolicyDocument"))
			}
		}
	}
	inline, _ := t.Prop(roleID, "Policies").([]any)
	for _, p := range inline {
		m, _ := p.(map[string]any)
		docs = append(docs, m["PolicyDocument"])
	}
	var out []json.RawMessage
	for _, d := range docs {
		resolved, err := r.Resolve(d)
		if err != nil {
			return nil, fmt.Errorf("role %s: resolve policy: %w", roleID, err)
		}
		raw, err := json.Marshal(resolved)
		if err != nil {
			return nil, fmt.Errorf("role %s: encode policy: %w", roleID, err)
		}
		out = append(out, raw)
	}
	return out, nil
}

// TemplateResolver resolves a template as if deployed under stackName: the resources the emulator does not create
// get names the way CloudFormation invents them (stack, logical id, random suffix) and ARNs of that name.
func TemplateResolver(t *Template, stackName, region, accountID string) *Resolver {
	return StackResolver(t, stackName, region, accountID, RandomSuffix())
}

// StackResolver is TemplateResolver with the suffix of the invented names given: the deployer names what it
// creates with the same suffix.
func StackResolver(t *Template, stackName, region, accountID, suffix string) *Resolver {
	r := NewResolver(t, stackName, region, accountID)
	r.Fallback = func(logicalID, attr string) (string, bool) {
		name := PhysicalName(stackName, logicalID, suffix, 64)
		if attr == "" {
			return name, true
		}
		if attr == "Arn" {
			svc := strings.ToLower(strings.Split(t.Resources[logicalID].Type+"::x", "::")[1])
			return fmt.Sprintf("arn:aws:%s:%s:%s:%s", svc, region, accountID, name), true
		}
		return "emu-" + name + "-" + attr, true
	}
	return r
}

// MoveGrant edits the template, for the tests that prove IAM is enforced: in the policies of the function's
// role, the actions leave every statement whose resource ends in from and join every statement whose resource
// ends in to (to "" only removes them). Resources are compared as their JSON text, so "cert/*" matches the
// Fn::Join of a cert/* ARN.
func MoveGrant(t *Template, functionID string, actions []string, from, to string) {
	role := ReferencedResource(t.Resources[functionID].Properties["Role"])
	moved := make([]any, len(actions))
	for i, a := range actions {
		moved[i] = a
	}
	endsIn := func(res any, suffix string) bool {
		b, _ := json.Marshal(res)
		return suffix != "" && (strings.HasSuffix(string(b), suffix+`"]]}`) || strings.HasSuffix(string(b), suffix+`"`))
	}
	for _, id := range t.OfType("AWS::IAM::Policy") {
		roles, _ := t.Prop(id, "Roles").([]any)
		if len(roles) == 0 || ReferencedResource(roles[0]) != role {
			continue
		}
		statements, _ := t.Prop(id, "PolicyDocument.Statement").([]any)
		for _, st := range statements {
			m, _ := st.(map[string]any)
			var list []any
			switch a := m["Action"].(type) {
			case []any:
				list = a
			default:
				list = []any{a}
			}
			switch {
			case endsIn(m["Resource"], from):
				var keep []any
				for _, a := range list {
					if !slices.Contains(moved, a) {
						keep = append(keep, a)
					}
				}
				m["Action"] = keep
			case endsIn(m["Resource"], to):
				m["Action"] = append(append([]any{}, list...), moved...)
			}
		}
	}
}

// Clone returns a deep copy of the template, for making variants of it.
func (t *Template) Clone() *Template {
	data, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("clone template: %v", err))
	}
	var c Template
	if err := json.Unmarshal(data, &c); err != nil {
		panic(fmt.Sprintf("clone template: %v", err))
	}
	return &c
}

// SnapshotRole is how a test runs a function of a synthesized template as its role: Template is the template file,
// Stack the stack name it is resolved under, Edit (optional) changes the template first (e.g. to break a grant),
// Pin (optional) fixes what references resolve to (the test's own resources), and Function picks the function.
type SnapshotRole struct {
	Template string
	Stack    string
	Edit     func(*Template)
	Pin      func(*Template, *Resolver)
	Function func(*Template) (string, error)
}

// Register reads the function's role from the template and registers it with moto, which from then on authorizes
// every call signed with the returned principal's credentials by IAM's rules against the role's policies.
func (s SnapshotRole) Register(ctx context.Context, moto *motoserver.Server) (motoserver.Principal, error) {
	tmpl, err := LoadTemplate(s.Template)
	if err != nil {
		return motoserver.Principal{}, err
	}
	if s.Edit != nil {
		s.Edit(tmpl)
	}
	fn, err := s.Function(tmpl)
	if err != nil {
		return motoserver.Principal{}, err
	}
	r := TemplateResolver(tmpl, s.Stack, motoserver.Region, motoserver.AccountID)
	if s.Pin != nil {
		s.Pin(tmpl, r)
	}
	p, err := FunctionPrincipal(tmpl, r, fn)
	if err != nil {
		return motoserver.Principal{}, err
	}
	return p, moto.RegisterPrincipal(ctx, p)
}

// JitrFunction returns the logical id of the template's JITR function.
func JitrFunction(t *Template) (string, error) {
	spec, err := ReadStack(t)
	if err != nil {
		return "", err
	}
	return spec.Function, nil
}
