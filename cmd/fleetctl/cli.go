package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
	"github.com/sphere-jitr/sphere-jitr/internal/operate"
	"github.com/sphere-jitr/sphere-jitr/internal/stackoutputs"
)

// cli is one invocation: its flags, its positional arguments and, once connected, the fleet.
type cli struct {
	emulator, region, stack, outputs, endpoint string
	json, quiet                                bool
	pageSize                                   int
	rateShare                                  float64
	status, reason                             string // certs -status, revoke -reason
	days                                       int    // stale -days
	certs, walk                                bool   // status -certs, status -walk
	decommission                               decommissionFlags
	args                                       []string
	stdout, stderr                             io.Writer
	fleet                                      *operate.Fleet
	source                                     string // where the stack came from, for messages
	aws                                        aws.Config
	logGroups                                  []string // the stack's log groups, from the emulator's info (why)
}

// parse reads the flags of a command; flags may come before or after the device id.
func parse(name string, args []string, stdout, stderr io.Writer) (*cli, error) {
	c := &cli{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("fleetctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.emulator, "emulator", "", "the local emulator's info file (build/demo/emulator.json, written by make demo)")
	fs.StringVar(&c.region, "region", "", "AWS region (default: the credential chain's)")
	fs.StringVar(&c.stack, "stack", contract.StackName, "stack name")
	fs.StringVar(&c.outputs, "outputs", "", "read the stack outputs from this file (cdk deploy --outputs-file) instead of CloudFormation")
	fs.StringVar(&c.endpoint, "endpoint-url", "", "send every AWS call to this endpoint (e.g. a moto server)")
	fs.BoolVar(&c.json, "json", false, "JSON on stdout instead of tables")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	fs.IntVar(&c.pageSize, "page-size", operate.MaxPageSize, "page size of the list calls (1..250)")
	fs.Float64Var(&c.rateShare, "rate-share", 0.5, "fraction of each AWS IoT API quota fleetctl may use (0 < F ≤ 1); the JITR function uses the rest")
	if name == "certs" {
		fs.StringVar(&c.status, "status", "", "only certificates of this status (ACTIVE, PENDING_ACTIVATION, INACTIVE, REVOKED)")
	}
	if name == "status" {
		fs.BoolVar(&c.certs, "certs", false, "also count the certificates of the stack's CAs by status (a ListCertificatesByCA walk: one call per 250)")
		fs.BoolVar(&c.walk, "walk", false, "walk the registry instead of the fleet index: every device with its ACTIVE certificate (slow: about 200 s per 1000 devices)")
	}
	if name == "stale" {
		fs.IntVar(&c.days, "days", 30, "devices not connected for at least this many days")
	}
	if name == "decommission" {
		c.decommission.register(fs)
	}
	if name == "revoke" {
		fs.StringVar(&c.reason, "reason", "", "why, stored with the deny-list entry")
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		c.args = append(c.args, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if c.pageSize < 1 || c.pageSize > operate.MaxPageSize {
		return nil, fmt.Errorf("-page-size %d: want 1..%d", c.pageSize, operate.MaxPageSize)
	}
	if c.days < 0 {
		return nil, fmt.Errorf("-days %d: want 0 or more", c.days)
	}
	if c.rateShare <= 0 || c.rateShare > 1 {
		return nil, fmt.Errorf("-rate-share %v: want a fraction in (0, 1]", c.rateShare)
	}
	return c, nil
}

// emulatorInfo is the part of the emulator's info file fleetctl reads (emulator/localaws Info).
type emulatorInfo struct {
	AWSEndpoint        string            `json:"awsEndpoint"`
	Region             string            `json:"region"`
	StackName          string            `json:"stackName"`
	Outputs            map[string]string `json:"outputs"`
	AWSAccessKeyID     string            `json:"awsAccessKeyId"`
	AWSSecretAccessKey string            `json:"awsSecretAccessKey"`
	LogGroups          []string          `json:"logGroups"`
}

// connect builds the AWS configuration and reads the stack's outputs.
func (c *cli) connect(ctx context.Context) error {
	var (
		awsCfg aws.Config
		outs   *stackoutputs.Outputs
		err    error
	)
	retryer := func() aws.Retryer { return iotapi.NewRetryer(iotapi.DefaultRetryPolicy) }
	if c.emulator != "" {
		data, err := os.ReadFile(c.emulator)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("emulator info %s does not exist: start the emulator first (emulator/README.md, \"Running it alone\")", c.emulator)
		}
		if err != nil {
			return fmt.Errorf("read emulator info: %w", err)
		}
		var info emulatorInfo
		if err := json.Unmarshal(data, &info); err != nil || info.AWSEndpoint == "" || len(info.Outputs) == 0 {
			return fmt.Errorf("emulator info %s lacks the AWS endpoint or the stack outputs (%v): restart the emulator of this checkout", c.emulator, err)
		}
		awsCfg = aws.Config{Region: info.Region, BaseEndpoint: aws.String(info.AWSEndpoint), Retryer: retryer,
			Credentials: credentials.NewStaticCredentialsProvider(info.AWSAccessKeyID, info.AWSSecretAccessKey, "")}
		outs = &stackoutputs.Outputs{Stack: info.StackName, Source: "the emulator (" + c.emulator + ")", Values: info.Outputs}
		c.logGroups = info.LogGroups
	} else {
		opts := []func(*config.LoadOptions) error{config.WithRetryer(retryer)}
		if c.region != "" {
			opts = append(opts, config.WithRegion(c.region))
		}
		if awsCfg, err = config.LoadDefaultConfig(ctx, opts...); err != nil {
			return fmt.Errorf("load AWS configuration: %w", err)
		}
		if c.endpoint != "" {
			awsCfg.BaseEndpoint = aws.String(c.endpoint)
		}
		if awsCfg.Region == "" {
			return errors.New("no AWS region: pass -region or set AWS_REGION (or a profile's region)")
		}
		if c.outputs != "" {
			outs, err = stackoutputs.ReadFile(c.outputs, c.stack)
		} else {
			outs, err = stackoutputs.ReadStack(ctx, cloudformation.NewFromConfig(awsCfg), c.stack, awsCfg.Region)
		}
		if err != nil {
			return err
		}
	}
	stack, err := outs.Operations()
	if err != nil {
		return err
	}
	c.source, c.aws = outs.Source, awsCfg
	var progress io.Writer = c.stderr
	if c.quiet {
		progress = io.Discard
	}
	actor := "fleetctl"
	if u, err := user.Current(); err == nil && u.Username != "" {
		actor = "fleetctl (" + u.Username + ")"
	}
	iotc := iot.NewFromConfig(awsCfg, func(o *iot.Options) { o.APIOptions = append(o.APIOptions, c.pacing()) })
	c.fleet = operate.New(iotc, dynamodb.NewFromConfig(awsCfg), operate.Stack{
		Name: stack.Name, CAIDs: stack.CAIDs, DevicePolicy: stack.DevicePolicy, DenyListTable: stack.DenyListTable,
		RegistrationQueueURL: outs.Values[contract.OutputRegistrationQueueURL], DeadLetterQueueURL: outs.Values[contract.OutputDeadLetterQueueURL],
	}, operate.WithProgress(progress), operate.WithPageSize(c.pageSize), operate.WithActor(actor),
		operate.WithIndex(iotc), operate.WithQueues(sqs.NewFromConfig(awsCfg)), operate.WithDecommission(deleters(awsCfg, iotc, outs)))
	return nil
}

// pacing is the IoT client's rate limit: -rate-share of each of AWS IoT's default quotas (the JITR function uses
// the rest), and of the lowest of them for an operation the table does not list.
func (c *cli) pacing() func(*middleware.Stack) error {
	return iotapi.WithRateLimits(iotapi.RateLimits(iotquota.Defaults()).Share(c.rateShare),
		iotapi.PaceUnlisted(iotquota.Unlisted*c.rateShare))
}

// emit writes v as indented JSON.
func (c *cli) emit(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
