// Package deploy creates in moto what the synthesized template describes and the emulator runs: tenant CAs, IoT
// policies, topic rules, queues, tables and buckets; it names the functions and resolves their environment, role,
// retries, on-failure destination and triggers. The Deployment it returns is what the other parts run.
package deploy

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/rulesql"
	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// deployIoTAPI is the part of the IoT control plane the deployer uses.
type deployIoTAPI interface {
	RegisterCACertificate(ctx context.Context, in *iot.RegisterCACertificateInput, optFns ...func(*iot.Options)) (*iot.RegisterCACertificateOutput, error)
	CreatePolicy(ctx context.Context, in *iot.CreatePolicyInput, optFns ...func(*iot.Options)) (*iot.CreatePolicyOutput, error)
	CreateTopicRule(ctx context.Context, in *iot.CreateTopicRuleInput, optFns ...func(*iot.Options)) (*iot.CreateTopicRuleOutput, error)
}

// deployS3API is the part of S3 the deployer uses.
type deployS3API interface {
	CreateBucket(ctx context.Context, in *s3.CreateBucketInput, optFns ...func(*s3.Options)) (*s3.CreateBucketOutput, error)
}

// deployDynamoDBAPI is the part of DynamoDB the deployer uses.
type deployDynamoDBAPI interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	UpdateContinuousBackups(ctx context.Context, in *dynamodb.UpdateContinuousBackupsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateContinuousBackupsOutput, error)
}

var (
	_ deployIoTAPI      = (*iot.Client)(nil)
	_ deployS3API       = (*s3.Client)(nil)
	_ deployDynamoDBAPI = (*dynamodb.Client)(nil)
)

// CA is a tenant CA registered in the emulator.
type CA struct {
	LogicalID        string
	ID               string // certificate id (SHA-256 of the DER)
	ARN              string
	PEM              string // exactly as registered: moto matches a device's CA by this text
	Cert             *x509.Certificate
	Active           bool
	AutoRegistration bool
}

// Rule is a topic rule the emulator's rules engine runs.
type Rule struct {
	Name        string
	SQL         string
	TopicFilter string
	Statement   *rulesql.Statement // the SQL, parsed: what the rule hands its action
	Function    string             // logical id of the function its Lambda action invokes, or ""
	QueueURL    string             // the queue its SQS action sends to, or ""
}

// Mapping is an event source mapping of a queue created in moto to a function.
type Mapping struct {
	stacktemplate.MappingSpec
	QueueURL, QueueARN string
}

// Schedule is a rate schedule of a function.
type Schedule struct {
	stacktemplate.ScheduleSpec
	ARN string
}

// Kind says which of the product's functions a function of the template is, so the emulator runs the right code.
type Kind string

const (
	KindJITR    Kind = "jitr"    // the JITR function (its environment names the tenant CAs)
	KindPresign Kind = "presign" // the presign function (its environment names the IoT data endpoint)
	// KindAccountSettings is the function behind the Custom::IoTAccountSettings resource (customresource.go).
	KindAccountSettings Kind = "accountsettings"
	// KindTeardown is the function behind the Custom::RegistryTeardown resource (customresource.go).
	KindTeardown Kind = "teardown"
)

// Function is a function of the template as the emulator runs it: its name, code, environment, role, how Lambda
// retries it, where its failed events go, and what invokes it (rules name it by logical id; Mappings and
// Schedules are its own).
type Function struct {
	LogicalID string
	Name      string // physical name
	ARN       string
	Kind      Kind
	Env       map[string]string // environment, resolved
	Timeout   time.Duration     // how long one invocation may run (its Timeout property)
	// RolePolicy gathers the statements of every identity-based policy of the function's role, resolved: the
	// emulator's S3 gate and data-plane endpoint authorise the function's requests with it.
	RolePolicy *policy.Policy
	// Retries is how often Lambda retries a failed asynchronous invocation (its EventInvokeConfig's
	// MaximumRetryAttempts; 2, Lambda's default, without one).
	Retries int
	// DeadLetterQueueURL is the function's on-failure destination (its EventInvokeConfig), created in moto; "" when
	// the template has none or Options.Queues is nil.
	DeadLetterQueueURL string
	// LogGroup is where Lambda writes the function's output: the log group its LoggingConfig names, or
	// /aws/lambda/<name>.
	LogGroup  string
	Mappings  []Mapping
	Schedules []Schedule
}

// Concurrency is how many invocations of the function its event source mappings may run at once.
func (f *Function) Concurrency() int {
	n := 0
	for _, m := range f.Mappings {
		n += max(2, m.MaxConcurrency)
	}
	return n
}

// Deployment is the stack as deployed into the emulator: physical ids, resolved documents and environment.
type Deployment struct {
	StackName string
	Resolver  *stacktemplate.Resolver
	CAs       []CA
	Policies  map[string]*policy.Policy // by physical policy name
	Rules     []Rule
	// Functions are the functions the emulator runs, by logical id.
	Functions map[string]*Function
	// Queues are the template's SQS queues, created in moto with their visibility timeout and redrive policy:
	// logical id → URL.
	Queues  map[string]string
	Bucket  string            // demo bucket (first AWS::S3::Bucket)
	Tables  map[string]string // DynamoDB tables: logical id → physical name
	Outputs map[string]string // outputs that resolved (custom-resource values may not)
	// LogGroups are the template's log groups, created in moto's CloudWatch Logs (Options.Logs).
	LogGroups []string
	// CustomResources are the custom resources the product's functions serve (customresource.go), in the order
	// CloudFormation creates them.
	CustomResources []CustomResource
	jitr            string // logical id of the JITR function
}

// CustomResourcesOf returns the custom resources its functions of kind serve.
func (d *Deployment) CustomResourcesOf(kind Kind) []CustomResource {
	var out []CustomResource
	for _, cr := range d.CustomResources {
		if cr.Kind == kind {
			out = append(out, cr)
		}
	}
	return out
}

// JITR is the JITR function.
func (d *Deployment) JITR() *Function { return d.Functions[d.jitr] }

// FunctionIDs are the logical ids of the functions, sorted.
func (d *Deployment) FunctionIDs() []string {
	ids := make([]string, 0, len(d.Functions))
	for id := range d.Functions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Options tunes Deploy.
type Options struct {
	StackName string // default contract.StackName
	Region    string
	AccountID string
	// Attrs pins Fn::GetAtt values the emulator knows better than a placeholder, e.g. the IoT endpoint custom
	// resource's address ("LogicalId.Attribute" → value).
	Attrs map[string]string
	// DynamoDB creates the template's tables (the deny-list); required when the template has any.
	DynamoDB deployDynamoDBAPI
	// Queues creates the template's SQS queues (the rules' targets, the dead-letter queue); nil creates none.
	Queues deployQueueAPI
	// Logs creates the template's log groups; nil names them without creating them.
	Logs deployLogsAPI
}

// deployQueueAPI is the part of SQS the deployer uses.
type deployQueueAPI interface {
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, optFns ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
}

// Deploy creates in moto what the template describes for the device flow: CA registrations (status and
// auto-registration as in the template), policies (intrinsics resolved), topic rules, buckets, and it resolves the
// JITR function's environment. It returns what the broker and the Lambda runner need.
func Deploy(ctx context.Context, t *stacktemplate.Template, iotc deployIoTAPI, s3c deployS3API, opts Options) (*Deployment, error) {
	spec, err := stacktemplate.ReadStack(t)
	if err != nil {
		return nil, err
	}
	if opts.StackName == "" {
		opts.StackName = contract.StackName
	}
	suffix := stacktemplate.RandomSuffix()
	r := stacktemplate.StackResolver(t, opts.StackName, opts.Region, opts.AccountID, suffix)
	for k, v := range opts.Attrs {
		r.Attrs[k] = v
	}
	d := &Deployment{StackName: opts.StackName, Resolver: r, Policies: map[string]*policy.Policy{}, Functions: map[string]*Function{}, jitr: spec.Function, Outputs: map[string]string{}, Tables: map[string]string{}, Queues: map[string]string{}}
	dp := &deployer{t: t, spec: spec, r: r, iot: iotc, s3: s3c, opts: opts, suffix: suffix, d: d}
	// Order matters: each step resolves references to what the steps before it created.
	for _, step := range []func(context.Context) error{dp.cas, dp.functions, dp.customResources, dp.logGroups, dp.queues, dp.invokeConfigs, dp.mappings,
		dp.buckets, dp.tables, dp.policies, dp.functionEnv, dp.rules, dp.customResourceProperties} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	dp.outputs()
	return d, nil
}

// deployer creates one resource type of the template per method and records what it made in d and in the
// resolver, for the resources that reference it.
type deployer struct {
	t      *stacktemplate.Template
	spec   *stacktemplate.StackSpec
	r      *stacktemplate.Resolver
	iot    deployIoTAPI
	s3     deployS3API
	opts   Options
	suffix string
	d      *Deployment
}

func (dp *deployer) cas(ctx context.Context) error {
	for _, id := range dp.spec.CAs {
		ca, err := deployCA(ctx, dp.t, dp.r, dp.iot, id)
		if err != nil {
			return err
		}
		dp.r.Refs[id] = ca.ID
		dp.r.Attrs[id+".Id"] = ca.ID
		dp.r.Attrs[id+".Arn"] = ca.ARN
		dp.d.CAs = append(dp.d.CAs, *ca)
	}
	return nil
}

// functions names the functions; the emulator runs them itself (moto's Lambda is not used).
func (dp *deployer) functions(context.Context) error {
	for _, id := range append([]string{dp.spec.Function}, dp.spec.Others...) {
		n := stacktemplate.PhysicalName(dp.opts.StackName, id, dp.suffix, 64)
		f := &Function{LogicalID: id, Name: n, Kind: KindPresign, Retries: 2, Timeout: dp.timeout(id),
			ARN: fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", dp.opts.Region, dp.opts.AccountID, n)}
		if id == dp.spec.Function {
			f.Kind = KindJITR
		}
		dp.r.Refs[id] = n
		dp.r.Attrs[id+".Arn"] = f.ARN
		dp.d.Functions[id] = f
	}
	return nil
}

// queues creates every AWS::SQS::Queue of the template with the attributes that change how it behaves: visibility
// timeout, retention and the redrive policy (a queue's dead-letter queue is created before it).
func (dp *deployer) queues(ctx context.Context) error {
	if dp.opts.Queues == nil {
		return nil
	}
	ids := slices.Clone(dp.spec.Queues)
	// Queues that redrive to another come after the queues they redrive to.
	slices.SortStableFunc(ids, func(a, b string) int {
		ra, rb := dp.t.Prop(a, "RedrivePolicy") != nil, dp.t.Prop(b, "RedrivePolicy") != nil
		switch {
		case ra == rb:
			return 0
		case rb:
			return -1
		default:
			return 1
		}
	})
	for _, id := range ids {
		name := stacktemplate.PhysicalName(dp.opts.StackName, id, dp.suffix, 80)
		attrs := map[string]string{}
		for prop, attr := range map[string]string{"VisibilityTimeout": "VisibilityTimeout", "MessageRetentionPeriod": "MessageRetentionPeriod"} {
			if v, ok := dp.t.Prop(id, prop).(float64); ok {
				attrs[attr] = strconv.Itoa(int(v))
			}
		}
		if rp, ok := dp.t.Prop(id, "RedrivePolicy").(map[string]any); ok {
			target, err := dp.r.String(rp["deadLetterTargetArn"])
			if err != nil {
				return fmt.Errorf("queue %s: redrive target: %w", id, err)
			}
			policy, _ := json.Marshal(map[string]any{"deadLetterTargetArn": target, "maxReceiveCount": rp["maxReceiveCount"]})
			attrs["RedrivePolicy"] = string(policy)
		}
		out, err := dp.opts.Queues.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
		if err != nil {
			return fmt.Errorf("create queue %s: %w", name, err)
		}
		url := aws.ToString(out.QueueUrl)
		dp.r.Refs[id] = url
		dp.r.Attrs[id+".Arn"] = fmt.Sprintf("arn:aws:sqs:%s:%s:%s", dp.opts.Region, dp.opts.AccountID, name)
		dp.r.Attrs[id+".QueueName"] = name
		dp.r.Attrs[id+".QueueUrl"] = url
		dp.d.Queues[id] = url
	}
	return nil
}

// invokeConfigs reads each function's AWS::Lambda::EventInvokeConfig: how often Lambda retries a failed
// asynchronous invocation, and the queue it then fails to (DestinationConfig.OnFailure), so the emulator delivers
// what still fails after the retries as AWS does.
func (dp *deployer) invokeConfigs(context.Context) error {
	for _, id := range dp.t.OfType("AWS::Lambda::EventInvokeConfig") {
		f, ok := dp.d.Functions[stacktemplate.ReferencedResource(dp.t.Prop(id, "FunctionName"))]
		if !ok {
			continue
		}
		if n, ok := dp.t.Prop(id, "MaximumRetryAttempts").(float64); ok {
			f.Retries = int(n)
		}
		queue := stacktemplate.ReferencedResource(dp.t.Prop(id, "DestinationConfig.OnFailure.Destination"))
		if url, ok := dp.d.Queues[queue]; ok {
			f.DeadLetterQueueURL = url
		}
	}
	return nil
}

// mappings resolves the event source mappings and schedules of the JITR function.
func (dp *deployer) mappings(context.Context) error {
	jitr := dp.d.JITR()
	for _, m := range dp.spec.Mappings {
		url, ok := dp.d.Queues[m.Queue]
		if !ok {
			if dp.opts.Queues == nil {
				continue
			}
			return fmt.Errorf("event source mapping %s: queue %s was not created", m.LogicalID, m.Queue)
		}
		jitr.Mappings = append(jitr.Mappings, Mapping{MappingSpec: m, QueueURL: url, QueueARN: dp.r.Attrs[m.Queue+".Arn"]})
	}
	for _, sc := range dp.spec.Schedules {
		jitr.Schedules = append(jitr.Schedules, Schedule{ScheduleSpec: sc,
			ARN: fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", dp.opts.Region, dp.opts.AccountID, stacktemplate.PhysicalName(dp.opts.StackName, sc.LogicalID, dp.suffix, 64))})
	}
	return nil
}

func (dp *deployer) buckets(ctx context.Context) error {
	for _, id := range dp.spec.Buckets {
		name := strings.ToLower(stacktemplate.PhysicalName(dp.opts.StackName, id, dp.suffix, 63))
		if n, ok := dp.t.Prop(id, "BucketName").(string); ok {
			name = n
		}
		if _, err := dp.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
		dp.r.Refs[id] = name
		dp.r.Attrs[id+".Arn"] = "arn:aws:s3:::" + name
		dp.r.Attrs[id+".DomainName"] = name + ".s3.amazonaws.com"
		dp.r.Attrs[id+".RegionalDomainName"] = name + ".s3." + dp.opts.Region + ".amazonaws.com"
		if dp.d.Bucket == "" {
			dp.d.Bucket = name
		}
	}
	return nil
}

// tables creates each AWS::DynamoDB::Table with the key schema, billing mode, encryption and point-in-time recovery
// the template gives it.
func (dp *deployer) tables(ctx context.Context) error {
	ids := dp.t.OfType("AWS::DynamoDB::Table")
	if len(ids) > 0 && dp.opts.DynamoDB == nil {
		return fmt.Errorf("the template has DynamoDB tables (%s) and the deployer has no DynamoDB client", strings.Join(ids, ", "))
	}
	for _, id := range ids {
		name := stacktemplate.PhysicalName(dp.opts.StackName, id, dp.suffix, 255)
		if n, ok := dp.t.Prop(id, "TableName").(string); ok {
			name = n
		}
		in := &dynamodb.CreateTableInput{TableName: aws.String(name), BillingMode: ddbtypes.BillingModeProvisioned}
		for _, k := range asMaps(dp.t.Prop(id, "KeySchema")) {
			in.KeySchema = append(in.KeySchema, ddbtypes.KeySchemaElement{AttributeName: aws.String(str(k["AttributeName"])), KeyType: ddbtypes.KeyType(str(k["KeyType"]))})
		}
		for _, a := range asMaps(dp.t.Prop(id, "AttributeDefinitions")) {
			in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{AttributeName: aws.String(str(a["AttributeName"])), AttributeType: ddbtypes.ScalarAttributeType(str(a["AttributeType"]))})
		}
		in.GlobalSecondaryIndexes = globalSecondaryIndexes(dp.t.Prop(id, "GlobalSecondaryIndexes"))
		if mode, _ := dp.t.Prop(id, "BillingMode").(string); mode == string(ddbtypes.BillingModePayPerRequest) {
			in.BillingMode = ddbtypes.BillingModePayPerRequest
		} else {
			in.ProvisionedThroughput = &ddbtypes.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(5)}
		}
		if sse, _ := dp.t.Prop(id, "SSESpecification.SSEEnabled").(bool); sse {
			in.SSESpecification = &ddbtypes.SSESpecification{Enabled: aws.Bool(true), SSEType: ddbtypes.SSETypeKms}
		}
		if _, err := dp.opts.DynamoDB.CreateTable(ctx, in); err != nil {
			return fmt.Errorf("create table %s: %w", name, err)
		}
		if pitr, _ := dp.t.Prop(id, "PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled").(bool); pitr {
			if _, err := dp.opts.DynamoDB.UpdateContinuousBackups(ctx, &dynamodb.UpdateContinuousBackupsInput{TableName: aws.String(name),
				PointInTimeRecoverySpecification: &ddbtypes.PointInTimeRecoverySpecification{PointInTimeRecoveryEnabled: aws.Bool(true)}}); err != nil {
				return fmt.Errorf("table %s: enable point-in-time recovery: %w", name, err)
			}
		}
		dp.r.Refs[id] = name
		dp.r.Attrs[id+".Arn"] = fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", dp.opts.Region, dp.opts.AccountID, name)
		dp.d.Tables[id] = name
	}
	return nil
}

func asMaps(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

// globalSecondaryIndexes reads a table's GlobalSecondaryIndexes property (the ledger's index of pending
// retirements). Only pay-per-request tables have them here, so no per-index throughput is set.
func globalSecondaryIndexes(v any) []ddbtypes.GlobalSecondaryIndex {
	var out []ddbtypes.GlobalSecondaryIndex
	for _, g := range asMaps(v) {
		gsi := ddbtypes.GlobalSecondaryIndex{IndexName: aws.String(str(g["IndexName"])), Projection: &ddbtypes.Projection{}}
		for _, k := range asMaps(g["KeySchema"]) {
			gsi.KeySchema = append(gsi.KeySchema, ddbtypes.KeySchemaElement{AttributeName: aws.String(str(k["AttributeName"])), KeyType: ddbtypes.KeyType(str(k["KeyType"]))})
		}
		if p, ok := g["Projection"].(map[string]any); ok {
			gsi.Projection.ProjectionType = ddbtypes.ProjectionType(str(p["ProjectionType"]))
			attrs, _ := p["NonKeyAttributes"].([]any)
			for _, a := range attrs {
				gsi.Projection.NonKeyAttributes = append(gsi.Projection.NonKeyAttributes, str(a))
			}
		}
		out = append(out, gsi)
	}
	return out
}

func (dp *deployer) policies(ctx context.Context) error {
	for _, id := range dp.spec.Policies {
		name := stacktemplate.PhysicalName(dp.opts.StackName, id, dp.suffix, 128)
		if n, ok := dp.t.Prop(id, "PolicyName").(string); ok {
			name = n
		}
		docV, err := dp.r.Resolve(dp.t.Prop(id, "PolicyDocument"))
		if err != nil {
			return fmt.Errorf("policy %s: resolve document: %w", id, err)
		}
		doc, err := json.Marshal(docV)
		if err != nil {
			return fmt.Errorf("policy %s: encode document: %w", id, err)
		}
		p, err := policy.Parse(doc)
		if err != nil {
			return fmt.Errorf("policy %s: %w", id, err)
		}
		if _, err := dp.iot.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String(name), PolicyDocument: aws.String(string(doc))}); err != nil {
			return fmt.Errorf("create policy %s: %w", name, err)
		}
		dp.r.Refs[id] = name
		dp.r.Attrs[id+".Arn"] = fmt.Sprintf("arn:aws:iot:%s:%s:policy/%s", dp.opts.Region, dp.opts.AccountID, name)
		dp.d.Policies[name] = p
	}
	return nil
}

func (dp *deployer) functionEnv(context.Context) error {
	var err error
	for id, f := range dp.d.Functions {
		if f.Env, err = dp.environment(id); err != nil {
			return err
		}
		if f.RolePolicy, err = dp.rolePolicy(id); err != nil {
			return err
		}
	}
	return nil
}

func (dp *deployer) environment(fn string) (map[string]string, error) {
	env, _ := dp.t.Prop(fn, "Environment.Variables").(map[string]any)
	out := map[string]string{}
	for k, v := range env {
		s, err := dp.r.String(v)
		if err != nil {
			return nil, fmt.Errorf("function %s environment %s: %w", fn, k, err)
		}
		out[k] = s
	}
	return out, nil
}

// rolePolicy gathers the statements of every identity-based policy of the function's role (stacktemplate.RolePolicies) into
// one document the S3 gate and the data plane evaluate.
func (dp *deployer) rolePolicy(fn string) (*policy.Policy, error) {
	role := stacktemplate.ReferencedResource(dp.t.Prop(fn, "Role"))
	if role == "" {
		return nil, fmt.Errorf("function %s: no role of this template", fn)
	}
	docs, err := stacktemplate.RolePolicies(dp.t, dp.r, role)
	if err != nil {
		return nil, err
	}
	var statements []any
	for _, raw := range docs {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		switch st := m["Statement"].(type) {
		case []any:
			statements = append(statements, st...)
		case map[string]any:
			statements = append(statements, st)
		}
	}
	doc, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": statements})
	p, err := policy.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("role of function %s: %w", fn, err)
	}
	return p, nil
}

func (dp *deployer) rules(ctx context.Context) error {
	for _, rs := range dp.spec.Rules {
		sql, err := dp.r.String(dp.t.Prop(rs.LogicalID, "TopicRulePayload.Sql"))
		if err != nil {
			return fmt.Errorf("topic rule %s: resolve SQL: %w", rs.LogicalID, err)
		}
		stmt, err := rulesql.Parse(sql)
		if err != nil {
			return fmt.Errorf("topic rule %s: %w", rs.LogicalID, err)
		}
		filter := stmt.TopicFilter
		name := ruleName(rs.LogicalID, dp.suffix)
		if n, ok := dp.t.Prop(rs.LogicalID, "RuleName").(string); ok {
			name = n
		}
		var action iottypes.Action
		queueURL := ""
		if rs.Queue != "" {
			var ok bool
			if queueURL, ok = dp.d.Queues[rs.Queue]; !ok {
				return fmt.Errorf("topic rule %s: its queue %s was not created (no SQS client)", rs.LogicalID, rs.Queue)
			}
			action.Sqs = &iottypes.SqsAction{QueueUrl: aws.String(queueURL), RoleArn: aws.String(fmt.Sprintf("arn:aws:iam::%s:role/%s-rule", dp.opts.AccountID, name))}
		} else {
			fnArn, err := dp.r.String(map[string]any{"Fn::GetAtt": []any{rs.Function, "Arn"}})
			if err != nil {
				return err
			}
			action.Lambda = &iottypes.LambdaAction{FunctionArn: aws.String(fnArn)}
		}
		_, err = dp.iot.CreateTopicRule(ctx, &iot.CreateTopicRuleInput{
			RuleName: aws.String(name),
			TopicRulePayload: &iottypes.TopicRulePayload{
				Sql:              aws.String(sql),
				AwsIotSqlVersion: aws.String("2016-03-23"),
				Actions:          []iottypes.Action{action},
			},
		})
		if err != nil {
			return fmt.Errorf("create topic rule %s: %w", name, err)
		}
		dp.r.Refs[rs.LogicalID] = name
		dp.d.Rules = append(dp.d.Rules, Rule{Name: name, SQL: sql, TopicFilter: filter, Statement: stmt, Function: rs.Function, QueueURL: queueURL})
	}
	return nil
}

// outputs keeps the outputs that resolve (custom-resource values may not).
func (dp *deployer) outputs() {
	keys := make([]string, 0, len(dp.t.Outputs))
	for k := range dp.t.Outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s, err := dp.r.String(dp.t.Outputs[k].Value); err == nil {
			dp.d.Outputs[k] = s
		}
	}
}

func deployCA(ctx context.Context, t *stacktemplate.Template, r *stacktemplate.Resolver, iotc deployIoTAPI, id string) (*CA, error) {
	pemText, err := r.String(t.Prop(id, "CACertificatePem"))
	if err != nil {
		return nil, fmt.Errorf("CA %s: certificate PEM: %w", id, err)
	}
	cert, err := azsphere.ParseCertificate([]byte(pemText))
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", id, err)
	}
	status, _ := r.String(t.Prop(id, "Status"))
	autoReg, _ := r.String(t.Prop(id, "AutoRegistrationStatus"))
	mode, _ := r.String(t.Prop(id, "CertificateMode"))
	in := &iot.RegisterCACertificateInput{
		CaCertificate:         aws.String(pemText),
		SetAsActive:           status == "ACTIVE",
		AllowAutoRegistration: autoReg == "ENABLE",
	}
	if mode == "" || mode == "DEFAULT" {
		// AWS IoT wants proof of possession in DEFAULT mode; moto ignores it, the emulator still checks the signature.
		vText, err := r.String(t.Prop(id, "VerificationCertificatePem"))
		if err != nil {
			return nil, fmt.Errorf("CA %s: DEFAULT mode needs VerificationCertificatePem: %w", id, err)
		}
		v, err := azsphere.ParseCertificate([]byte(vText))
		if err != nil {
			return nil, fmt.Errorf("CA %s: verification certificate: %w", id, err)
		}
		if err := v.CheckSignatureFrom(cert); err != nil {
			return nil, fmt.Errorf("CA %s: verification certificate is not signed by the CA: %w", id, err)
		}
		in.VerificationCertificate = aws.String(vText)
	} else {
		in.CertificateMode = iottypes.CertificateMode(mode)
	}
	out, err := iotc.RegisterCACertificate(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("register CA %s: %w", id, err)
	}
	return &CA{
		LogicalID: id, ID: aws.ToString(out.CertificateId), ARN: aws.ToString(out.CertificateArn), PEM: pemText, Cert: cert,
		Active: status == "ACTIVE", AutoRegistration: autoReg == "ENABLE",
	}, nil
}

var nonRuleChars = regexp.MustCompile(`[^A-Za-z0-9_]`)

func ruleName(logicalID, suffix string) string {
	return nonRuleChars.ReplaceAllString(logicalID, "") + "_" + suffix
}

// CAByID returns the deployed CA with the given id.
func (d *Deployment) CAByID(id string) (CA, bool) {
	for _, ca := range d.CAs {
		if ca.ID == id {
			return ca, true
		}
	}
	return CA{}, false
}
