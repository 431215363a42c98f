package localaws

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// StackSpec is what the emulator deploys from a template: the IoT parts CloudFormation-in-moto cannot create, and
// the function the topic rules invoke.
type StackSpec struct {
	CAs      []string   // AWS::IoT::CACertificate logical ids
	Policies []string   // AWS::IoT::Policy logical ids
	Rules    []RuleSpec // AWS::IoT::TopicRule with a Lambda action
	Function string     // logical id of the JITR function (the one with the CA certificate ids in its environment)
	Others   []string   // logical ids of the other functions the rules invoke (the presign function)
	Buckets  []string   // AWS::S3::Bucket logical ids
}

// RuleSpec is a topic rule of the template.
type RuleSpec struct {
	LogicalID string
	Function  string // logical id of the function its Lambda action invokes
}

// ReadStack finds the parts of the stack the emulator runs, by resource type and by the references between them.
func ReadStack(t *Template) (*StackSpec, error) {
	s := &StackSpec{
		CAs:      t.OfType("AWS::IoT::CACertificate"),
		Policies: t.OfType("AWS::IoT::Policy"),
		Buckets:  t.OfType("AWS::S3::Bucket"),
	}
	if len(s.CAs) == 0 {
		return nil, fmt.Errorf("template has no AWS::IoT::CACertificate: synthesize with -c tenantCaCerts=<ca.pem>")
	}
	if len(s.Policies) == 0 {
		return nil, fmt.Errorf("template has no AWS::IoT::Policy for the devices")
	}
	for _, id := range t.OfType("AWS::IoT::TopicRule") {
		actions, _ := t.Prop(id, "TopicRulePayload.Actions").([]any)
		for _, a := range actions {
			m, _ := a.(map[string]any)
			lambda, _ := m["Lambda"].(map[string]any)
			if lambda == nil {
				continue
			}
			fn := ReferencedResource(lambda["FunctionArn"])
			if fn == "" || t.Resources[fn].Type != "AWS::Lambda::Function" {
				return nil, fmt.Errorf("topic rule %s: Lambda action does not point at a function of this template", id)
			}
			env, _ := t.Prop(fn, "Environment.Variables").(map[string]any)
			_, isJitr := env[contract.EnvCACertificateIDs]
			switch {
			case isJitr && s.Function != "" && s.Function != fn:
				return nil, fmt.Errorf("topic rules invoke two JITR functions (%s, %s); the emulator runs one", s.Function, fn)
			case isJitr:
				s.Function = fn
			case !slices.Contains(s.Others, fn):
				s.Others = append(s.Others, fn)
			}
			s.Rules = append(s.Rules, RuleSpec{LogicalID: id, Function: fn})
		}
	}
	if s.Function == "" {
		return nil, fmt.Errorf("template has no AWS::IoT::TopicRule with a Lambda action (the JITR rule)")
	}
	return s, nil
}

var ruleSQL = regexp.MustCompile(`(?is)^\s*SELECT\s+\*\s+FROM\s+'([^']+)'\s*$`)

// RuleTopicFilter returns the topic filter of a rule statement; the emulator supports the form JITR needs,
// SELECT * FROM '<topic filter>', and refuses anything else rather than misread it.
func RuleTopicFilter(sql string) (string, error) {
	m := ruleSQL.FindStringSubmatch(sql)
	if m == nil {
		return "", fmt.Errorf("rule SQL %q: the emulator supports only SELECT * FROM '<topic filter>'", sql)
	}
	return m[1], nil
}

// physicalName invents a name the way CloudFormation does for resources without one: stack, logical id, suffix.
func physicalName(stack, logicalID, suffix string, maxLen int) string {
	id := logicalID
	if len(id) > 40 {
		id = id[:40]
	}
	name := stack + "-" + id + "-" + suffix
	if len(name) > maxLen {
		name = name[len(name)-maxLen:]
		name = strings.TrimLeft(name, "-")
	}
	return name
}
