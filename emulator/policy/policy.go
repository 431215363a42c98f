// Package policy evaluates the AWS policy documents the emulator enforces itself: the IoT policies the broker
// checks on CONNECT, PUBLISH, SUBSCRIBE and RECEIVE, and the statements of a function's role that the S3 gate and
// the IoT data endpoint check (moto's IAM layer, testkit/moto/iam.py, checks the calls that reach moto).
package policy

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Policy is a parsed AWS IoT policy document. Evaluation follows AWS IoT: an explicit Deny wins, then any Allow,
// otherwise the request is denied.
type Policy struct {
	Statements []Statement
}

// Statement is one policy statement after parsing.
type Statement struct {
	Allow      bool
	Actions    []string
	Resources  []string
	Conditions []Condition
}

// Condition is one (operator, key, values) test of a statement's Condition block.
type Condition struct {
	Operator string // e.g. Bool, StringEquals, StringLike
	IfExists bool
	Key      string
	Values   []string
}

// Request is what a client asks to do, with the facts of its connection the policy can refer to.
type Request struct {
	Action   string            // iot:Connect, iot:Publish, iot:Subscribe, iot:Receive
	Resource string            // ARN of the client, topic or topic filter
	Vars     map[string]string // policy variables and condition keys, e.g. "iot:ClientId"
}

// Parse reads a policy document (JSON text).
func Parse(doc []byte) (*Policy, error) {
	var raw struct {
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("decode policy: %w", err)
	}
	var stmts []map[string]any
	if err := json.Unmarshal(raw.Statement, &stmts); err != nil {
		var one map[string]any
		if err2 := json.Unmarshal(raw.Statement, &one); err2 != nil {
			return nil, fmt.Errorf("decode policy statements: %w", err)
		}
		stmts = []map[string]any{one}
	}
	p := &Policy{}
	for i, s := range stmts {
		st, err := parseStatement(s)
		if err != nil {
			return nil, fmt.Errorf("statement %d: %w", i, err)
		}
		p.Statements = append(p.Statements, st)
	}
	return p, nil
}

var supportedOperators = map[string]bool{
	"Bool": true, "StringEquals": true, "StringNotEquals": true, "StringEqualsIgnoreCase": true,
	"StringLike": true, "StringNotLike": true, "ArnEquals": true, "ArnLike": true, "Null": true,
}

func parseStatement(s map[string]any) (Statement, error) {
	var st Statement
	switch s["Effect"] {
	case "Allow":
		st.Allow = true
	case "Deny":
	default:
		return st, fmt.Errorf("effect %v is neither Allow nor Deny", s["Effect"])
	}
	if _, ok := s["NotAction"]; ok {
		return st, fmt.Errorf("NotAction is not supported by the emulator")
	}
	if _, ok := s["NotResource"]; ok {
		return st, fmt.Errorf("NotResource is not supported by the emulator")
	}
	var err error
	if st.Actions, err = stringList(s["Action"]); err != nil {
		return st, fmt.Errorf("action: %w", err)
	}
	if st.Resources, err = stringList(s["Resource"]); err != nil {
		return st, fmt.Errorf("resource: %w", err)
	}
	conds, _ := s["Condition"].(map[string]any)
	for op, block := range conds {
		base, ifExists := strings.CutSuffix(op, "IfExists")
		if !supportedOperators[base] {
			return st, fmt.Errorf("condition operator %s is not supported by the emulator", op)
		}
		keys, ok := block.(map[string]any)
		if !ok {
			return st, fmt.Errorf("condition %s is not an object", op)
		}
		for key, v := range keys {
			values, err := stringList(v)
			if err != nil {
				return st, fmt.Errorf("condition %s %s: %w", op, key, err)
			}
			st.Conditions = append(st.Conditions, Condition{Operator: base, IfExists: ifExists, Key: key, Values: values})
		}
	}
	return st, nil
}

func stringList(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case bool:
		return []string{fmt.Sprint(x)}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			switch s := e.(type) {
			case string:
				out = append(out, s)
			case bool:
				out = append(out, fmt.Sprint(s))
			default:
				return nil, fmt.Errorf("%v is not a string", e)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%v is neither a string nor a list", v)
	}
}

// Allowed evaluates the request against all policies together, as AWS IoT does for the policies attached to a
// certificate: deny by default, any matching Deny wins over every Allow.
func Allowed(req Request, policies ...*Policy) bool {
	allowed := false
	for _, p := range policies {
		for _, st := range p.Statements {
			if !st.matches(req) {
				continue
			}
			if !st.Allow {
				return false
			}
			allowed = true
		}
	}
	return allowed
}

func (st Statement) matches(req Request) bool {
	if !anyMatch(st.Actions, req.Action, req.Vars, true) {
		return false
	}
	if !anyMatch(st.Resources, req.Resource, req.Vars, false) {
		return false
	}
	for _, c := range st.Conditions {
		if !c.holds(req.Vars) {
			return false
		}
	}
	return true
}

func anyMatch(patterns []string, value string, vars map[string]string, foldCase bool) bool {
	for _, p := range patterns {
		expanded, ok := expandVariables(p, vars)
		if !ok {
			continue // a variable that cannot be resolved makes the pattern match nothing
		}
		if foldCase {
			expanded, value = strings.ToLower(expanded), strings.ToLower(value)
		}
		if globMatch(expanded, value) {
			return true
		}
	}
	return false
}

func (c Condition) holds(vars map[string]string) bool {
	actual, present := vars[c.Key]
	if c.Operator == "Null" {
		want := len(c.Values) > 0 && strings.EqualFold(c.Values[0], "true")
		return want == !present
	}
	if !present {
		return c.IfExists
	}
	negate := false
	for _, v := range c.Values {
		expanded, ok := expandVariables(v, vars)
		if !ok {
			continue
		}
		var hit bool
		switch c.Operator {
		case "Bool":
			hit = strings.EqualFold(actual, expanded)
		case "StringEquals", "ArnEquals":
			hit = actual == expanded
		case "StringEqualsIgnoreCase":
			hit = strings.EqualFold(actual, expanded)
		case "StringLike", "ArnLike":
			hit = globMatch(expanded, actual)
		case "StringNotEquals":
			negate, hit = true, actual == expanded
		case "StringNotLike":
			negate, hit = true, globMatch(expanded, actual)
		}
		if hit {
			return !negate
		}
	}
	return negate
}

// expandVariables substitutes ${name} policy variables; ok is false when one is unknown for this connection.
func expandVariables(pattern string, vars map[string]string) (string, bool) {
	if !strings.Contains(pattern, "${") {
		return pattern, true
	}
	var b strings.Builder
	for {
		i := strings.Index(pattern, "${")
		if i < 0 {
			b.WriteString(pattern)
			return b.String(), true
		}
		j := strings.Index(pattern[i:], "}")
		if j < 0 {
			return "", false
		}
		name := pattern[i+2 : i+j]
		v, ok := vars[name]
		if !ok {
			return "", false
		}
		b.WriteString(pattern[:i])
		b.WriteString(v)
		pattern = pattern[i+j+1:]
	}
}

// globMatch matches IAM-style wildcards: * is any run of characters (slashes included), ? is one character.
// MQTT wildcards (+, #) in a topic filter are ordinary characters here, as in AWS IoT policies.
func globMatch(pattern, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case px < len(pattern) && pattern[px] == '*':
			starP, starS = px, sx
			px++
		case starP >= 0:
			px = starP + 1
			starS++
			sx = starS
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
