package stacks

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// ---- issue 16: deny-list, CA check, alarms, dashboard -------------------------------------------------------------

func onlyOne(t *testing.T, s *synthesized, typ string) (string, map[string]any) {
	t.Helper()
	return onlyOneOf(t, s, typ, "")
}

// onlyOneOf returns the one resource of type typ whose logical id starts with prefix.
func onlyOneOf(t *testing.T, s *synthesized, typ, prefix string) (string, map[string]any) {
	t.Helper()
	rs := resources(s, typ)
	for id := range rs {
		if !strings.HasPrefix(id, prefix) {
			delete(rs, id)
		}
	}
	if len(rs) != 1 {
		t.Fatalf("%d %s resources named %s…, want 1", len(rs), typ, prefix)
	}
	for id, r := range rs {
		return id, r
	}
	return "", nil
}

func TestDenyListTable(t *testing.T) {
	for name, s := range map[string]*synthesized{"one CA": oneCA, "retained": retained} {
		id, table := onlyOneOf(t, s, "AWS::DynamoDB::Table", "DenyList")
		p := props(table)
		if got := asJSON(p["KeySchema"]); got != `[{"AttributeName":"`+contract.DenyListKey+`","KeyType":"HASH"}]` {
			t.Errorf("%s: key schema %s", name, got)
		}
		if p["BillingMode"] != "PAY_PER_REQUEST" {
			t.Errorf("%s: billing mode %v, want on-demand", name, p["BillingMode"])
		}
		if got := asJSON(p["SSESpecification"]); !strings.Contains(got, `"SSEEnabled":true`) {
			t.Errorf("%s: encryption %s, want SSE with the AWS managed key", name, got)
		}
		if got := asJSON(p["PointInTimeRecoverySpecification"]); !strings.Contains(got, `"PointInTimeRecoveryEnabled":true`) {
			t.Errorf("%s: point-in-time recovery %s", name, got)
		}
		wantPolicy := "Delete"
		if s == retained {
			wantPolicy = "Retain"
		}
		if table["DeletionPolicy"] != wantPolicy {
			t.Errorf("%s: deletion policy %v, want %s", name, table["DeletionPolicy"], wantPolicy)
		}
		env := asJSON(props(onlyJitrFunction(t, s))["Environment"])
		if !strings.Contains(env, `"`+contract.EnvDenyListTable+`":{"Ref":"`+id+`"}`) {
			t.Errorf("%s: JITR environment %s does not name the table %s", name, env, id)
		}
	}
}

func onlyJitrFunction(t *testing.T, s *synthesized) map[string]any {
	t.Helper()
	for id, f := range resources(s, "AWS::Lambda::Function") {
		if strings.HasPrefix(id, "JitrFunction") {
			return f
		}
	}
	t.Fatal("no JITR function")
	return nil
}

// TestOnlyTheJitrRoleReadsTheDenyListAndOnlyWithGetItem: the JITR role may only read the table, with exactly the
// call the code makes, on the table resource type; besides, it writes its own ledger with exactly the calls the
// code makes; no other role of the stack touches DynamoDB.
func TestOnlyTheJitrRoleReadsTheDenyListAndOnlyWithGetItem(t *testing.T) {
	tableID, _ := onlyOneOf(t, oneCA, "AWS::DynamoDB::Table", "DenyList")
	ledgerID, _ := onlyOneOf(t, oneCA, "AWS::DynamoDB::Table", "JitrLedger")
	found, ledger, index := false, false, false
	for id, p := range resources(oneCA, "AWS::IAM::Policy") {
		for _, st := range stmts(props(p)["PolicyDocument"]) {
			var ddb []string
			for _, a := range list(st["Action"]) {
				if strings.HasPrefix(a, "dynamodb:") {
					ddb = append(ddb, a)
				}
			}
			if len(ddb) == 0 {
				continue
			}
			if !strings.HasPrefix(id, "JitrRole") {
				t.Errorf("policy %s grants %v: only the JITR role may use the deny-list", id, ddb)
				continue
			}
			if asJSON(st["Resource"]) == `{"Fn::GetAtt":["`+ledgerID+`","Arn"]}` {
				ledger = true
				if want := []string{"dynamodb:DeleteItem", "dynamodb:UpdateItem"}; !slices.Equal(ddb, want) || len(list(st["Action"])) != len(ddb) {
					t.Errorf("JITR role grants %v on its ledger, want exactly %v", list(st["Action"]), want)
				}
				continue
			}
			// The reconciler reads the ledger's index of pending retirements, and never scans the table.
			if asJSON(st["Resource"]) == `{"Fn::Join":["",[{"Fn::GetAtt":["`+ledgerID+`","Arn"]},"/index/`+contract.LedgerRetirementIndex+`"]]}` {
				index = true
				if want := []string{"dynamodb:Query"}; !slices.Equal(ddb, want) || len(list(st["Action"])) != len(ddb) {
					t.Errorf("JITR role grants %v on its ledger's index, want exactly %v", list(st["Action"]), want)
				}
				continue
			}
			found = true
			// Pinned here, not read from infra: widening the grant there must fail this test.
			if want := []string{"dynamodb:GetItem"}; !slices.Equal(ddb, want) || len(list(st["Action"])) != len(ddb) {
				t.Errorf("JITR role grants %v in one statement, want exactly %v", list(st["Action"]), want)
			}
			if got := asJSON(st["Resource"]); got != `{"Fn::GetAtt":["`+tableID+`","Arn"]}` {
				t.Errorf("JITR role's deny-list grant is on %s, want the table's ARN", got)
			}
		}
	}
	if !found || !ledger || !index {
		t.Errorf("the JITR role's grants: on the deny-list %v, on its ledger %v, on its index %v; want all", found, ledger, index)
	}
}

func TestCACheckScheduleAndAlarm(t *testing.T) {
	var check string
	for id, f := range resources(twoCAs, "AWS::Lambda::Function") {
		if strings.HasPrefix(id, "OperationsCaCheckFunction") {
			check = id
			env := asJSON(props(f)["Environment"])
			if strings.Count(env, "TenantCA") != 2 || !strings.Contains(env, contract.EnvProvisionedBy) {
				t.Errorf("CA check environment %s: want both CA ids and the stack name", env)
			}
		}
	}
	if check == "" {
		t.Fatal("no CA check function")
	}
	_, rule := onlyOneOf(t, twoCAs, "AWS::Events::Rule", "OperationsCaCheck")
	if p := props(rule); p["ScheduleExpression"] != "rate(12 hours)" || !strings.Contains(asJSON(p["Targets"]), check) {
		t.Errorf("schedule %v targets %s, want rate(12 hours) on %s", p["ScheduleExpression"], asJSON(p["Targets"]), check)
	}
	// The check may only describe the stack's own CAs.
	var arns []string
	for id, p := range resources(twoCAs, "AWS::IAM::Policy") {
		if !strings.HasPrefix(id, "OperationsCaCheckRole") {
			continue
		}
		for _, st := range stmts(props(p)["PolicyDocument"]) {
			if slices.Contains(list(st["Action"]), "iot:DescribeCACertificate") {
				if len(list(st["Action"])) != 1 {
					t.Errorf("CA check grants %v", list(st["Action"]))
				}
				for _, r := range asSlice(st["Resource"]) {
					arns = append(arns, flattenJoin(r))
				}
			}
		}
	}
	sort.Strings(arns)
	if len(arns) != 2 || !regexp.MustCompile(`:cacert/<TenantCA[0-9A-Za-z]+>$`).MatchString(arns[0]) || !regexp.MustCompile(`:cacert/<TenantCA[0-9A-Za-z]+>$`).MatchString(arns[1]) {
		t.Errorf("CA check describes %v, want the cacert ARN of each of the two CAs", arns)
	}
	found := false
	for _, a := range resources(twoCAs, "AWS::CloudWatch::Alarm") {
		p := props(a)
		if p["MetricName"] != contract.MetricDaysLeftWithoutSuccessor {
			continue
		}
		found = true
		if p["Threshold"] != float64(60) || p["ComparisonOperator"] != "LessThanThreshold" || p["Namespace"] != contract.MetricsNamespace || p["Period"] != float64(86400) {
			t.Errorf("CA expiry alarm %s", asJSON(p))
		}
	}
	if !found {
		t.Error("no alarm on " + contract.MetricDaysLeftWithoutSuccessor)
	}
}

func TestDashboard(t *testing.T) {
	_, d := onlyOne(t, oneCA, "AWS::CloudWatch::Dashboard")
	body := asJSON(props(d)["DashboardBody"])
	for _, want := range []string{contract.MetricProvisioned, contract.MetricDenied, contract.MetricRefused, contract.MetricRevoked,
		contract.MetricDaysLeftWithoutSuccessor, contract.MetricDuplicate, contract.MetricRetirementDeferred, "ApproximateNumberOfMessagesVisible",
		"ApproximateAgeOfOldestMessage", "Errors", "Throttles", `\"type\":\"alarm\"`} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard body lacks %s", want)
		}
	}
}

func TestAlarmTopicOnlyWithAnEmail(t *testing.T) {
	if n := len(resources(oneCA, "AWS::SNS::Topic")); n != 0 {
		t.Errorf("%d SNS topics without alarmEmail, want none", n)
	}
	topicID, topic := onlyOne(t, retained, "AWS::SNS::Topic")
	if !strings.Contains(asJSON(props(topic)["KmsMasterKeyId"]), "AlarmTopicKey") {
		t.Errorf("alarm topic not encrypted with its own key: %s", asJSON(props(topic)))
	}
	_, sub := onlyOne(t, retained, "AWS::SNS::Subscription")
	if p := props(sub); p["Protocol"] != "email" || p["Endpoint"] != "ops@example.com" {
		t.Errorf("subscription %s", asJSON(p))
	}
	_, key := onlyOne(t, retained, "AWS::KMS::Key")
	if kp := asJSON(props(key)); !strings.Contains(kp, "cloudwatch.amazonaws.com") || !strings.Contains(kp, `"EnableKeyRotation":true`) {
		t.Errorf("alarm topic key does not let CloudWatch publish, or is not rotated: %s", kp)
	}
	alarms := resources(retained, "AWS::CloudWatch::Alarm")
	if len(alarms) < 6 {
		t.Fatalf("%d alarms", len(alarms))
	}
	for id, a := range alarms {
		if !strings.Contains(asJSON(props(a)["AlarmActions"]), topicID) {
			t.Errorf("alarm %s does not notify the topic", id)
		}
	}
}

// ---- issue 13: the storm-proof registration path ------------------------------------------------------------------

// TestRegistrationPath: the rule's queue is drained by an event source mapping with the context's settings and
// partial batch failures; both queues redrive to the dead-letter queue the alarm watches; the function's rate
// limits are each quota divided by the mapping's concurrency; a schedule runs the reconciler.
func TestRegistrationPath(t *testing.T) {
	dlqID, _ := onlyOneOf(t, oneCA, "AWS::SQS::Queue", "JitrDeadLetterQueue")
	regID, reg := onlyOneOf(t, oneCA, "AWS::SQS::Queue", "JitrRegistrationQueue")
	retID, ret := onlyOneOf(t, oneCA, "AWS::SQS::Queue", "JitrRetirementQueue")
	timeout, _ := props(onlyJitrFunction(t, oneCA))["Timeout"].(float64)
	for id, q := range map[string]map[string]any{regID: reg, retID: ret} {
		if got := asJSON(props(q)["RedrivePolicy"]); !strings.Contains(got, `"deadLetterTargetArn":{"Fn::GetAtt":["`+dlqID+`","Arn"]}`) {
			t.Errorf("%s: redrive policy %s, want the dead-letter queue", id, got)
		}
		// AWS's Lambda–SQS guidance: visibility timeout ≥ 6 × the function's timeout, maxReceiveCount ≥ 5.
		visibility, _ := props(q)["VisibilityTimeout"].(float64)
		receives, _ := props(q)["RedrivePolicy"].(map[string]any)["maxReceiveCount"].(float64)
		if timeout == 0 || visibility < 6*timeout || receives < 5 {
			t.Errorf("%s: visibility timeout %v s, maxReceiveCount %v; want ≥ 6 × the function's timeout (%v s) and ≥ 5", id, visibility, receives, timeout)
		}
	}
	mappings := resources(oneCA, "AWS::Lambda::EventSourceMapping")
	if len(mappings) != 2 {
		t.Fatalf("%d event source mappings, want 2 (registrations, retirements)", len(mappings))
	}
	var registration, retirement map[string]any
	for _, m := range mappings {
		p := props(m)
		if asJSON(p["FunctionResponseTypes"]) != `["ReportBatchItemFailures"]` {
			t.Errorf("mapping %s: response types %s, want partial batch failures", asJSON(p["EventSourceArn"]), asJSON(p["FunctionResponseTypes"]))
		}
		if strings.Contains(asJSON(p["EventSourceArn"]), regID) {
			registration = p
		} else {
			retirement = p
		}
	}
	if registration == nil || retirement == nil {
		t.Fatal("no mapping drains the registration queue, or none the retirement queue")
	}
	// Retirement is never urgent: batches gathered for up to 10 s, so a fleet coming up slowly is retired 50 at a
	// time, not one invocation per handful.
	if got := asJSON(retirement["ScalingConfig"]); got != `{"MaximumConcurrency":2}` || retirement["BatchSize"] != float64(50) ||
		retirement["MaximumBatchingWindowInSeconds"] != float64(10) {
		t.Errorf("retirement mapping: concurrency %s, batch %v, window %v; want 2, 50, 10 s", got, retirement["BatchSize"], retirement["MaximumBatchingWindowInSeconds"])
	}
	if got := asJSON(registration["ScalingConfig"]); got != `{"MaximumConcurrency":2}` || registration["BatchSize"] != float64(50) ||
		registration["MaximumBatchingWindowInSeconds"] != float64(1) {
		t.Errorf("registration mapping: concurrency %s, batch %v, window %v; want 2, 50, 1 s", got, registration["BatchSize"], registration["MaximumBatchingWindowInSeconds"])
	}
	env := props(onlyJitrFunction(t, oneCA))["Environment"].(map[string]any)["Variables"].(map[string]any)
	if got := env[contract.EnvIoTRateLimits]; !strings.Contains(fmt.Sprint(got), `"DescribeCertificate":5`) || !strings.Contains(fmt.Sprint(got), `"AttachPolicy":7.5`) {
		t.Errorf("rate limits %v, want each default quota halved (two environments)", got)
	}
	_, schedule := onlyOneOf(t, oneCA, "AWS::Events::Rule", "JitrReconcileSchedule")
	if p := props(schedule); p["ScheduleExpression"] != "rate(10 minutes)" || !strings.Contains(asJSON(p["Targets"]), "JitrFunction") {
		t.Errorf("reconciler schedule %v → %s", p["ScheduleExpression"], asJSON(p["Targets"]))
	}
}
