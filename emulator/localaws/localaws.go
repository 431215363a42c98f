// Package localaws is the local emulator of the product's cloud side: moto as the AWS API, the synthesized template
// deployed into it, an MQTT-over-TLS broker that behaves like AWS IoT Core for just-in-time registration
// (registry, policies, registered events, shadows) and the real JITR Lambda run by the rules engine.
package localaws

import (
	"context"
	"crypto/elliptic"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/emulator/cwlogs"
	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/broker"
	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/dataplane"
	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/rules"
	"github.com/sphere-jitr/sphere-jitr/emulator/iotcore/shadow"
	"github.com/sphere-jitr/sphere-jitr/emulator/lambdaruntime"
	"github.com/sphere-jitr/sphere-jitr/emulator/s3gate"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// Options configures Start.
type Options struct {
	Template  *stacktemplate.Template // default: the Setup's
	StackName string                  // default SphereJitr
	Function  lambdaruntime.Invoker   // replaces the JITR function's code (tests); default: its bootstrap under RIE
	Workers   int                     // concurrent function executions; default 2
	Timeline  *timeline.Timeline      // readable account of the flow; nil for none
	Log       io.Writer               // function output; default discarded
	// RegistryPoll is how often the broker checks open connections against the registry (revocation); default
	// broker.RevocationPollInterval. Each check lists every certificate: a benchmark of thousands of devices spaces them.
	RegistryPoll time.Duration
}

// Emulator is a running local emulator.
type Emulator struct {
	// AWS as moto serves it, and the clients the emulator (and its tests) read it with.
	Moto       *motoserver.Server
	AWS        aws.Config
	IoT        *iot.Client
	S3         *s3.Client
	Shadow     *shadow.Client
	Queues     *sqs.Client
	Logs       *cloudwatchlogs.Client
	DynamoDB   *dynamodb.Client
	Deployment *deploy.Deployment
	// LogShipper writes the functions' output and AWS IoT's v2 log entries into moto's CloudWatch Logs.
	LogShipper *cwlogs.Shipper

	// The endpoints the emulator serves itself, all with a server certificate ServerCA issued (the stand-in for
	// Amazon Root CA 1).
	Broker    *broker.Broker
	S3Gate    *s3gate.S3Gate
	DataPlane *dataplane.Endpoint
	ServerCA  *testpki.Pair

	// Functions are the template's functions running, by logical id; ids holds the identity each signs with.
	Functions map[string]*lambdaruntime.Function
	ids       *identity.Registry
	// lambda is Lambda's Invoke API for the functions (the teardown function continues itself with it).
	lambda *lambdaruntime.InvokeEndpoint

	template *stacktemplate.Template
	// physicalIDs are what the custom resources' Create answered, by logical id: their Delete request names it.
	physicalIDs map[string]string

	rules *rules.Engine

	report      *certificateReport // the timeline's account of what the JITR function did
	tl          *timeline.Timeline
	tmpDir      string
	stopOnce    sync.Once
	runningOnce sync.Once // the broker, the rules and the functions: Destroy ends them before Stop does
}

// AWSConfig returns an SDK configuration that talks to the given moto server (motoserver.AWSConfig).
func AWSConfig(motoURL string) aws.Config { return motoserver.AWSConfig(motoURL) }

// start brings the emulator up on moto with the functions' code: the endpoints it serves itself, the deployment of
// the template, the functions and the broker (Setup.Start is the one way in).
func start(ctx context.Context, moto *motoserver.Server, code lambdaruntime.Functions, opts Options) (tw *Emulator, err error) {
	if opts.Template == nil {
		return nil, errors.New("emulator: no template")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	t := &Emulator{Moto: moto, tl: opts.Timeline, Functions: map[string]*lambdaruntime.Function{}, template: opts.Template, physicalIDs: map[string]string{}}
	defer func() {
		if err != nil {
			t.Stop()
		}
	}()
	t.connectAWS()
	serverCert, err := t.startEndpoints()
	if err != nil {
		return nil, err
	}
	if err := t.deploy(ctx, opts); err != nil {
		return nil, err
	}
	if err := t.startFunctions(ctx, code, opts); err != nil {
		return nil, err
	}
	if err := t.createCustomResources(ctx, opts); err != nil {
		return nil, err
	}
	t.rules = rules.Start(t.Queues, t.Functions, t.tl)
	t.Broker, err = broker.Start(broker.Options{
		RegistryPoll: opts.RegistryPoll,
		Changes:      t.Moto.Changes,
		Deployment:   t.Deployment,
		IoT:          t.IoT,
		Shadow:       t.Shadow,
		Certificate:  serverCert,
		OnRule:       t.rules.Run,
		Timeline:     t.tl,
		Presence:     broker.PresenceOptions{ReportConnectivity: t.Moto.SetConnectivity, Logs: t.LogShipper, Logging: t.IoT},
	})
	if err != nil {
		return nil, err
	}
	t.DataPlane.Deliver(t.Broker.Publish)
	t.tl.Event("iot-core", "MQTT over TLS on %s (client certificate required)", t.Broker.Addr())
	return t, nil
}

// connectAWS makes the clients of moto.
func (t *Emulator) connectAWS() {
	t.AWS = AWSConfig(t.Moto.URL)
	// Each client straight to the moto process of its service (the router behind t.Moto.URL is for tools).
	at := func(service string) *string { return aws.String(t.Moto.ServiceURL(service)) }
	t.IoT = iot.NewFromConfig(t.AWS, func(o *iot.Options) {
		o.BaseEndpoint = at("iot")
		o.APIOptions = append(o.APIOptions, motoserver.Internal) // AWS IoT's own reads: no quota
	})
	t.S3 = s3.NewFromConfig(t.AWS, func(o *s3.Options) { o.UsePathStyle, o.BaseEndpoint = true, at("s3") })
	t.Shadow = &shadow.Client{Endpoint: t.Moto.ServiceURL("iotdata"), Region: t.AWS.Region, Credentials: t.AWS.Credentials, HTTP: t.AWS.HTTPClient.(*http.Client)}
	t.Queues = sqs.NewFromConfig(t.AWS, func(o *sqs.Options) { o.BaseEndpoint = at("sqs") })
	t.DynamoDB = dynamodb.NewFromConfig(t.AWS, func(o *dynamodb.Options) { o.BaseEndpoint = at("dynamodb") })
	t.Logs = cloudwatchlogs.NewFromConfig(t.AWS, func(o *cloudwatchlogs.Options) { o.BaseEndpoint = at("logs") })
	t.LogShipper = cwlogs.New(t.Logs)
	t.ids = identity.NewRegistry(t.Moto)
	t.report = &certificateReport{tl: t.tl, iot: t.IoT, reported: map[string]string{}, certThing: map[string]string{}, thingCerts: map[string][]string{}}
}

// startEndpoints issues the server certificate and starts the S3 gate and the IoT data endpoint (the stack's
// endpoint lookup resolves to it, so they come before the deployment); it returns the certificate for the broker.
func (t *Emulator) startEndpoints() (tls.Certificate, error) {
	// P-256, as AWS IoT's ATS endpoints chain to Amazon Root CA 3 (ECC P-256) or Amazon Root CA 1 (RSA 2048).
	srvCA, err := testpki.NewCA(testpki.CAOptions{CommonName: "sphere-jitr emulator server CA", Curve: elliptic.P256()})
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := srvCA.IssueServer("127.0.0.1", "localhost")
	if err != nil {
		return tls.Certificate{}, err
	}
	t.ServerCA = srvCA
	serverCert := tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}
	if t.S3Gate, err = s3gate.StartS3Gate(t.Moto.ServiceURL("s3"), serverCert, t.ids, t.tl); err != nil {
		return tls.Certificate{}, fmt.Errorf("S3 gate: %w", err)
	}
	if t.DataPlane, err = dataplane.Start(serverCert, t.ids, motoserver.Region, motoserver.AccountID, t.tl); err != nil {
		return tls.Certificate{}, fmt.Errorf("IoT data endpoint: %w", err)
	}
	if t.lambda, err = lambdaruntime.StartInvokeEndpoint(t.ids, t.tl); err != nil {
		return tls.Certificate{}, fmt.Errorf("the Lambda endpoint: %w", err)
	}
	return serverCert, nil
}

// deploy creates the template's resources in moto and shows them on the timeline.
func (t *Emulator) deploy(ctx context.Context, opts Options) error {
	// The stack looks its IoT data endpoint up with a custom resource; in the emulator it is the one served here.
	attrs := map[string]string{}
	for _, id := range opts.Template.OfType("Custom::AWS") {
		attrs[id+".endpointAddress"] = t.DataPlane.Addr()
	}
	var err error
	t.Deployment, err = deploy.Deploy(ctx, opts.Template, t.IoT, t.S3, deploy.Options{
		StackName: opts.StackName, Region: motoserver.Region, AccountID: motoserver.AccountID, Attrs: attrs, Queues: t.Queues,
		DynamoDB: t.DynamoDB, Logs: t.Logs,
	})
	if err != nil {
		return fmt.Errorf("deploy template: %w", err)
	}
	if err := t.S3Gate.ApplyTemplate(opts.Template, t.Deployment.Resolver); err != nil {
		return fmt.Errorf("S3 gate: %w", err)
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
	return nil
}

// startFunctions runs every function of the template the same way: its identity (its own access key, its role's
// policies from the template) registered with moto's IAM layer and the emulator's endpoints, its code under
// aws-lambda-rie with the environment the template gives it, S3 through the S3 gate and the IoT data endpoint the
// emulator serves (trusted through SSL_CERT_FILE, as a function trusts Amazon's roots in AWS).
func (t *Emulator) startFunctions(ctx context.Context, code lambdaruntime.Functions, opts Options) error {
	dir, err := os.MkdirTemp("", "localaws-functions-")
	if err != nil {
		return err
	}
	t.tmpDir = dir
	caFile := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(caFile, t.ServerCA.CertPEM(), 0o600); err != nil {
		return err
	}
	shared := append(t.Moto.Env(), "AWS_ENDPOINT_URL_S3="+t.S3Gate.URL(), "AWS_ENDPOINT_URL_LAMBDA="+t.lambda.URL(), "SSL_CERT_FILE="+caFile)
	for _, id := range t.Deployment.FunctionIDs() {
		f := t.Deployment.Functions[id]
		// Lambda sends what the function prints to its log group, where fleetctl why reads it.
		log := io.MultiWriter(opts.Log, t.LogShipper.Writer(f.LogGroup, lambdaStream()))
		fo := lambdaruntime.FunctionOptions{Bootstrap: code.Code(f.Kind), RIE: code.RIE, Env: shared, Workers: opts.Workers, Log: log,
			Queues: t.Queues, Region: motoserver.Region, Account: motoserver.AccountID, Timeline: t.tl, OnResult: t.presignResult}
		switch f.Kind {
		case deploy.KindJITR:
			fo.Invoker, fo.OnResult, fo.OnRecord = opts.Function, t.report.invocation, t.report.record
		case deploy.KindAccountSettings, deploy.KindTeardown:
			// invoked by CloudFormation's requests (customresource.go), one at a time; what it logs shows its progress
			fo.Workers, fo.OnResult = 1, nil
			source := string(f.Kind)
			if f.Kind == deploy.KindAccountSettings {
				source = "fleet-index" // the resource's name in the stack; the kind is too wide for the timeline
			}
			fo.Log = io.MultiWriter(log, &progressTap{tl: t.tl, source: source})
		}
		if fo.Invoker == nil && fo.Bootstrap == "" {
			return fmt.Errorf("the template has a %s function (%s): build it (lambdaruntime.BuildFunctions) and pass its bootstrap", f.Kind, id)
		}
		principal, err := stacktemplate.FunctionPrincipal(opts.Template, t.Deployment.Resolver, id)
		if err != nil {
			return fmt.Errorf("function %s role: %w", id, err)
		}
		ident, err := t.ids.Register(ctx, f.Name, principal, f.RolePolicy)
		if err != nil {
			return err
		}
		if t.Functions[id], err = lambdaruntime.StartFunction(ctx, f, ident, fo); err != nil {
			return err
		}
		t.lambda.Add(t.Functions[id])
	}
	t.tl.Event("deploy", "IAM enforced: each function signs with its own access key; moto authorizes its AWS calls, the S3 gate at %s and the IoT data endpoint %s its presigned URLs and publishes, against its role's policies from the template",
		t.S3Gate.URL(), t.DataPlane.Addr())
	return nil
}

// presignResult shows a failed invocation of the presign function: the device asks again.
func (t *Emulator) presignResult(res lambdaruntime.AsyncResult) {
	if res.Err != nil {
		t.tl.Event("presign", "invocation failed, no answer published (the device will ask again): %v", res.Err)
	}
}

// LambdaEndpoint is the URL of Lambda's Invoke API for the functions (their AWS_ENDPOINT_URL_LAMBDA).
func (t *Emulator) LambdaEndpoint() string { return t.lambda.URL() }

// RegisteredEvents counts the registered events the rules engine delivered to the JITR function or its queue.
func (t *Emulator) RegisteredEvents() int64 { return t.rules.RegisteredEvents.Load() }

// jitr is the JITR function running.
func (t *Emulator) jitr() *lambdaruntime.Function { return t.Functions[t.Deployment.JITR().LogicalID] }

// DeadLetters returns the invocation records waiting in the JITR function's dead-letter queue (up to ten).
func (t *Emulator) DeadLetters(ctx context.Context) ([]string, error) {
	return t.jitr().DeadLetters(ctx)
}

// FailPresign makes the next n invocations of the presign function fail as if it were unavailable (tests).
func (t *Emulator) FailPresign(n int) {
	for _, f := range t.Functions {
		if f.Deployed.Kind == deploy.KindPresign {
			f.FailNext(n)
		}
	}
}

// DrainFunction waits until every registered event has been handled by the function: the direct invocations, and
// the queues its event source mappings drain (registrations, then the retirements they queued).
func (t *Emulator) DrainFunction() {
	fn := t.jitr()
	fn.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for idle := 0; idle < 2 && ctx.Err() == nil; {
		if fn.MappingsIdle(ctx) {
			idle++
		} else {
			idle = 0
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends everything Setup.Start started, in reverse order (moto is the Setup's). It is safe to call more than once.
func (t *Emulator) Stop() {
	t.stopOnce.Do(func() {
		t.stopRunning()
		if t.lambda != nil {
			_ = t.lambda.Close()
		}
		if t.LogShipper != nil {
			t.LogShipper.Close()
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
	})
}

// stopRunning ends the broker, the rules engine and the functions (their mappings and schedules).
func (t *Emulator) stopRunning() {
	t.runningOnce.Do(func() {
		if t.Broker != nil {
			_ = t.Broker.Close()
		}
		if t.rules != nil {
			t.rules.Stop()
		}
		for _, f := range t.Functions {
			f.Stop()
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
	StackName string            `json:"stackName"`
	Outputs   map[string]string `json:"outputs"`
	// LogGroups are the stack's log groups (its functions'), as CloudFormation lists the stack's resources.
	LogGroups          []string `json:"logGroups"`
	AWSAccessKeyID     string   `json:"awsAccessKeyId"`
	AWSSecretAccessKey string   `json:"awsSecretAccessKey"`
	// Control is the URL of the running localaws command's control endpoint (`localaws destroy` posts to it).
	Control string `json:"control,omitempty"`
}

// Info describes the running emulator.
func (t *Emulator) Info() Info {
	info := Info{
		Endpoint: t.Broker.Addr(), ServerCAPEM: string(t.ServerCA.CertPEM()), AWSEndpoint: t.Moto.URL,
		Region: t.AWS.Region, Bucket: t.Deployment.Bucket, DevicePolicy: t.Deployment.JITR().Env[contract.EnvDevicePolicyName],
		TopicRoot: t.Deployment.Outputs[contract.OutputDeviceTopicRoot],
		StackName: t.Deployment.StackName, Outputs: t.Deployment.Outputs, LogGroups: t.Deployment.LogGroups,
		AWSAccessKeyID: motoserver.AccessKeyID, AWSSecretAccessKey: motoserver.SecretAccessKey,
	}
	for _, ca := range t.Deployment.CAs {
		info.CACertificateIDs = append(info.CACertificateIDs, ca.ID)
	}
	return info
}
