// Command tenantca downloads what the stack needs to register the Azure Sphere tenant CA with AWS IoT: the tenant
// (catalog) CA certificate and a proof-of-possession certificate whose CN is the account's AWS IoT registration
// code, through the Azure Sphere CLI: az sphere, or the legacy azsphere only with -legacy-cli (it retires on
// 2027-09-27, and the command says so each time it uses it). It checks both, writes them where the
// stack's context keys expect them, and prints the deploy command. `make tenant-ca` runs it.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/smithy-go/logging"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, defaultEnv()))
}

// registrationCodeAPI is the AWS IoT call the command needs.
type registrationCodeAPI interface {
	GetRegistrationCode(ctx context.Context, params *iot.GetRegistrationCodeInput, optFns ...func(*iot.Options)) (*iot.GetRegistrationCodeOutput, error)
}

var _ registrationCodeAPI = (*iot.Client)(nil)

// env is what the command takes from its surroundings, replaceable in tests.
type env struct {
	now    func() time.Time
	runner runner
	// iot returns the IoT client and its region, or why there is none.
	iot func(ctx context.Context) (registrationCodeAPI, string, error)
}

func defaultEnv() env {
	return env{now: time.Now, runner: execRunner{}, iot: defaultIoT}
}

func defaultIoT(ctx context.Context) (registrationCodeAPI, string, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithLogger(logging.Nop{}))
	if err != nil {
		return nil, "", fmt.Errorf("load AWS configuration: %w (check AWS_PROFILE and ~/.aws/config)", err)
	}
	return iotClient(ctx, cfg)
}

// iotClient checks that cfg can call AWS: credentials and a region.
func iotClient(ctx context.Context, cfg aws.Config) (registrationCodeAPI, string, error) {
	credCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(credCtx); err != nil {
		return nil, "", fmt.Errorf("no AWS credentials to get the AWS IoT registration code: run 'aws configure' or 'aws sso login', "+
			"then 'make tenant-ca' again (credential chain: %v)", err)
	}
	if cfg.Region == "" {
		return nil, "", errors.New("no AWS region: the registration code belongs to one region, the one you deploy to; " +
			"set AWS_REGION (or the region in 'aws configure') and run 'make tenant-ca' again")
	}
	return iot.NewFromConfig(cfg), cfg.Region, nil
}

type options struct {
	outDir   string
	tenantID string
	ca       CASelection
	catalog  CatalogSelection
	legacy   bool
}

// File names in the output folder, which the printed deploy command passes as context.
const (
	caFileName    = "tenant-ca.cer"
	proofFileName = "verification.cer"
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	fs := flag.NewFlagSet("tenantca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.outDir, "out", filepath.Join("build", "tenant-ca"), "folder for "+caFileName+" and "+proofFileName)
	fs.StringVar(&o.tenantID, "tenant-id", "", "Azure Sphere tenant id (default: asked from the CLI)")
	fs.StringVar(&o.catalog.ResourceGroup, "resource-group", "", "az sphere: resource group of the catalog (default: the only catalog)")
	fs.StringVar(&o.catalog.Catalog, "catalog", "", "az sphere: catalog name (default: the only catalog)")
	fs.StringVar(&o.ca.Name, "ca-name", "", "az sphere: serial number of the CA certificate (default: the active one)")
	fs.StringVar(&o.ca.Index, "index", "", "azsphere: index of the CA certificate in 'azsphere ca-certificate list'")
	fs.StringVar(&o.ca.Thumbprint, "thumbprint", "", "azsphere: thumbprint of the CA certificate")
	fs.BoolVar(&o.legacy, "legacy-cli", false, "use the legacy azsphere CLI instead of az sphere (it retires on "+LegacyCLIRetirement+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tenantca: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.legacy {
		fmt.Fprintln(stderr, "tenantca: "+LegacyCLIWarning)
	}
	if err := fetch(ctx, o, stdout, e); err != nil {
		fmt.Fprintf(stderr, "tenantca: %v\n", err)
		return 1
	}
	return 0
}

func fetch(ctx context.Context, o options, stdout io.Writer, e env) error {
	if strings.ContainsAny(o.outDir, ",'") {
		return fmt.Errorf("output folder %q: the stack's context lists are comma-separated and the printed command single-quoted; "+
			"pick a folder without ',' or a quote", o.outDir)
	}
	if o.tenantID != "" && !guidPattern.MatchString(o.tenantID) {
		return fmt.Errorf("-tenant-id %q is not a tenant id (a GUID like 01234567-89ab-cdef-0123-456789abcdef)", o.tenantID)
	}
	cli, err := findCLI(ctx, e.runner, o.ca, o.catalog, o.legacy)
	if err != nil {
		return err
	}
	tenant, err := cli.TenantID(ctx) // also proves the CLI is signed in, before AWS is asked anything
	if err != nil {
		return err
	}
	if o.tenantID != "" {
		tenant = strings.ToLower(o.tenantID)
	}

	api, region, err := e.iot(ctx)
	if err != nil {
		return err
	}
	out, err := api.GetRegistrationCode(ctx, &iot.GetRegistrationCodeInput{})
	if err != nil {
		return fmt.Errorf("get the AWS IoT registration code in %s: %w (the caller needs iot:GetRegistrationCode)", region, err)
	}
	code := aws.ToString(out.RegistrationCode)
	if code == "" {
		return fmt.Errorf("AWS IoT returned an empty registration code in %s", region)
	}

	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", o.outDir, err)
	}
	caPath := filepath.Join(o.outDir, caFileName)
	proofPath := filepath.Join(o.outDir, proofFileName)
	// A failed run must not leave a stale pair that the deploy command would then pick up.
	for _, p := range []string{caPath, proofPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the old %s: %w", p, err)
		}
	}
	keep := false
	defer func() {
		if !keep {
			os.Remove(caPath)
			os.Remove(proofPath)
		}
	}()
	if err := cli.DownloadCA(ctx, caPath); err != nil {
		return fmt.Errorf("download the tenant CA certificate with %s: %w", cli.Name(), err)
	}
	if err := cli.DownloadProof(ctx, proofPath, code); err != nil {
		return fmt.Errorf("download the proof-of-possession certificate with %s: %w", cli.Name(), err)
	}
	ca, err := checkPair(caPath, proofPath, code, e.now())
	if err != nil {
		return err
	}
	keep = true

	fmt.Fprintf(stdout, "Azure Sphere CLI:     %s\n", cli.Name())
	fmt.Fprintf(stdout, "tenant id:            %s\n", tenant)
	fmt.Fprintf(stdout, "tenant CA:            %s (%s, valid until %s)\n", caPath, ca.Subject.CommonName, ca.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "proof of possession:  %s (CN = AWS IoT registration code of %s)\n", proofPath, region)
	ctxArgs := fmt.Sprintf("-c tenantCaCerts=%s -c verificationCerts=%s -c tenantId=%s", caPath, proofPath, tenant)
	fmt.Fprintf(stdout, "\nDeploy the stack in %s with them:\n  make deploy CDK_ARGS='%s'\n", region, ctxArgs)
	fmt.Fprintf(stdout, "or with the CDK CLI:\n  cdk deploy --outputs-file cdk-outputs.json %s\n", ctxArgs)
	return nil
}

// checkPair verifies what the CLI wrote: a tenant CA valid now, and a proof whose CN is the registration code and
// that the CA signed. AWS IoT would refuse anything else at deploy time, with a less helpful message.
func checkPair(caPath, proofPath, code string, now time.Time) (*x509.Certificate, error) {
	ca, err := readCert(caPath)
	if err != nil {
		return nil, err
	}
	if err := azsphere.CheckCA(ca, now); err != nil {
		return nil, fmt.Errorf("%s is not a usable tenant CA: %v; list the tenant's CAs ('az sphere ca-certificate list' or "+
			"'azsphere ca-certificate list') and pick the active one (-ca-name, -index or -thumbprint)", caPath, err)
	}
	proof, err := readCert(proofPath)
	if err != nil {
		return nil, err
	}
	if proof.Subject.CommonName != code {
		return nil, fmt.Errorf("%s has CN %q, not the AWS IoT registration code %q: the CLI ignored the verification code; run 'make tenant-ca' again",
			proofPath, proof.Subject.CommonName, code)
	}
	if err := proof.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("%s is not signed by the downloaded tenant CA (%v): the tenant has more than one CA; "+
			"pick the same one for both downloads (-ca-name, -index or -thumbprint)", proofPath, err)
	}
	return ca, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the CLI reported success but wrote no %s: %w", path, err)
	}
	cert, err := azsphere.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}
