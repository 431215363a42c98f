package localaws

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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

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

// DeployedCA is a tenant CA registered in the emulator.
type DeployedCA struct {
	LogicalID        string
	ID               string // certificate id (SHA-256 of the DER)
	ARN              string
	PEM              string // exactly as registered: moto matches a device's CA by this text
	Cert             *x509.Certificate
	Active           bool
	AutoRegistration bool
}

// DeployedRule is a topic rule the emulator's rule engine runs.
type DeployedRule struct {
	Name        string
	SQL         string
	TopicFilter string
	Statement   *RuleStatement // the SQL, parsed: what the rule hands its action
	Function    string         // logical id of the function its Lambda action invokes, or ""
	QueueURL    string         // the queue its SQS action sends to, or ""
}

// DeployedMapping is an event source mapping of a queue created in moto to the JITR function.
type DeployedMapping struct {
	stacktemplate.MappingSpec
	QueueURL, QueueARN string
}

// Concurrency is how many invocations of the JITR function the event source mappings may run at once.
func (d *Deployment) Concurrency() int {
	n := 0
	for _, m := range d.Mappings {
		n += max(2, m.MaxConcurrency)
	}
	return n
}

// DeployedSchedule is a rate schedule of the JITR function.
type DeployedSchedule struct {
	stacktemplate.ScheduleSpec
	ARN string
}

// DeployedFunction is a function of the template other than JITR, run by the emulator (the presign function).
type DeployedFunction struct {
	LogicalID string
	Name      string            // physical name
	Env       map[string]string // environment, resolved
	// RolePolicy gathers the statements of every AWS::IAM::Policy attached to the function's role, resolved: the
	// emulator's S3 gate and data-plane endpoint authorise the function's requests with it.
	RolePolicy *policy.Policy
}

// Deployment is the stack as deployed into the emulator: physical ids, resolved documents and environment.
type Deployment struct {
	StackName  string
	Resolver   *stacktemplate.Resolver
	CAs        []DeployedCA
	Policies   map[string]*policy.Policy // by physical policy name
	Rules      []DeployedRule
	Function   string // physical name of the JITR function
	FunctionID string // the JITR function's logical id
	// DeadLetterQueueURL is the function's on-failure destination (its AWS::Lambda::EventInvokeConfig), created in
	// moto; "" when the template has none or DeployOptions.Queues is nil.
	DeadLetterQueueURL string
	// Queues are the template's SQS queues, created in moto with their visibility timeout and redrive policy:
	// logical id → URL.
	Queues      map[string]string
	Mappings    []DeployedMapping
	Schedules   []DeployedSchedule
	FunctionEnv map[string]string // the JITR function's environment, resolved
	// FunctionPolicy gathers the statements of the JITR function's role, resolved (see DeployedFunction.RolePolicy).
	FunctionPolicy *policy.Policy
	Others         map[string]*DeployedFunction // the other functions the rules invoke, by logical id
	Bucket         string                       // demo bucket (first AWS::S3::Bucket)
	Tables         map[string]string            // DynamoDB tables: logical id → physical name
	Outputs        map[string]string            // outputs that resolved (custom-resource values may not)
}

// DeployOptions tunes Deploy.
type DeployOptions struct {
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
}

// deployQueueAPI is the part of SQS the deployer uses.
type deployQueueAPI interface {
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, optFns ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
}

// Deploy creates in moto what the template describes for the device flow: CA registrations (status and
// auto-registration as in the template), policies (intrinsics resolved), topic rules, buckets, and it resolves the
// JITR function's environment. It returns what the broker and the Lambda runner need.
func Deploy(ctx context.Context, t *stacktemplate.Template, iotc deployIoTAPI, s3c deployS3API, opts DeployOptions) (*Deployment, error) {
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
	d := &Deployment{StackName: opts.StackName, Resolver: r, Policies: map[string]*policy.Policy{}, Outputs: map[string]string{}, Tables: map[string]string{}, Queues: map[string]string{}}
	dp := &deployer{t: t, spec: spec, r: r, iot: iotc, s3: s3c, opts: opts, suffix: suffix, d: d}
	// Order matters: each step resolves references to what the steps before it created.
	for _, step := range []func(context.Context) error{dp.cas, dp.function, dp.queues, dp.deadLetterQueue, dp.mappings, dp.buckets, dp.tables, dp.policies, dp.functionEnv, dp.rules} {
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
	opts   DeployOptions
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

// function names the functions; the emulator runs them itself (moto's Lambda is not used).
func (dp *deployer) function(context.Context) error {
	name := func(id string) string {
		n := stacktemplate.PhysicalName(dp.opts.StackName, id, dp.suffix, 64)
		dp.r.Refs[id] = n
		dp.r.Attrs[id+".Arn"] = fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", dp.opts.Region, dp.opts.AccountID, n)
		return n
	}
	dp.d.Function = name(dp.spec.Function)
	dp.d.FunctionID = dp.spec.Function
	dp.d.Others = map[string]*DeployedFunction{}
	for _, id := range dp.spec.Others {
		dp.d.Others[id] = &DeployedFunction{LogicalID: id, Name: name(id)}
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

// deadLetterQueue finds the queue the function's asynchronous invocations fail to (EventInvokeConfig's
// DestinationConfig.OnFailure), so the emulator can deliver what still fails after Lambda's retries as AWS does.
func (dp *deployer) deadLetterQueue(context.Context) error {
	for _, id := range dp.t.OfType("AWS::Lambda::EventInvokeConfig") {
		if stacktemplate.ReferencedResource(dp.t.Prop(id, "FunctionName")) != dp.spec.Function {
			continue
		}
		queue := stacktemplate.ReferencedResource(dp.t.Prop(id, "DestinationConfig.OnFailure.Destination"))
		if url, ok := dp.d.Queues[queue]; ok {
			dp.d.DeadLetterQueueURL = url
		}
	}
	return nil
}

// mappings resolves the event source mappings and schedules of the JITR function.
func (dp *deployer) mappings(context.Context) error {
	for _, m := range dp.spec.Mappings {
		url, ok := dp.d.Queues[m.Queue]
		if !ok {
			if dp.opts.Queues == nil {
				continue
			}
			return fmt.Errorf("event source mapping %s: queue %s was not created", m.LogicalID, m.Queue)
		}
		dp.d.Mappings = append(dp.d.Mappings, DeployedMapping{MappingSpec: m, QueueURL: url, QueueARN: dp.r.Attrs[m.Queue+".Arn"]})
	}
	for _, sc := range dp.spec.Schedules {
		dp.d.Schedules = append(dp.d.Schedules, DeployedSchedule{ScheduleSpec: sc,
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
	if dp.d.FunctionEnv, err = dp.environment(dp.spec.Function); err != nil {
		return err
	}
	if dp.d.FunctionPolicy, err = dp.rolePolicy(dp.spec.Function); err != nil {
		return err
	}
	for id, f := range dp.d.Others {
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
		stmt, err := ParseRuleSQL(sql)
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
		dp.d.Rules = append(dp.d.Rules, DeployedRule{Name: name, SQL: sql, TopicFilter: filter, Statement: stmt, Function: rs.Function, QueueURL: queueURL})
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

func deployCA(ctx context.Context, t *stacktemplate.Template, r *stacktemplate.Resolver, iotc deployIoTAPI, id string) (*DeployedCA, error) {
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
	return &DeployedCA{
		LogicalID: id, ID: aws.ToString(out.CertificateId), ARN: aws.ToString(out.CertificateArn), PEM: pemText, Cert: cert,
		Active: status == "ACTIVE", AutoRegistration: autoReg == "ENABLE",
	}, nil
}

var nonRuleChars = regexp.MustCompile(`[^A-Za-z0-9_]`)

func ruleName(logicalID, suffix string) string {
	return nonRuleChars.ReplaceAllString(logicalID, "") + "_" + suffix
}

// CAByID returns the deployed CA with the given id.
func (d *Deployment) CAByID(id string) (DeployedCA, bool) {
	for _, ca := range d.CAs {
		if ca.ID == id {
			return ca, true
		}
	}
	return DeployedCA{}, false
}
