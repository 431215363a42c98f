package stacktemplate

import (
	"crypto/rand"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// StackSpec is what the emulator deploys from a template: the IoT parts CloudFormation-in-moto cannot create, and
// the function the topic rules invoke.
type StackSpec struct {
	CAs      []string   // AWS::IoT::CACertificate logical ids
	Policies []string   // AWS::IoT::Policy logical ids
	Rules    []RuleSpec // AWS::IoT::TopicRule with a Lambda or an SQS action
	Function string     // logical id of the JITR function (the one with the CA certificate ids in its environment)
	Others   []string   // logical ids of the other functions the rules invoke (the presign function)
	Buckets  []string   // AWS::S3::Bucket logical ids
	Queues   []string   // AWS::SQS::Queue logical ids
	// Mappings are the event source mappings of SQS queues to the JITR function.
	Mappings []MappingSpec
	// Schedules are the EventBridge schedules that invoke the JITR function.
	Schedules []ScheduleSpec
}

// RuleSpec is a topic rule of the template.
type RuleSpec struct {
	LogicalID string
	Function  string // logical id of the function its Lambda action invokes, or ""
	Queue     string // logical id of the queue its SQS action sends to, or ""
}

// MappingSpec is an AWS::Lambda::EventSourceMapping of an SQS queue, with the settings Lambda honours.
type MappingSpec struct {
	LogicalID      string
	Queue          string // logical id of the queue
	BatchSize      int
	BatchWindow    time.Duration
	MaxConcurrency int // ScalingConfig.MaximumConcurrency; 0 when unset
	ReportFailures bool
}

// ScheduleSpec is an AWS::Events::Rule with a rate schedule that targets the JITR function.
type ScheduleSpec struct {
	LogicalID string
	Every     time.Duration
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
	s.Queues = t.OfType("AWS::SQS::Queue")
	// Order matters: the mappings name the JITR function, the schedules are those of that function.
	for _, read := range []func(*Template) error{s.readMappings, s.readSchedules, s.readRules} {
		if err := read(t); err != nil {
			return nil, err
		}
	}
	if s.Function == "" {
		return nil, fmt.Errorf("template has no JITR function: no event source mapping and no topic rule with a Lambda action feeds it")
	}
	return s, nil
}

// readMappings reads the SQS event source mappings; the function they feed is the JITR function.
func (s *StackSpec) readMappings(t *Template) error {
	for _, id := range t.OfType("AWS::Lambda::EventSourceMapping") {
		fn := ReferencedResource(t.Prop(id, "FunctionName"))
		queue := ReferencedResource(t.Prop(id, "EventSourceArn"))
		if t.Resources[queue].Type != "AWS::SQS::Queue" || t.Resources[fn].Type != "AWS::Lambda::Function" {
			return fmt.Errorf("event source mapping %s: the emulator runs SQS mappings to a function of this template", id)
		}
		env, _ := t.Prop(fn, "Environment.Variables").(map[string]any)
		if _, isJitr := env[contract.EnvCACertificateIDs]; !isJitr {
			return fmt.Errorf("event source mapping %s: the emulator runs mappings to the JITR function only", id)
		}
		if s.Function != "" && s.Function != fn {
			return fmt.Errorf("event source mappings feed two JITR functions (%s, %s); the emulator runs one", s.Function, fn)
		}
		s.Function = fn
		m := MappingSpec{LogicalID: id, Queue: queue, BatchSize: 10}
		if n, ok := t.Prop(id, "BatchSize").(float64); ok {
			m.BatchSize = int(n)
		}
		if n, ok := t.Prop(id, "MaximumBatchingWindowInSeconds").(float64); ok {
			m.BatchWindow = time.Duration(n) * time.Second
		}
		if n, ok := t.Prop(id, "ScalingConfig.MaximumConcurrency").(float64); ok {
			m.MaxConcurrency = int(n)
		}
		types, _ := t.Prop(id, "FunctionResponseTypes").([]any)
		m.ReportFailures = slices.Contains(types, any("ReportBatchItemFailures"))
		s.Mappings = append(s.Mappings, m)
	}
	return nil
}

// readSchedules reads the rate schedules that target the JITR function.
func (s *StackSpec) readSchedules(t *Template) error {
	for _, id := range t.OfType("AWS::Events::Rule") {
		expr, _ := t.Prop(id, "ScheduleExpression").(string)
		targets, _ := t.Prop(id, "Targets").([]any)
		for _, tg := range targets {
			m, _ := tg.(map[string]any)
			if s.Function == "" || ReferencedResource(m["Arn"]) != s.Function {
				continue
			}
			every, err := rateExpression(expr)
			if err != nil {
				return fmt.Errorf("schedule %s: %w", id, err)
			}
			s.Schedules = append(s.Schedules, ScheduleSpec{LogicalID: id, Every: every})
		}
	}
	return nil
}

// readRules reads the topic rules with an SQS or a Lambda action; a Lambda action names the JITR function or another
// function the emulator runs.
func (s *StackSpec) readRules(t *Template) error {
	for _, id := range t.OfType("AWS::IoT::TopicRule") {
		actions, _ := t.Prop(id, "TopicRulePayload.Actions").([]any)
		for _, a := range actions {
			m, _ := a.(map[string]any)
			if q, _ := m["Sqs"].(map[string]any); q != nil {
				queue := ReferencedResource(q["QueueUrl"])
				if t.Resources[queue].Type != "AWS::SQS::Queue" {
					return fmt.Errorf("topic rule %s: SQS action does not point at a queue of this template", id)
				}
				s.Rules = append(s.Rules, RuleSpec{LogicalID: id, Queue: queue})
				continue
			}
			lambda, _ := m["Lambda"].(map[string]any)
			if lambda == nil {
				continue
			}
			fn := ReferencedResource(lambda["FunctionArn"])
			if fn == "" || t.Resources[fn].Type != "AWS::Lambda::Function" {
				return fmt.Errorf("topic rule %s: Lambda action does not point at a function of this template", id)
			}
			env, _ := t.Prop(fn, "Environment.Variables").(map[string]any)
			_, isJitr := env[contract.EnvCACertificateIDs]
			switch {
			case isJitr && s.Function != "" && s.Function != fn:
				return fmt.Errorf("topic rules invoke two JITR functions (%s, %s); the emulator runs one", s.Function, fn)
			case isJitr:
				s.Function = fn
			case !slices.Contains(s.Others, fn):
				s.Others = append(s.Others, fn)
			}
			s.Rules = append(s.Rules, RuleSpec{LogicalID: id, Function: fn})
		}
	}
	return nil
}

var rateExpr = regexp.MustCompile(`^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$`)

// rateExpression reads an EventBridge rate(...) schedule expression.
func rateExpression(expr string) (time.Duration, error) {
	m := rateExpr.FindStringSubmatch(expr)
	if m == nil {
		return 0, fmt.Errorf("schedule expression %q: the emulator runs rate(N minutes|hours|days) only", expr)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}[strings.TrimSuffix(m[2], "s")]
	return time.Duration(n) * unit, nil
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

// PhysicalName invents a name the way CloudFormation does for resources without one: stack, logical id, suffix.
func PhysicalName(stack, logicalID, suffix string, maxLen int) string {
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

// RandomSuffix is the random part CloudFormation appends to the names it invents.
func RandomSuffix() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
