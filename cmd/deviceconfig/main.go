// Command deviceconfig generates the device build's configuration from the deployed stack: it reads the stack
// outputs (the file `cdk deploy --outputs-file` writes, or CloudFormation), presigns one read-only GET URL for a
// fleet-wide object (fleet/notice.txt unless -key says otherwise; never a URL that writes: each device asks for its
// own short-lived URLs over MQTT at run time), and writes device_config.h and app_manifest.json into the device build tree (never into
// tracked sources). With -image it then builds the image package with the Azure Sphere SDK. `make device-config`
// and `make device-image` run it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/smithy-go/logging"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/stackoutputs"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, defaultEnv()))
}

// env is what the command takes from its surroundings, replaceable in tests.
type env struct {
	now           func() time.Time
	loadAWSConfig func(ctx context.Context, optFns ...func(*config.LoadOptions) error) (aws.Config, error)
	getenv        func(string) string
	defaultSDKDir string // where the Azure Sphere SDK installs on Linux
}

func defaultEnv() env {
	load := func(ctx context.Context, optFns ...func(*config.LoadOptions) error) (aws.Config, error) {
		// The credential chain's own log lines (IMDS fall-backs) only repeat what the errors below say.
		return config.LoadDefaultConfig(ctx, append([]func(*config.LoadOptions) error{config.WithLogger(logging.Nop{})}, optFns...)...)
	}
	return env{now: time.Now, loadAWSConfig: load, getenv: os.Getenv, defaultSDKDir: DefaultSDKDir}
}

type options struct {
	outputs, stack, expires, key string
	port                         int
	deviceDir, outDir, template  string
	image                        bool
	preset                       string
}

// usageError is a command line the tool cannot act on.
type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	fs := flag.NewFlagSet("deviceconfig", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.outputs, "outputs", "", "stack outputs file written by 'cdk deploy --outputs-file' (make deploy writes cdk-outputs.json); empty: read them from CloudFormation")
	fs.StringVar(&o.stack, "stack", contract.StackName, "stack name")
	fs.StringVar(&o.expires, "expires", DefaultExpiry.String(), "lifetime of the fleet file's presigned GET URL: a Go duration or days (7d at most, the SigV4 limit)")
	fs.IntVar(&o.port, "port", 8883, "MQTT port of AWS IoT Core: 8883, or 443 (with ALPN)")
	fs.StringVar(&o.key, "key", DefaultFleetKey, "S3 key of the fleet-wide object the image may read (under "+FleetKeyPrefix+")")
	fs.StringVar(&o.deviceDir, "device-dir", "device", "device app source folder")
	fs.StringVar(&o.outDir, "out", "", "folder for device_config.h and app_manifest.json (default <device-dir>/build/config, CMake's DEVICE_CONFIG_DIR)")
	fs.StringVar(&o.template, "manifest-template", "", "app manifest template (default <device-dir>/app_manifest.json)")
	fs.BoolVar(&o.image, "image", false, "then build the image package with the Azure Sphere SDK")
	fs.StringVar(&o.preset, "preset", "ARM-Release", "CMake preset of the image build")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "deviceconfig: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.outDir == "" {
		o.outDir = filepath.Join(o.deviceDir, "build", "config")
	}
	if o.template == "" {
		o.template = filepath.Join(o.deviceDir, "app_manifest.json")
	}
	if err := generate(ctx, o, stdout, stderr, e); err != nil {
		fmt.Fprintf(stderr, "deviceconfig: %v\n", err)
		if errors.As(err, new(usageError)) {
			return 2
		}
		return 1
	}
	if o.image {
		if err := BuildImage(ctx, ImageBuild{DeviceDir: o.deviceDir, ConfigDir: o.outDir, Preset: o.preset,
			SDKDir: e.getenv(SDKDirEnv), DefaultSDKDir: e.defaultSDKDir}, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "deviceconfig: %v\n", err)
			return 1
		}
	}
	return 0
}

// generate writes device_config.h and app_manifest.json.
func generate(ctx context.Context, o options, stdout, stderr io.Writer, e env) error {
	expiry, err := ParseExpiry(o.expires)
	if err != nil {
		return usageError{err}
	}
	if o.port != 8883 && o.port != 443 {
		return usageError{fmt.Errorf("port %d: AWS IoT Core takes MQTT over TLS on 8883, or on 443 with ALPN", o.port)}
	}
	template, err := os.ReadFile(o.template)
	if err != nil {
		return fmt.Errorf("read the app manifest template: %w (it is device/app_manifest.json in git)", err)
	}

	outputs, cfg, err := loadOutputs(ctx, o, e)
	if err != nil {
		return err
	}
	settings, err := outputs.Device()
	if err != nil {
		return err
	}

	key := o.key
	if err := CheckFleetKey(key); err != nil {
		return usageError{err}
	}
	urls, err := signFleetURL(ctx, cfg, settings, key, expiry, stderr, e)
	if err != nil {
		return err
	}
	if err := checkDeviceLimits(settings.Endpoint, urls, stderr); err != nil {
		return err
	}

	header := RenderHeader(DeviceConfig{Endpoint: settings.Endpoint, Port: o.port, TopicRoot: settings.TopicRoot,
		FleetGetURL: urls.Get, FleetObject: "s3://" + settings.Bucket + "/" + key, Source: outputs.Source, URLExpires: urls.Expires})
	manifest, err := RenderManifest(template, ManifestSettings{Endpoint: settings.Endpoint, BucketHost: urls.Host, TenantID: settings.TenantID})
	if err != nil {
		return err
	}
	headerPath := filepath.Join(o.outDir, "device_config.h")
	manifestPath := filepath.Join(o.outDir, "app_manifest.json")
	if err := writeGenerated(headerPath, []byte(header)); err != nil {
		return err
	}
	if err := writeGenerated(manifestPath, manifest); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "stack outputs:      %s\n", outputs.Source)
	fmt.Fprintf(stdout, "AWS IoT endpoint:   %s:%d (topics under %s/<thingName>/)\n", settings.Endpoint, o.port, settings.TopicRoot)
	fmt.Fprintf(stdout, "fleet file:         s3://%s/%s via %s (read-only; device objects: runtime URLs over MQTT)\n", settings.Bucket, key, urls.Host)
	if urls.Expires.IsZero() {
		fmt.Fprintf(stdout, "presigned URL:      NOT signed (no AWS credentials)\n")
	} else {
		fmt.Fprintf(stdout, "presigned URL:      GET only, expires %s (in %s)\n", urls.Expires.Format(time.RFC3339), expiry)
	}
	fmt.Fprintf(stdout, "tenant (DeviceAuthentication): %s\n", settings.TenantID)
	fmt.Fprintf(stdout, "wrote %s\nwrote %s\n", headerPath, manifestPath)
	return nil
}

// signFleetURL presigns the GET URL of the fleet file baked into the image with the caller's credentials, or writes
// an unsigned one (with a warning naming the fix) when there are none; it warns when temporary credentials make the
// URL die before its expiry.
func signFleetURL(ctx context.Context, cfg aws.Config, settings *stackoutputs.DeviceSettings, key string, expiry time.Duration, stderr io.Writer, e env) (*FleetURL, error) {
	credCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	creds, credErr := cfg.Credentials.Retrieve(credCtx)
	cancel()
	if credErr != nil {
		fmt.Fprintf(stderr, "warning: no AWS credentials to sign the fleet file's S3 URL: wrote an UNSIGNED URL, the device's fleet file "+
			"download will be refused (403). Run 'aws configure' or 'aws sso login', then 'make device-config' again (credential chain: %v).\n", credErr)
		return UnsignedFleetURL(settings.Region, settings.Bucket, key), nil
	}
	urls, err := PresignFleetGet(ctx, cfg, settings.Region, settings.Bucket, key, expiry, e.now)
	if err != nil {
		return nil, err
	}
	// A URL signed with a session token dies with the session, whatever X-Amz-Expires says.
	outlived := creds.CanExpire && !creds.Expires.IsZero() && !creds.Expires.Before(urls.Expires)
	if creds.SessionToken != "" && !outlived {
		until := "when they expire"
		if creds.CanExpire && !creds.Expires.IsZero() {
			until = "at " + creds.Expires.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stderr, "warning: the fleet file's S3 URL is signed with temporary credentials (session token): it stops working "+
			"%s, not after %s. For URLs that last, sign with an IAM user's access key, or run 'make device-image' again.\n", until, expiry)
	}
	return urls, nil
}

// loadOutputs reads the stack outputs from the file, or from CloudFormation when no file is given, and returns
// the AWS configuration to sign with.
func loadOutputs(ctx context.Context, o options, e env) (*stackoutputs.Outputs, aws.Config, error) {
	if o.outputs != "" {
		outputs, err := stackoutputs.ReadFile(o.outputs, o.stack)
		if err != nil {
			return nil, aws.Config{}, fmt.Errorf("%w: deploy it with 'make deploy', or name the stack with -stack <name>", err)
		}
		var opts []func(*config.LoadOptions) error
		if region := outputs.Values[contract.OutputRegion]; region != "" {
			opts = append(opts, config.WithRegion(region))
		}
		cfg, err := e.loadAWSConfig(ctx, opts...)
		if err != nil {
			return nil, aws.Config{}, fmt.Errorf("load AWS configuration: %w (check AWS_PROFILE and ~/.aws/config)", err)
		}
		return outputs, cfg, nil
	}

	cfg, err := e.loadAWSConfig(ctx)
	if err != nil {
		return nil, aws.Config{}, fmt.Errorf("load AWS configuration: %w (check AWS_PROFILE and ~/.aws/config)", err)
	}
	credCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = cfg.Credentials.Retrieve(credCtx)
	cancel()
	if err != nil {
		return nil, aws.Config{}, fmt.Errorf("no stack outputs file and no AWS credentials to read stack %s from CloudFormation: "+
			"run 'aws configure' or 'aws sso login' (and set AWS_REGION), or pass -outputs cdk-outputs.json, the file 'make deploy' writes "+
			"(credential chain: %v)", o.stack, err)
	}
	if cfg.Region == "" {
		return nil, aws.Config{}, fmt.Errorf("no AWS region to read stack %s from CloudFormation: set AWS_REGION (or region in 'aws configure'), "+
			"or pass -outputs cdk-outputs.json, the file 'make deploy' writes", o.stack)
	}
	outputs, err := stackoutputs.ReadStack(ctx, cloudformation.NewFromConfig(cfg), o.stack, cfg.Region)
	if errors.Is(err, stackoutputs.ErrNoStack) {
		return nil, aws.Config{}, fmt.Errorf("%w: deploy it with 'make deploy', pick the region with AWS_REGION, or name the stack with -stack <name>", err)
	}
	if err != nil {
		return nil, aws.Config{}, err
	}
	return outputs, cfg, nil
}

// Limits of the device app's static buffers (device/src/buffer_config.h).
const (
	deviceHostMax = 127  // URL_HOST_SIZE 128 with its NUL
	deviceURLWarn = 1024 // HTTP_USER_BUFFER_SIZE 2048 holds the request line, headers and the response headers
)

func checkDeviceLimits(endpoint string, urls *FleetURL, stderr io.Writer) error {
	for _, h := range []string{endpoint, urls.Host} {
		if len(h) > deviceHostMax {
			return fmt.Errorf("host %s has %d characters; the device holds at most %d (URL_HOST_SIZE in device/src/buffer_config.h)", h, len(h), deviceHostMax)
		}
	}
	if len(urls.Get) > deviceURLWarn {
		fmt.Fprintf(stderr, "warning: the presigned URL has %d characters; with the request and response headers it may not fit the device's "+
			"HTTP_USER_BUFFER_SIZE (2048). Temporary credentials make URLs long: sign with an IAM user's access key.\n", len(urls.Get))
	}
	return nil
}

// writeGenerated writes a generated file atomically, and refuses a destination git would track: generated
// values (endpoint, tenant, URLs that grant access) never belong in the sources.
func writeGenerated(path string, data []byte) error {
	dir := filepath.Dir(path)
	if tracked(path) {
		return fmt.Errorf("refusing to write %s: git would track it, and generated config (URLs that grant access to the bucket) "+
			"never goes into the sources; write into the build tree (the default, device/build/config)", path)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".deviceconfig-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// tracked reports whether path lies in a git work tree and is not ignored there. Outside a work tree, or without
// git, nothing is tracked.
func tracked(path string) bool {
	git, err := exec.LookPath("git")
	if err != nil {
		return false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	// git needs an existing folder to run in: the nearest one above the (maybe not yet created) destination.
	dir := filepath.Dir(abs)
	for {
		if info, err := os.Stat(dir); err == nil && info.IsDir() {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false
		}
		dir = parent
	}
	cmd := exec.Command(git, "-C", dir, "check-ignore", "-q", "--no-index", abs)
	err = cmd.Run()
	var exit *exec.ExitError
	// check-ignore: 0 ignored, 1 not ignored, 128 not a work tree (or another fatal error).
	return errors.As(err, &exit) && exit.ExitCode() == 1
}
