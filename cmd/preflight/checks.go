package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/servicequotas"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/sphere-jitr/sphere-jitr/internal/config"
)

// The APIs preflight reads, with the SDK's exact signatures.
type stsAPI interface {
	GetCallerIdentity(ctx context.Context, params *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

type iotAPI interface {
	GetRegistrationCode(ctx context.Context, params *iot.GetRegistrationCodeInput, optFns ...func(*iot.Options)) (*iot.GetRegistrationCodeOutput, error)
	GetIndexingConfiguration(ctx context.Context, params *iot.GetIndexingConfigurationInput, optFns ...func(*iot.Options)) (*iot.GetIndexingConfigurationOutput, error)
	GetV2LoggingOptions(ctx context.Context, params *iot.GetV2LoggingOptionsInput, optFns ...func(*iot.Options)) (*iot.GetV2LoggingOptionsOutput, error)
}

type cloudFormationAPI interface {
	DescribeStacks(ctx context.Context, params *cloudformation.DescribeStacksInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
}

type quotasAPI interface {
	ListServiceQuotas(ctx context.Context, params *servicequotas.ListServiceQuotasInput, optFns ...func(*servicequotas.Options)) (*servicequotas.ListServiceQuotasOutput, error)
}

var (
	_ stsAPI            = (*sts.Client)(nil)
	_ iotAPI            = (*iot.Client)(nil)
	_ cloudFormationAPI = (*cloudformation.Client)(nil)
	_ quotasAPI         = (*servicequotas.Client)(nil)
)

// Status of one check. A failure stops the deploy; a warning is something to know before deploying.
type Status string

const (
	OK   Status = "ok"
	Info Status = "info"
	Warn Status = "warn"
	Fail Status = "FAIL"
)

// Result is one check: what it found and, when it failed or warns, the command that fixes it.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// StormRatio is how much longer than the storm bound (N ÷ the scarcer of the DescribeCertificate and
// UpdateCertificate rates) a whole-fleet reboot took until every device was connected again when last measured:
// ratio_connect 1.30, the larger of two `make bench-storm` runs in a row (1.25 and 1.30), 1000 devices, reboot
// scenario, AWS's default quotas (scale 1) with the emulator's headroom 3.46 and 3.64 (the emulator more than three
// times as fast as what it emulates), issue 22 ("Fleet storm, measured where the emulator is not the bottleneck");
// every certificate was active by 1.02 × the bound in both. Update it with the next measurement.
const StormRatio = 1.30

// The storm's scarce APIs: each certificate needs one DescribeCertificate and one UpdateCertificate before its
// device can connect, both 10 requests/s by default.
var stormAPIs = []string{"DescribeCertificate", "UpdateCertificate"}

// iotQuotaServiceCode is AWS IoT Core's service code in Service Quotas; its rate quotas are named "<API> API TPS".
const iotQuotaServiceCode = "iotcore"

// MinBootstrapVersion is the oldest CDK bootstrap stack the app's DefaultStackSynthesizer deploys with.
const MinBootstrapVersion = 6

// preflight is one run of the checks against one account and region.
type preflight struct {
	sts       stsAPI
	iot       iotAPI
	cfn       cloudFormationAPI
	quotas    quotasAPI
	region    string
	toolkit   string // the CDK bootstrap stack's name
	devices   int
	ca        caInput
	now       time.Time
	account   string
	tenantCAs []config.TenantCA
}

func (p *preflight) run(ctx context.Context) []Result {
	var out []Result
	out = append(out, p.credentials(ctx))
	out = append(out, p.caFiles())
	if p.account != "" {
		out = append(out, p.registrationCode(ctx))
		out = append(out, p.bootstrap(ctx))
		out = append(out, p.indexing(ctx), p.logging(ctx))
		out = append(out, p.stormProjection(ctx))
	}
	return out
}

func (p *preflight) credentials(ctx context.Context) Result {
	r := Result{Check: "credentials"}
	if p.region == "" {
		r.Status, r.Detail = Fail, "no AWS region: the deploy would not know where to go"
		r.Fix = "export AWS_REGION=<the region to deploy to> (or set a region in your AWS profile), or pass REGION=<region>"
		return r
	}
	id, err := p.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		r.Status, r.Detail = Fail, fmt.Sprintf("sts GetCallerIdentity in %s: %v", p.region, err)
		r.Fix = "sign in: 'aws configure sso' / 'aws sso login', or export AWS_PROFILE=<profile> (check with 'aws sts get-caller-identity')"
		return r
	}
	p.account = deref(id.Account)
	r.Status, r.Detail = OK, fmt.Sprintf("account %s, region %s (%s)", p.account, p.region, deref(id.Arn))
	return r
}

// caFiles checks the tenant CA files the deploy will read with the deploy's own validation (internal/config).
func (p *preflight) caFiles() Result {
	r := Result{Check: "tenant CA files"}
	cas, mode, err := p.ca.load(p.now)
	if err != nil {
		problems, fixes := explain(err)
		r.Status, r.Detail, r.Fix = Fail, strings.Join(problems, "; "), strings.Join(fixes, "; or ")
		return r
	}
	p.tenantCAs = cas
	var parts []string
	for _, ca := range cas {
		s := fmt.Sprintf("%s (CN %q, valid until %s)", ca.Path, ca.Cert.Subject.CommonName, ca.Cert.NotAfter.Format(time.DateOnly))
		if ca.Verification != nil {
			s += fmt.Sprintf(", its verification certificate signed by it (CN %s)", ca.Verification.Subject.CommonName)
		}
		parts = append(parts, s)
	}
	r.Status, r.Detail = OK, fmt.Sprintf("%s mode: %s; from %s", mode, strings.Join(parts, "; "), p.ca.source)
	return r
}

// explain splits the deploy's refusals (config.Error, joined) into problems and their distinct fixes.
func explain(err error) (problems, fixes []string) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	seen := map[string]bool{}
	for _, e := range errs {
		var ce *config.Error
		if !errors.As(e, &ce) {
			problems = append(problems, e.Error())
			continue
		}
		problems = append(problems, fmt.Sprintf("context %q: %s", ce.Key, ce.Problem))
		if !seen[ce.Fix] {
			seen[ce.Fix] = true
			fixes = append(fixes, ce.Fix)
		}
	}
	if len(fixes) == 0 {
		fixes = []string{"run 'make tenant-ca' (with the AWS credentials and AWS_REGION you deploy with), or name the files: " +
			"make preflight CDK_ARGS='-c tenantCaCerts=<ca.cer> -c verificationCerts=<verification.cer>'"}
	}
	return problems, fixes
}

// registrationCode compares each verification certificate's CN with this account's registration code in this
// region: AWS IoT accepts a CA in DEFAULT mode only with a proof of possession carrying that code, and the code
// differs per account and per region.
func (p *preflight) registrationCode(ctx context.Context) Result {
	r := Result{Check: "account and region of the tenant CA"}
	if p.tenantCAs == nil {
		r.Status, r.Detail = Fail, "not checked: the tenant CA files did not pass"
		r.Fix = "fix the tenant CA files first (see above)"
		return r
	}
	var withProof []config.TenantCA
	for _, ca := range p.tenantCAs {
		if ca.Verification != nil {
			withProof = append(withProof, ca)
		}
	}
	if len(withProof) == 0 {
		r.Status, r.Detail = Info, "SNI_ONLY: no verification certificate, so nothing ties the CA to an account or region (AWS IoT registers it in any)"
		return r
	}
	out, err := p.iot.GetRegistrationCode(ctx, &iot.GetRegistrationCodeInput{})
	if err != nil {
		r.Status, r.Detail = Fail, fmt.Sprintf("iot GetRegistrationCode in %s: %v", p.region, err)
		r.Fix = "grant iot:GetRegistrationCode to these credentials (the deploy needs it too)"
		return r
	}
	code := strings.ToLower(deref(out.RegistrationCode))
	for _, ca := range withProof {
		cn := ca.Verification.Subject.CommonName
		if strings.ToLower(cn) != code {
			r.Status = Fail
			r.Detail = fmt.Sprintf("the verification certificate of the tenant CA %s has CN %s, but the AWS IoT registration code of account %s in %s is %s: "+
				"'make tenant-ca' ran with other credentials or another region, and AWS IoT would refuse the CA registration",
				ca.Path, cn, p.account, p.region, code)
			r.Fix = fmt.Sprintf("AWS_REGION=%s make tenant-ca (with the credentials of account %s), or deploy to the region the proof was made for", p.region, p.account)
			return r
		}
	}
	r.Status, r.Detail = OK, fmt.Sprintf("the verification certificate's CN is the registration code of account %s in %s", p.account, p.region)
	return r
}

// bootstrap checks the CDK bootstrap stack of the region.
func (p *preflight) bootstrap(ctx context.Context) Result {
	r := Result{Check: "CDK bootstrap"}
	fix := fmt.Sprintf("AWS_REGION=%s make bootstrap", p.region)
	out, err := p.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: &p.toolkit})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" && strings.Contains(ae.ErrorMessage(), "does not exist") {
			r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("no bootstrap stack %s in account %s, region %s", p.toolkit, p.account, p.region), fix
			return r
		}
		r.Status, r.Detail = Fail, fmt.Sprintf("cloudformation DescribeStacks %s in %s: %v", p.toolkit, p.region, err)
		r.Fix = "grant cloudformation:DescribeStacks to these credentials"
		return r
	}
	if len(out.Stacks) == 0 {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("no bootstrap stack %s in account %s, region %s", p.toolkit, p.account, p.region), fix
		return r
	}
	st := out.Stacks[0]
	switch st.StackStatus {
	case cfntypes.StackStatusCreateComplete, cfntypes.StackStatusUpdateComplete, cfntypes.StackStatusUpdateRollbackComplete:
	default:
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("bootstrap stack %s is %s", p.toolkit, st.StackStatus), fix
		return r
	}
	version := ""
	for _, o := range st.Outputs {
		if deref(o.OutputKey) == "BootstrapVersion" {
			version = deref(o.OutputValue)
		}
	}
	v, err := strconv.Atoi(version)
	switch {
	case err != nil:
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("stack %s has no BootstrapVersion output (%q): it is not a CDK bootstrap stack", p.toolkit, version), fix
	case v < MinBootstrapVersion:
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("bootstrap version %d, the app needs %d or later", v, MinBootstrapVersion), fix
	default:
		r.Status, r.Detail = OK, fmt.Sprintf("%s in %s: BootstrapVersion %d (%s)", p.toolkit, p.region, v, st.StackStatus)
	}
	return r
}

// indexing reports AWS IoT fleet indexing: an account-wide setting that other stacks or people may have set.
func (p *preflight) indexing(ctx context.Context) Result {
	r := Result{Check: "fleet indexing (account-wide)"}
	out, err := p.iot.GetIndexingConfiguration(ctx, &iot.GetIndexingConfigurationInput{})
	if err != nil {
		r.Status, r.Detail = Warn, fmt.Sprintf("iot GetIndexingConfiguration: %v", err)
		r.Fix = "grant iot:GetIndexingConfiguration to see whether someone else uses fleet indexing in this account and region"
		return r
	}
	var thing, connectivity string
	if c := out.ThingIndexingConfiguration; c != nil {
		thing, connectivity = string(c.ThingIndexingMode), string(c.ThingConnectivityIndexingMode)
	}
	if thing == "" || thing == string(iottypes.ThingIndexingModeOff) {
		r.Status, r.Detail = Info, "thing indexing OFF: nobody else depends on it in this account and region"
		return r
	}
	r.Status = Warn
	r.Detail = fmt.Sprintf("thing indexing %s, connectivity indexing %s: already set in this account and region (by another stack or by hand); "+
		"the stack does not change it today, and must not narrow it when it does", thing, orNone(connectivity))
	return r
}

// logging reports AWS IoT v2 logging, account-wide like fleet indexing.
func (p *preflight) logging(ctx context.Context) Result {
	r := Result{Check: "AWS IoT logging (account-wide)"}
	out, err := p.iot.GetV2LoggingOptions(ctx, &iot.GetV2LoggingOptionsInput{})
	var nc *iottypes.NotConfiguredException
	switch {
	case errors.As(err, &nc):
		r.Status, r.Detail = Info, "v2 logging not configured in this account and region"
	case err != nil:
		r.Status, r.Detail = Warn, fmt.Sprintf("iot GetV2LoggingOptions: %v", err)
		r.Fix = "grant iot:GetV2LoggingOptions to see whether someone else set AWS IoT logging in this account and region"
	case out.DisableAllLogs:
		r.Status, r.Detail = Warn, "v2 logging configured with every log disabled (set by someone else)"
	default:
		r.Status = Warn
		r.Detail = fmt.Sprintf("v2 logging already configured: default level %s, role %s (set by another stack or by hand; the stack does not change it today)",
			orNone(string(out.DefaultLogLevel)), orNone(deref(out.RoleArn)))
	}
	return r
}

// stormProjection reads the account's DescribeCertificate and UpdateCertificate rates from Service Quotas and
// projects how long a whole-fleet reboot of p.devices takes to re-admit every device.
func (p *preflight) stormProjection(ctx context.Context) Result {
	r := Result{Check: "AWS IoT quotas and fleet reboot"}
	rates, err := p.iotRates(ctx)
	source := "Service Quotas (" + iotQuotaServiceCode + ")"
	var missing []string
	for _, api := range stormAPIs {
		if _, ok := rates[api]; !ok {
			missing = append(missing, api)
		}
	}
	if err != nil || len(missing) > 0 {
		r.Status = Warn
		if err != nil {
			r.Fix = "grant servicequotas:ListServiceQuotas to read the account's AWS IoT quotas"
			source = fmt.Sprintf("AWS's defaults (Service Quotas: %v)", err)
		} else {
			source = fmt.Sprintf("AWS's defaults for %s (not in Service Quotas)", strings.Join(missing, ", "))
		}
		if rates == nil {
			rates = map[string]float64{}
		}
		for _, api := range stormAPIs {
			if _, ok := rates[api]; !ok {
				rates[api] = config.DefaultIoTQuotas[api]
			}
		}
	} else {
		r.Status = OK
	}
	scarce, tps := "", math.Inf(1)
	for _, api := range stormAPIs {
		if rates[api] < tps {
			scarce, tps = api, rates[api]
		}
	}
	bound := float64(p.devices) / tps
	var all []string
	for _, api := range stormAPIs {
		all = append(all, fmt.Sprintf("%s %g/s", api, rates[api]))
	}
	sort.Strings(all)
	r.Detail = fmt.Sprintf("%s from %s. Whole-fleet reboot of %d devices: bound %d ÷ %g/s (%s) = %s; projected %s until every device is connected again (× %.2f, the last measured ratio)",
		strings.Join(all, ", "), source, p.devices, p.devices, tps, scarce, seconds(bound), seconds(bound*StormRatio), StormRatio)
	if tps > config.DefaultIoTQuotas[scarce] {
		r.Detail += fmt.Sprintf(". The JITR function paces itself to AWS's defaults unless told: deploy with -c iotQuotas='{\"DescribeCertificate\":%g,\"UpdateCertificate\":%g}'",
			rates["DescribeCertificate"], rates["UpdateCertificate"])
	}
	return r
}

// iotRates lists the iotcore quotas named "<API> API TPS" as API -> requests per second.
func (p *preflight) iotRates(ctx context.Context) (map[string]float64, error) {
	rates := map[string]float64{}
	pages := servicequotas.NewListServiceQuotasPaginator(p.quotas, &servicequotas.ListServiceQuotasInput{ServiceCode: ptr(iotQuotaServiceCode)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, q := range page.Quotas {
			name := deref(q.QuotaName)
			if api, ok := strings.CutSuffix(name, " API TPS"); ok && q.Value != nil {
				rates[api] = *q.Value
			}
		}
	}
	return rates, nil
}

func seconds(s float64) string {
	d := time.Duration(math.Round(s)) * time.Second
	if d < time.Minute {
		return fmt.Sprintf("%.0f s", s)
	}
	return fmt.Sprintf("%.0f s (%s)", s, d)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func ptr[T any](v T) *T { return &v }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
