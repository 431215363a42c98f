// Command preflight checks, before anything is deployed, that the AWS account and region of the current
// credentials are ready for the SphereJitr stack: the credentials themselves, the tenant CA files the deploy will
// read, that the CA's proof of possession was made for this account and region (its CN is the AWS IoT registration
// code, which differs per account and region), the CDK bootstrap stack, the account-wide AWS IoT settings someone
// else may have set (fleet indexing, v2 logging), and the account's AWS IoT quotas with the time a whole-fleet
// reboot of -devices N would take at them. Every failure names the command that fixes it; the exit status is 1
// when a check failed.
//
//	preflight -print-environment                 aws://ACCOUNT/REGION of the credentials (for cdk bootstrap)
//	preflight [-devices 1000] [-region R] [-cdk-args "$CDK_ARGS"] [-cdk-json cdk.json] [-toolkit-stack-name CDKToolkit] [-json]
//
// `make preflight` runs it with the CDK_ARGS of `make deploy`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/servicequotas"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// errChecksFailed is returned when at least one check failed (the results say which).
var errChecksFailed = errors.New("preflight: a check failed; fix it with the command shown, then run make preflight again")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devices := fs.Int("devices", 1000, "fleet size for the whole-fleet reboot projection")
	region := fs.String("region", "", "AWS region (default: the credential chain's, e.g. AWS_REGION)")
	endpoint := fs.String("endpoint-url", "", "send every AWS call to this endpoint (e.g. a moto server)")
	cdkArgs := fs.String("cdk-args", "", "the -c arguments the deploy gets (make's CDK_ARGS)")
	cdkJSON := fs.String("cdk-json", "cdk.json", "the CDK app's cdk.json, for its context")
	toolkit := fs.String("toolkit-stack-name", "CDKToolkit", "the CDK bootstrap stack's name")
	asJSON := fs.Bool("json", false, "JSON on stdout instead of lines")
	printEnv := fs.Bool("print-environment", false, "only print the CDK environment of the credentials, aws://ACCOUNT/REGION (make bootstrap uses it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("preflight takes no argument (got %q)", fs.Args())
	}
	if *devices < 1 {
		return fmt.Errorf("-devices %d: want a fleet size of at least 1", *devices)
	}
	ca, err := resolveCAInput(*cdkArgs, *cdkJSON)
	if err != nil {
		return err
	}
	opts := []func(*awsconfig.LoadOptions) error{}
	if *region != "" {
		opts = append(opts, awsconfig.WithRegion(*region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	if *endpoint != "" {
		cfg.BaseEndpoint = aws.String(*endpoint)
	}
	if *printEnv {
		return printEnvironment(ctx, sts.NewFromConfig(cfg), cfg.Region, stdout)
	}
	p := &preflight{
		sts: sts.NewFromConfig(cfg), iot: iot.NewFromConfig(cfg), cfn: cloudformation.NewFromConfig(cfg),
		quotas: servicequotas.NewFromConfig(cfg), region: cfg.Region, toolkit: *toolkit, devices: *devices,
		ca: ca, now: time.Now(),
	}
	results := p.run(ctx)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			fmt.Fprintf(stdout, "[%-4s] %s: %s\n", r.Status, r.Check, r.Detail)
			if r.Fix != "" {
				fmt.Fprintf(stdout, "       fix: %s\n", r.Fix)
			}
		}
	}
	for _, r := range results {
		if r.Status == Fail {
			return errChecksFailed
		}
	}
	return nil
}

// printEnvironment writes aws://ACCOUNT/REGION of the credentials, the environment `cdk bootstrap` takes.
func printEnvironment(ctx context.Context, api stsAPI, region string, stdout io.Writer) error {
	if region == "" {
		return errors.New("no AWS region: export AWS_REGION=<the region to deploy to>, or pass REGION=<region>")
	}
	id, err := api.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return fmt.Errorf("sts GetCallerIdentity: %w (sign in: 'aws sso login', or export AWS_PROFILE=<profile>)", err)
	}
	_, err = fmt.Fprintf(stdout, "aws://%s/%s\n", deref(id.Account), region)
	return err
}
