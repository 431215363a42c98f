// Package localaws is the local emulator of the product's cloud side: moto as the AWS API, the synthesized template
// deployed into it, an MQTT-over-TLS broker that behaves like AWS IoT Core for just-in-time registration
// (registry, policies, registered events, shadows) and the real JITR Lambda run by the rules engine.
package localaws

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/lambdabuild"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// rieTool is the AWS Lambda Runtime Interface Emulator the emulator runs the functions under; go.mod pins its
// version with a tool directive.
const rieTool = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

// Options configures Start.
type Options struct {
	Template  *stacktemplate.Template
	StackName string             // default SphereJitr
	Moto      *motoserver.Server // an already running moto to deploy into; default: start one
	Function  Invoker            // default: the bootstrap under RIE (Bootstrap, RIE)
	Bootstrap string             // the JITR function built for the host
	// PresignBootstrap is the presign function built for the host; required when the template has it.
	PresignBootstrap string
	RIE              string             // the aws-lambda-rie command
	Workers          int                // concurrent function executions; default 2
	Timeline         *timeline.Timeline // readable account of the flow; nil for none
	Log              io.Writer          // moto and function output; default discarded
	// RegistryPoll is how often the broker checks open connections against the registry (revocation); default
	// RevocationPollInterval. Each check lists every certificate: a benchmark of thousands of devices spaces them.
	RegistryPoll time.Duration
}

// Emulator is a running local emulator.
type Emulator struct {
	Moto       *motoserver.Server
	Deployment *Deployment
	Broker     *Broker
	ServerCA   *testpki.Pair // trust anchor of the broker's TLS certificate (the stand-in for Amazon Root CA 1)
	AWS        aws.Config
	IoT        *iot.Client
	S3         *s3.Client
	Shadow     *ShadowClient
	Queues     *sqs.Client

	async         *AsyncInvoker
	pool          *RIEPool
	mappings      []*EventSourceMapping
	stopSchedules context.CancelFunc
	schedules     sync.WaitGroup
	// RuleEvents counts the messages the rules engine delivered to the JITR path (registered events).
	RuleEvents atomic.Int64
	// ruleSends carries the rules engine's SQS deliveries to the sender (sendRuleMessages).
	ruleSends chan ruleSend
	// The other functions of the template (the presign function): their invokers by logical id, the identities
	// they sign with, and the endpoints that check those signatures (S3, the IoT data plane).
	others     map[string]*AsyncInvoker
	otherPools []*RIEPool
	faults     *faultInvoker
	// ids holds every function's identity: moto's IAM layer, the S3 gate and the data plane authorize by it.
	ids *identity.Registry
	// jitrID is the JITR function's identity: its own access key and its role's policies from the template.
	jitrID     *identity.Identity
	S3Gate     *S3Gate
	DataPlane  *DataPlane
	tmpDir     string
	ownsMoto   bool
	tl         *timeline.Timeline
	mu         sync.Mutex
	reported   map[string]string   // certificate id → last status shown on the timeline
	certThing  map[string]string   // certificate id → thing its CN names
	thingCerts map[string][]string // thing → certificates seen
	stopOnce   sync.Once
}

// AWSConfig returns an SDK configuration that talks to the given moto server.
func AWSConfig(motoURL string) aws.Config {
	return aws.Config{
		Region:       motoserver.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""),
		BaseEndpoint: aws.String(motoURL),
		HTTPClient:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second},
	}
}

// Start brings the emulator up: moto, the deployment of the template, the function runner and the broker.
func Start(ctx context.Context, opts Options) (tw *Emulator, err error) {
	if opts.Template == nil {
		return nil, errors.New("emulator: no template")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	t := &Emulator{Moto: opts.Moto, tl: opts.Timeline, reported: map[string]string{}, certThing: map[string]string{}, thingCerts: map[string][]string{}}
	defer func() {
		if err != nil {
			t.Stop()
		}
	}()
	if t.Moto == nil {
		if t.Moto, err = motoserver.Start(ctx, motoserver.Options{Log: opts.Log}); err != nil {
			return nil, err
		}
		t.ownsMoto = true
	}
	t.AWS = AWSConfig(t.Moto.URL)
	t.IoT = iot.NewFromConfig(t.AWS, func(o *iot.Options) { o.APIOptions = append(o.APIOptions, motoserver.Internal) }) // AWS IoT's own reads: no quota
	t.S3 = s3.NewFromConfig(t.AWS, func(o *s3.Options) { o.UsePathStyle = true })
	t.Shadow = &ShadowClient{Endpoint: t.Moto.URL, Region: t.AWS.Region, Credentials: t.AWS.Credentials, HTTP: t.AWS.HTTPClient.(*http.Client)}

	t.Queues = sqs.NewFromConfig(t.AWS)

	srvCA, err := testpki.NewCA(testpki.CAOptions{CommonName: "sphere-jitr emulator server CA"})
	if err != nil {
		return nil, err
	}
	leaf, err := srvCA.IssueServer("127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	t.ServerCA = srvCA
	serverCert := tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}
	t.ids = identity.NewRegistry(t.Moto)
	if t.S3Gate, err = StartS3Gate(t.Moto.URL, serverCert, t.ids, t.tl); err != nil {
		return nil, fmt.Errorf("S3 gate: %w", err)
	}
	if t.DataPlane, err = StartDataPlane(serverCert, t.ids, motoserver.Region, motoserver.AccountID, t.tl); err != nil {
		return nil, fmt.Errorf("IoT data endpoint: %w", err)
	}
	// The stack looks its IoT data endpoint up with a custom resource; in the emulator it is the one served here.
	attrs := map[string]string{}
	for _, id := range opts.Template.OfType("Custom::AWS") {
		attrs[id+".endpointAddress"] = t.DataPlane.Addr()
	}
	t.Deployment, err = Deploy(ctx, opts.Template, t.IoT, t.S3, DeployOptions{
		StackName: opts.StackName, Region: motoserver.Region, AccountID: motoserver.AccountID, Attrs: attrs, Queues: t.Queues,
		DynamoDB: dynamodb.NewFromConfig(t.AWS),
	})
	if err != nil {
		return nil, fmt.Errorf("deploy template: %w", err)
	}
	for _, ca := range t.Deployment.CAs {
		t.tl.Event("deploy", "CA %s registered ACTIVE=%v auto-registration=%v (%s)", timeline.Short(ca.ID), ca.Active, ca.AutoRegistration, ca.Cert.Subject.CommonName)
	}
	for name := range t.Deployment.Policies {
		t.tl.Event("deploy", "device policy %s created from the template", name)
	}
	for _, r := range t.Deployment.Rules {
		t.tl.Event("deploy", "topic rule %s: %s", r.Name, r.SQL)
	}
	for id, name := range t.Deployment.Tables {
		t.tl.Event("deploy", "DynamoDB table %s (%s) created from the template", name, id)
	}
	// The function runs as its role: its own credentials, its role's policies enforced by moto's IAM check.
	principal, err := stacktemplate.FunctionPrincipal(opts.Template, t.Deployment.Resolver, t.Deployment.FunctionID)
	if err != nil {
		return nil, fmt.Errorf("JITR function role: %w", err)
	}
	if t.jitrID, err = t.ids.Register(ctx, t.Deployment.Function, principal, t.Deployment.FunctionPolicy); err != nil {
		return nil, err
	}
	t.tl.Event("deploy", "IAM enforced: function %s runs as role %s with its %d policy document(s) from the template; each AWS call it makes is authorized as AWS does",
		t.Deployment.Function, t.jitrID.Principal.RoleName(), len(t.jitrID.Principal.Policies))

	fn := opts.Function
	if fn == nil {
		var env []string
		for _, kv := range t.Moto.Env() {
			if !strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") && !strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY=") && !strings.HasPrefix(kv, "AWS_SESSION_TOKEN=") {
				env = append(env, kv)
			}
		}
		env = append(env, t.jitrID.Env()...)
		env = append(env, "AWS_LAMBDA_FUNCTION_NAME="+t.Deployment.Function, "PATH="+os.Getenv("PATH"))
		keys := make([]string, 0, len(t.Deployment.FunctionEnv))
		for k, v := range t.Deployment.FunctionEnv {
			env = append(env, k+"="+v)
			keys = append(keys, k)
		}
		sort.Strings(keys)
		// One execution environment per concurrent invocation the template allows: each mapping's maximum
		// concurrency, and one for the schedule and direct invocations.
		size := opts.Workers
		if need := t.Deployment.Concurrency() + 1; size < need {
			size = need
		}
		t.pool, err = StartRIEPool(ctx, RIEOptions{RIE: opts.RIE, Bootstrap: opts.Bootstrap, Env: env, Size: size, Log: opts.Log})
		if err != nil {
			return nil, err
		}
		t.tl.Event("deploy", "JITR function %s running under aws-lambda-rie ×%d, environment from the template: %s",
			t.Deployment.Function, size, strings.Join(keys, ", "))
		fn = t.pool
	}
	t.async = NewAsyncInvoker(fn, opts.Workers, 0, t.reportInvocation)
	// Lambda's event source mappings poll with the function's role.
	asFunction := func(o *sqs.Options) { o.Credentials = t.jitrID.Credentials() }
	for _, m := range t.Deployment.Mappings {
		t.mappings = append(t.mappings, StartEventSourceMapping(m, t.Queues, fn, motoserver.Region, asFunction, t.reportRecord))
		t.tl.Event("deploy", "event source mapping: queue %s → function, batch %d, window %s, maximum concurrency %d, partial batch failures %v",
			m.QueueURL[strings.LastIndex(m.QueueURL, "/")+1:], m.BatchSize, m.BatchWindow, max(2, m.MaxConcurrency), m.ReportFailures)
	}
	t.ruleSends = make(chan ruleSend, 1<<14)
	go t.sendRuleMessages()
	var schedCtx context.Context
	schedCtx, t.stopSchedules = context.WithCancel(context.Background())
	for _, sc := range t.Deployment.Schedules {
		schedule(schedCtx, &t.schedules, sc, t.async, motoserver.Region, motoserver.AccountID)
		t.tl.Event("deploy", "schedule %s: the function runs its reconciler every %s", sc.LogicalID, sc.Every)
	}
	if err := t.startOthers(ctx, opts); err != nil {
		return nil, err
	}

	t.Broker, err = StartBroker(BrokerOptions{
		RegistryPoll: opts.RegistryPoll,
		Deployment:   t.Deployment,
		IoT:          t.IoT,
		Shadow:       t.Shadow,
		Certificate:  serverCert,
		OnRule:       t.runRule,
		Timeline:     t.tl,
	})
	if err != nil {
		return nil, err
	}
	t.DataPlane.Deliver(t.Broker.Publish)
	t.tl.Event("iot-core", "MQTT over TLS on %s (client certificate required)", t.Broker.Addr())
	return t, nil
}

// reportInvocation writes what the function did to the registry: the certificate's new status, and what became
// of the device's older certificates (revoked, or retired: deactivated and deleted).
func (t *Emulator) reportInvocation(res AsyncResult) {
	var ev contract.RegisteredEvent
	_ = json.Unmarshal(res.Payload, &ev)
	if res.Err != nil {
		t.tl.Event("jitr", "certificate %s: function failed after %d attempts: %v", timeline.Short(ev.CertificateID), res.Attempts, res.Err)
		t.deadLetter(res)
		return
	}
	if t.tl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, thing := t.certificateState(ctx, ev.CertificateID)
	if thing == "" {
		return
	}
	t.mu.Lock()
	certs := append([]string(nil), t.thingCerts[thing]...)
	t.mu.Unlock()
	others, superseded := certs, false
	if own := slices.Index(certs, ev.CertificateID); own >= 0 {
		others = slices.Delete(certs, own, own+1)
		// A deferred retirement can retire the record's own certificate when the device has a newer one: that is
		// the device's old certificate, shown as such whichever record retires it.
		superseded = own < len(others)
	}
	if !superseded || !t.showRetired(ev.CertificateID, status, thing) {
		t.show(ev.CertificateID, status, "certificate %s → %s (thing %s)", timeline.Short(ev.CertificateID), status, timeline.Short(thing))
	}
	for _, id := range others {
		st, _ := t.certificateState(ctx, id)
		t.showRetired(id, st, thing)
	}
}

// showRetired shows what became of an old certificate of a thing, and reports whether it was retired at all.
func (t *Emulator) showRetired(id, status, thing string) bool {
	switch status {
	case "deleted":
		t.show(id, status, "old certificate %s of thing %s revoked: deactivated and deleted by the function, it can no longer connect", timeline.Short(id), timeline.Short(thing))
	case "REVOKED", "INACTIVE":
		t.show(id, status, "old certificate %s of thing %s → %s", timeline.Short(id), timeline.Short(thing), status)
	default:
		return false
	}
	return true
}

// deadLetter sends the invocation record of an event that failed every attempt to the function's on-failure
// destination, as Lambda does (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html):
// Lambda sends it with the function's execution role, so the send is authorized against the role too.
func (t *Emulator) deadLetter(res AsyncResult) {
	if t.Deployment.DeadLetterQueueURL == "" {
		return
	}
	fnArn := t.Deployment.Resolver.Attrs[t.Deployment.FunctionID+".Arn"]
	errorType, message := "Unhandled", res.Err.Error()
	var fe *FunctionError
	if errors.As(res.Err, &fe) {
		errorType, message = fe.Type, fe.Message
	}
	record := map[string]any{
		"version":   "1.0",
		"timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"requestContext": map[string]any{
			"requestId": fmt.Sprintf("emulator-%d", time.Now().UnixNano()), "functionArn": fnArn + ":$LATEST",
			"condition": "RetriesExhausted", "approximateInvokeCount": res.Attempts,
		},
		"requestPayload":  json.RawMessage(res.Payload),
		"responseContext": map[string]any{"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
		"responsePayload": map[string]any{"errorType": errorType, "errorMessage": message},
	}
	body, _ := json.Marshal(record)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Lambda sends the record with the function's role, so IAM judges the send against that role's grants.
	asFunction := func(o *sqs.Options) { o.Credentials = t.jitrID.Credentials() }
	if _, err := t.Queues.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(t.Deployment.DeadLetterQueueURL), MessageBody: aws.String(string(body))}, asFunction); err != nil {
		t.tl.Event("jitr", "dead-letter queue: the invocation record could not be delivered: %v", err)
		return
	}
	var ev contract.RegisteredEvent
	_ = json.Unmarshal(res.Payload, &ev)
	t.tl.Event("jitr", "certificate %s: event sent to the dead-letter queue after %d attempts", timeline.Short(ev.CertificateID), res.Attempts)
}

// DeadLetters returns the invocation records waiting in the function's dead-letter queue (up to ten).
func (t *Emulator) DeadLetters(ctx context.Context) ([]string, error) {
	if t.Deployment.DeadLetterQueueURL == "" {
		return nil, errors.New("the template gives the function no on-failure destination")
	}
	out, err := t.Queues.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(t.Deployment.DeadLetterQueueURL), MaxNumberOfMessages: 10})
	if err != nil {
		return nil, fmt.Errorf("receive dead letters: %w", err)
	}
	bodies := make([]string, 0, len(out.Messages))
	for _, m := range out.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	return bodies, nil
}

// certificateState returns a certificate's status ("deleted" once gone) and the thing its CN names.
func (t *Emulator) certificateState(ctx context.Context, id string) (status, thing string) {
	t.mu.Lock()
	thing = t.certThing[id]
	t.mu.Unlock()
	desc, err := t.IoT.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
	var nf *iottypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		return "deleted", thing
	}
	if err != nil {
		return "unknown", thing
	}
	if thing == "" {
		if c, err := azsphere.ParseCertificate([]byte(aws.ToString(desc.CertificateDescription.CertificatePem))); err == nil {
			thing = strings.ToLower(c.Subject.CommonName)
			t.mu.Lock()
			t.certThing[id] = thing
			t.thingCerts[thing] = append(t.thingCerts[thing], id)
			t.mu.Unlock()
		}
	}
	return string(desc.CertificateDescription.Status), thing
}

// show writes a timeline line when a certificate's status differs from the one last shown.
func (t *Emulator) show(id, status, format string, args ...any) {
	t.mu.Lock()
	changed := t.reported[id] != status
	t.reported[id] = status
	t.mu.Unlock()
	if changed {
		t.tl.Event("jitr", format, args...)
	}
}

// reportRecord shows on the timeline what the function did with one record of a queue batch.
func (t *Emulator) reportRecord(r SQSRecord) {
	var req contract.RetirementRequest
	if json.Unmarshal([]byte(r.Body), &req) == nil && req.Thing != "" {
		body, _ := json.Marshal(contract.RegisteredEvent{CertificateID: req.CertificateID})
		t.reportInvocation(AsyncResult{Payload: body})
		return
	}
	t.reportInvocation(AsyncResult{Payload: []byte(r.Body)})
}

// DrainFunction waits until every registered event has been handled by the function: the direct invocations, and
// the queues its event source mappings drain (registrations, then the retirements they queued).
func (t *Emulator) DrainFunction() {
	t.async.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for idle := 0; idle < 2 && ctx.Err() == nil; {
		if t.queuesIdle(ctx) {
			idle++
		} else {
			idle = 0
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// queuesIdle reports whether every mapped queue is empty (nothing visible, nothing in flight) and no mapping is
// invoking the function.
func (t *Emulator) queuesIdle(ctx context.Context) bool {
	for _, m := range t.mappings {
		if m.Busy() {
			return false
		}
		out, err := t.Queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(m.m.QueueURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
		if err != nil {
			return false
		}
		for _, v := range out.Attributes {
			if v != "0" {
				return false
			}
		}
	}
	return true
}

// Stop ends everything Start started, in reverse order. It is safe to call more than once.
func (t *Emulator) Stop() {
	t.stopOnce.Do(func() {
		if t.Broker != nil {
			_ = t.Broker.Close()
		}
		if t.stopSchedules != nil {
			t.stopSchedules()
			t.schedules.Wait()
		}
		for _, m := range t.mappings {
			m.Stop()
		}
		if t.ruleSends != nil {
			close(t.ruleSends)
		}
		if t.async != nil {
			t.async.Stop()
		}
		for _, a := range t.others {
			a.Stop()
		}
		if t.pool != nil {
			t.pool.Stop()
		}
		for _, p := range t.otherPools {
			p.Stop()
		}
		if t.S3Gate != nil {
			_ = t.S3Gate.Close()
		}
		if t.DataPlane != nil {
			_ = t.DataPlane.Close()
		}
		if t.tmpDir != "" {
			_ = os.RemoveAll(t.tmpDir)
		}
		if t.ownsMoto && t.Moto != nil {
			t.Moto.Stop()
		}
	})
}

// Info is what a device (or the fleet simulator) needs to reach the emulator, as `make device-image` would
// give it from the stack outputs.
type Info struct {
	Endpoint         string   `json:"endpoint"`    // host:port of the MQTT broker
	ServerCAPEM      string   `json:"serverCaPem"` // trust anchor for the broker
	AWSEndpoint      string   `json:"awsEndpoint"` // moto, for presigning and the summary
	Region           string   `json:"region"`
	Bucket           string   `json:"bucket"`
	CACertificateIDs []string `json:"caCertificateIds"`
	DevicePolicy     string   `json:"devicePolicy"`
	TopicRoot        string   `json:"topicRoot"` // first level of each device's own topic tree (stack output)
	// StackName, Outputs and the moto credentials let the operator CLI (fleetctl -emulator) work against the
	// emulator as it works against the deployed stack.
	StackName          string            `json:"stackName"`
	Outputs            map[string]string `json:"outputs"`
	AWSAccessKeyID     string            `json:"awsAccessKeyId"`
	AWSSecretAccessKey string            `json:"awsSecretAccessKey"`
}

// Info describes the running emulator.
func (t *Emulator) Info() Info {
	info := Info{
		Endpoint: t.Broker.Addr(), ServerCAPEM: string(t.ServerCA.CertPEM()), AWSEndpoint: t.Moto.URL,
		Region: t.AWS.Region, Bucket: t.Deployment.Bucket, DevicePolicy: t.Deployment.FunctionEnv[contract.EnvDevicePolicyName],
		TopicRoot: t.Deployment.Outputs[contract.OutputDeviceTopicRoot],
		StackName: t.Deployment.StackName, Outputs: t.Deployment.Outputs,
		AWSAccessKeyID: motoserver.AccessKeyID, AWSSecretAccessKey: motoserver.SecretAccessKey,
	}
	for _, ca := range t.Deployment.CAs {
		info.CACertificateIDs = append(info.CACertificateIDs, ca.ID)
	}
	return info
}

// Functions are the executables the emulator runs the template's functions with, built from one checkout.
type Functions struct {
	Bootstrap, Presign, RIE string
}

// BuildFunctions builds the JITR and presign functions into dir and aws-lambda-rie (see FindRIE) from the repository
// at root, every time (the Go build cache makes it cheap), so the emulator runs exactly the code of the checkout.
func BuildFunctions(ctx context.Context, root, dir string) (Functions, error) {
	var f Functions
	var err error
	if f.RIE, err = FindRIE(ctx, root); err != nil {
		return f, err
	}
	if f.Bootstrap, err = BuildBootstrap(ctx, root, dir); err != nil {
		return f, err
	}
	f.Presign, err = BuildPresignBootstrap(ctx, root, dir)
	return f, err
}

// BuildBootstrap compiles the JITR function (./lambda/jitr of the repository at root) for the host, as the
// file the Lambda runtime starts, and returns its path.
func BuildBootstrap(ctx context.Context, root, outDir string) (string, error) {
	return lambdabuild.Build(ctx, root, "./lambda/jitr", runtime.GOARCH, outDir)
}

// BuildPresignBootstrap compiles the presign function (./lambda/presign) for the host into outDir/presign.
func BuildPresignBootstrap(ctx context.Context, root, outDir string) (string, error) {
	return lambdabuild.Build(ctx, root, "./lambda/presign", runtime.GOARCH, filepath.Join(outDir, "presign"))
}

// FindRIE builds the aws-lambda-rie command into build/tools/bin of the repository at root, at the version go.mod
// pins (its tool directive), and returns its path. The Go build cache makes this cheap after the first time.
func FindRIE(ctx context.Context, root string) (string, error) {
	p := filepath.Join(root, "build", "tools", "bin", "aws-lambda-rie")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", p, rieTool)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build aws-lambda-rie: %w\n%s", err, msg)
	}
	return p, nil
}
