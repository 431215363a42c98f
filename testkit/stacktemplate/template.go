// Package stacktemplate reads the synthesized CloudFormation template as the emulator deploys it: the template
// model and its intrinsic-function resolver, the parts of the stack found by type and reference (ReadStack), and the
// identity a function of the template runs as (its role's policies, FunctionPrincipal), which the product's tests
// register with moto to call AWS as the function would.
package stacktemplate

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Template is a synthesized CloudFormation template, read generically: resources are found by type and by the
// references between them, never by logical id, so a refactored stack still deploys into the emulator.
type Template struct {
	Parameters map[string]Parameter `json:"Parameters"`
	Resources  map[string]Resource  `json:"Resources"`
	Outputs    map[string]Output    `json:"Outputs"`
}

// Parameter is a template parameter; the emulator only ever uses its default.
type Parameter struct {
	Type    string `json:"Type"`
	Default any    `json:"Default"`
}

// Resource is one template resource with its properties left as decoded JSON.
type Resource struct {
	Type       string         `json:"Type"`
	Properties map[string]any `json:"Properties"`
	// DeletionPolicy is what CloudFormation does with the resource when the stack is deleted ("" is Delete).
	DeletionPolicy string `json:"DeletionPolicy,omitempty"`
}

// Output is one template output.
type Output struct {
	Value any `json:"Value"`
}

// LoadTemplate reads a template written by `cdk synth`.
func LoadTemplate(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w (run 'make synth' first)", err)
	}
	return ParseTemplate(data)
}

// ParseTemplate decodes a template from JSON.
func ParseTemplate(data []byte) (*Template, error) {
	var t Template
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("decode template: %w", err)
	}
	if len(t.Resources) == 0 {
		return nil, fmt.Errorf("template has no resources")
	}
	return &t, nil
}

// OfType returns the logical ids of the resources of the given type, sorted.
func (t *Template) OfType(typ string) []string {
	var ids []string
	for id, r := range t.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Prop returns a property of a resource by a dotted path ("TopicRulePayload.Sql"), or nil.
func (t *Template) Prop(logicalID, path string) any {
	r, ok := t.Resources[logicalID]
	if !ok {
		return nil
	}
	var v any = r.Properties
	for _, key := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[key]
	}
	return v
}

// ReferencedResource returns the logical id a value points at through Ref or Fn::GetAtt, or "".
func ReferencedResource(v any) string {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return ""
	}
	if ref, ok := m["Ref"].(string); ok {
		return ref
	}
	switch ga := m["Fn::GetAtt"].(type) {
	case []any:
		if len(ga) == 2 {
			id, _ := ga[0].(string)
			return id
		}
	case string:
		id, _, _ := strings.Cut(ga, ".")
		return id
	}
	return ""
}

// Resolver evaluates the intrinsic functions a CDK template uses (Ref, Fn::GetAtt, Fn::Join, Fn::Sub,
// Fn::Select, Fn::Split) and pseudo parameters, against the physical ids the emulator assigned when it deployed.
type Resolver struct {
	Template *Template
	Pseudo   map[string]string // AWS::Region, AWS::AccountId, ...
	Refs     map[string]string // logical id → what Ref returns
	Attrs    map[string]string // "LogicalId.Attribute" → what Fn::GetAtt returns
	// Fallback names a resource the emulator did not deploy (a role, a queue, a custom resource), so that values
	// mentioning it still resolve to something plausible. It may be nil.
	Fallback func(logicalID, attr string) (string, bool)
}

// NewResolver returns a resolver with the pseudo parameters of a stack in the given account and region.
func NewResolver(t *Template, stackName, region, accountID string) *Resolver {
	return &Resolver{
		Template: t,
		Pseudo: map[string]string{
			"AWS::Region":    region,
			"AWS::AccountId": accountID,
			"AWS::Partition": "aws",
			"AWS::StackName": stackName,
			"AWS::StackId":   fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/00000000-0000-0000-0000-000000000000", region, accountID, stackName),
			"AWS::URLSuffix": "amazonaws.com",
		},
		Refs:  map[string]string{},
		Attrs: map[string]string{},
	}
}

// Resolve evaluates every intrinsic function in v and returns plain JSON values.
func (r *Resolver) Resolve(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") {
					return r.intrinsic(k, arg)
				}
			}
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			rv, err := r.Resolve(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = rv
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(x))
		for i, e := range x {
			rv, err := r.Resolve(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out = append(out, rv)
		}
		return out, nil
	default:
		return v, nil
	}
}

// String resolves v and requires a string result.
func (r *Resolver) String(v any) (string, error) {
	rv, err := r.Resolve(v)
	if err != nil {
		return "", err
	}
	return scalarString(rv)
}

func scalarString(v any) (string, error) {
	switch s := v.(type) {
	case string:
		return s, nil
	case float64:
		return strconv.FormatFloat(s, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(s), nil
	default:
		return "", fmt.Errorf("value %v is not a string", v)
	}
}

func (r *Resolver) intrinsic(fn string, arg any) (any, error) {
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("argument of Ref %v is not a name", arg)
		}
		return r.ref(name)
	case "Fn::GetAtt":
		var id, attr string
		switch a := arg.(type) {
		case []any:
			if len(a) != 2 {
				return nil, fmt.Errorf("Fn::GetAtt wants [id, attribute], got %v", a)
			}
			id, _ = a[0].(string)
			attrV, err := r.Resolve(a[1])
			if err != nil {
				return nil, err
			}
			attr, _ = attrV.(string)
		case string:
			id, attr, _ = strings.Cut(a, ".")
		}
		if id == "" || attr == "" {
			return nil, fmt.Errorf("Fn::GetAtt argument %v is malformed", arg)
		}
		return r.getAtt(id, attr)
	case "Fn::Join":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, fmt.Errorf("Fn::Join wants [separator, [values]], got %v", arg)
		}
		sep, _ := a[0].(string)
		listV, err := r.Resolve(a[1])
		if err != nil {
			return nil, err
		}
		list, ok := listV.([]any)
		if !ok {
			return nil, fmt.Errorf("Fn::Join values are not a list: %v", listV)
		}
		parts := make([]string, 0, len(list))
		for _, e := range list {
			s, err := scalarString(e)
			if err != nil {
				return nil, fmt.Errorf("Fn::Join: %w", err)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, sep), nil
	case "Fn::Select":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, fmt.Errorf("Fn::Select wants [index, list], got %v", arg)
		}
		idxV, err := r.Resolve(a[0])
		if err != nil {
			return nil, err
		}
		idxS, err := scalarString(idxV)
		if err != nil {
			return nil, err
		}
		idx, err := strconv.Atoi(idxS)
		if err != nil {
			return nil, fmt.Errorf("Fn::Select index %q: %w", idxS, err)
		}
		listV, err := r.Resolve(a[1])
		if err != nil {
			return nil, err
		}
		list, ok := listV.([]any)
		if !ok || idx < 0 || idx >= len(list) {
			return nil, fmt.Errorf("Fn::Select index %d out of range of %v", idx, listV)
		}
		return list[idx], nil
	case "Fn::Split":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, fmt.Errorf("Fn::Split wants [separator, string], got %v", arg)
		}
		sep, _ := a[0].(string)
		s, err := r.String(a[1])
		if err != nil {
			return nil, err
		}
		var out []any
		for _, p := range strings.Split(s, sep) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::Sub":
		return r.sub(arg)
	default:
		return nil, fmt.Errorf("intrinsic %s is not supported by the emulator", fn)
	}
}

func (r *Resolver) ref(name string) (string, error) {
	if v, ok := r.Pseudo[name]; ok {
		return v, nil
	}
	if v, ok := r.Refs[name]; ok {
		return v, nil
	}
	if p, ok := r.Template.Parameters[name]; ok {
		if p.Default == nil {
			return "", fmt.Errorf("parameter %s has no default", name)
		}
		return scalarString(p.Default)
	}
	if _, ok := r.Template.Resources[name]; ok && r.Fallback != nil {
		if v, ok := r.Fallback(name, ""); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("resolve Ref %s: no such parameter, or resource the emulator knows", name)
}

func (r *Resolver) getAtt(id, attr string) (string, error) {
	if v, ok := r.Attrs[id+"."+attr]; ok {
		return v, nil
	}
	if _, ok := r.Template.Resources[id]; ok && r.Fallback != nil {
		if v, ok := r.Fallback(id, attr); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("Fn::GetAtt %s.%s: unknown to the emulator", id, attr)
}

func (r *Resolver) sub(arg any) (any, error) {
	var text string
	vars := map[string]string{}
	switch a := arg.(type) {
	case string:
		text = a
	case []any:
		if len(a) != 2 {
			return nil, fmt.Errorf("Fn::Sub wants string or [string, {vars}], got %v", arg)
		}
		text, _ = a[0].(string)
		m, _ := a[1].(map[string]any)
		for k, v := range m {
			s, err := r.String(v)
			if err != nil {
				return nil, fmt.Errorf("Fn::Sub variable %s: %w", k, err)
			}
			vars[k] = s
		}
	default:
		return nil, fmt.Errorf("Fn::Sub argument %v is malformed", arg)
	}
	var b strings.Builder
	for {
		i := strings.Index(text, "${")
		if i < 0 {
			b.WriteString(text)
			return b.String(), nil
		}
		b.WriteString(text[:i])
		rest := text[i+2:]
		if strings.HasPrefix(rest, "!") { // ${!Literal} stands for ${Literal}
			j := strings.Index(rest, "}")
			if j < 0 {
				return nil, fmt.Errorf("Fn::Sub: unterminated ${ in %q", text)
			}
			b.WriteString("${" + rest[1:j+1])
			text = rest[j+1:]
			continue
		}
		j := strings.Index(rest, "}")
		if j < 0 {
			return nil, fmt.Errorf("Fn::Sub: unterminated ${ in %q", text)
		}
		name := rest[:j]
		text = rest[j+1:]
		if v, ok := vars[name]; ok {
			b.WriteString(v)
			continue
		}
		var (
			v   string
			err error
		)
		if id, attr, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, "AWS::") {
			v, err = r.getAtt(id, attr)
		} else {
			v, err = r.ref(name)
		}
		if err != nil {
			return nil, fmt.Errorf("Fn::Sub: %w", err)
		}
		b.WriteString(v)
	}
}
