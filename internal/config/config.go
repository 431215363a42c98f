// Package config turns the CDK context of the app into a validated, typed Config. Every refusal names the context
// key, the problem, and the command that fixes it, because synth is where a user first meets a bad input.
package config

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
)

// Context keys the app reads.
const (
	KeyTenantCACerts     = "tenantCaCerts"
	KeyVerificationCerts = "verificationCerts"
	KeyCertificateMode   = "certificateMode"
	KeyTenantID          = "tenantId"
	KeyRetainRegistry    = "retainRegistry"
	KeyPresignMaxPut     = "presignMaxPutBytes"
	KeyPresignURLExpiry  = "presignUrlExpiry"
	KeyAlarmEmail        = "alarmEmail"
	KeyJitrConcurrency   = "jitrMaxConcurrency"
	KeyJitrBatchSize     = "jitrBatchSize"
	KeyJitrBatchWindow   = "jitrBatchWindow"
	KeyIoTQuotas         = "iotQuotas"
)

// KeyRetainDevices is the name retainRegistry had until it was renamed for what it does: it never kept the devices
// working. Setting it fails, with a message that names the new key and the lock-out.
const KeyRetainDevices = "retainDevices"

// RetainRegistryLockout is what a retained registry means for the fleet; the refusal of the old key, the stack's
// synth warning and the README say it where the user chooses the option.
const RetainRegistryLockout = "cdk destroy then keeps the registry (things with their shadows, certificates, the tenant CA " +
	"registration, the device policy, the deny-list table) but not a working fleet: an MT3620 gets a new certificate at " +
	"every boot and at least every 24 hours, and with the JITR function gone nothing activates it, so each device " +
	"locks itself out at its next rotation, the whole fleet within a day"

// jitrIoTAPIs are the AWS IoT control-plane operations the JITR function makes, the ones it paces itself on.
var jitrIoTAPIs = []string{"DescribeCertificate", "UpdateCertificate", "DeleteCertificate", "ListThingPrincipals",
	"AttachPolicy", "DetachPolicy", "CreateThing", "AttachThingPrincipal", "DetachThingPrincipal"}

// DefaultIoTQuotas are AWS IoT Core's default rates of jitrIoTAPIs (requests per second per account, from the
// project's one table of them, internal/iotquota). The function paces itself to them; -c iotQuotas overrides any
// of them after a quota increase.
var DefaultIoTQuotas = iotquota.Select(jitrIoTAPIs...)

// Defaults and bounds of the registration queue's event source mapping: how many execution environments drain
// it at once (AWS allows 2 to 1000), how many events one invocation gets (more than 10 need a batching window) and
// how long the mapping gathers a batch. An invocation handles its events all at once, paced by its share of the
// quotas: a batch of 50 keeps every paced API busy where 10 events in lockstep would leave it idle between steps.
const (
	DefaultJitrConcurrency = 2
	MaxJitrConcurrency     = 1000
	DefaultJitrBatchSize   = 50
	MaxJitrBatchSize       = 100
	DefaultJitrBatchWindow = time.Second
	MaxJitrBatchWindow     = 5 * time.Minute
)

// Defaults and bounds of the runtime S3 URLs (the presign function checks the same bounds): a PUT is capped at
// 1 MiB unless the context says otherwise, at most 5 GiB (S3's single-PUT limit); a URL lives 15 minutes, from one
// minute (time to connect and send) to one hour (it dies with the function's temporary credentials anyway).
const (
	DefaultPresignMaxPut    = 1 << 20
	MaxPresignMaxPut        = 5 << 30
	DefaultPresignURLExpiry = 15 * time.Minute
	MinPresignURLExpiry     = time.Minute
	MaxPresignURLExpiry     = time.Hour
)

// Certificate modes of an AWS IoT CA registration.
const (
	ModeDefault = "DEFAULT"
	ModeSNIOnly = "SNI_ONLY"
)

// MaxTenantCAs is how many tenant CAs may be registered at once: Azure Sphere issues the next tenant CA about 90
// days before the current one expires, so for a while both sign device certificates.
const MaxTenantCAs = 2

// TenantCA is one Azure Sphere tenant CA and, in DEFAULT mode, its proof-of-possession certificate.
type TenantCA struct {
	Path         string
	Cert         *x509.Certificate
	Verification *x509.Certificate // nil in SNI_ONLY mode
}

// Config is the validated input of the stack.
type Config struct {
	TenantCAs       []TenantCA
	CertificateMode string
	TenantID        string
	// RetainRegistry keeps the registry on cdk destroy (see RetainRegistryLockout).
	RetainRegistry bool
	// PresignMaxPutBytes is the largest upload a device gets a URL for; the URL signs the exact length.
	PresignMaxPutBytes int64
	// PresignURLExpiry is how long a runtime URL lives.
	PresignURLExpiry time.Duration
	// AlarmEmail, when set, is subscribed to an SNS topic the stack's alarms notify; empty means no topic.
	AlarmEmail string
	// JitrConcurrency, JitrBatchSize and JitrBatchWindow size the registration queue's event source mapping.
	JitrConcurrency int
	JitrBatchSize   int
	JitrBatchWindow time.Duration
	// IoTQuotas are the account's AWS IoT quotas the JITR function paces itself to (DefaultIoTQuotas unless the
	// context overrides some).
	IoTQuotas map[string]float64
	// IoTLogLevel is the AWS IoT v2 log level the stack turns on (KeyIoTLogging), "" for none.
	IoTLogLevel string
	// ConnectedDropAlarmPercent is the connected-devices alarm's threshold (KeyConnectedDropAlarmPercent).
	ConnectedDropAlarmPercent int
}

// Error is a refused context value.
type Error struct {
	Key     string
	Problem string
	Fix     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("context %q: %s. Fix: %s", e.Key, e.Problem, e.Fix)
}

const fixTenantCA = "run 'make tenant-ca' to download the current tenant CA and its proof of possession, " +
	"or pass -c tenantCaCerts=<tenant-ca.cer>[,<next-tenant-ca.cer>]"

// Load reads and validates the context through get (a node's TryGetContext), at time now. All problems are
// reported together, so one synth shows everything to fix.
func Load(get func(key string) any, now time.Time) (*Config, error) {
	l := &loader{get: get, now: now, cfg: &Config{CertificateMode: ModeDefault,
		PresignMaxPutBytes: DefaultPresignMaxPut, PresignURLExpiry: DefaultPresignURLExpiry,
		JitrConcurrency: DefaultJitrConcurrency, JitrBatchSize: DefaultJitrBatchSize, JitrBatchWindow: DefaultJitrBatchWindow}}
	l.certificateMode()
	caPaths := l.tenantCAs()
	l.verificationCerts(caPaths)
	l.tenantID()
	l.retainRegistry()
	l.presign()
	l.alarmEmail()
	l.storm()
	l.accountSettings()
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return l.cfg, nil
}

// loader reads one context key per method into cfg and collects every problem in errs.
type loader struct {
	get  func(key string) any
	now  time.Time
	cfg  *Config
	errs []error
}

func (l *loader) fail(key, problem, fix string) { l.errs = append(l.errs, &Error{key, problem, fix}) }

func (l *loader) certificateMode() {
	mode, ok := str(l.get(KeyCertificateMode))
	if !ok || mode == "" {
		return
	}
	switch strings.ToUpper(mode) {
	case ModeDefault, ModeSNIOnly:
		l.cfg.CertificateMode = strings.ToUpper(mode)
	default:
		l.fail(KeyCertificateMode, fmt.Sprintf("%q is not a certificate mode", mode),
			"pass -c certificateMode=DEFAULT (with verificationCerts) or -c certificateMode=SNI_ONLY")
	}
}

// tenantCAs reads the tenant CA certificates and returns the paths given, for the verification certificates to
// pair with.
func (l *loader) tenantCAs() []string {
	caPaths := list(l.get(KeyTenantCACerts))
	switch {
	case len(caPaths) == 0:
		l.fail(KeyTenantCACerts, "is not set", fixTenantCA)
	case len(caPaths) > MaxTenantCAs:
		l.fail(KeyTenantCACerts, fmt.Sprintf("names %d certificates, at most %d (the current tenant CA and the next one)", len(caPaths), MaxTenantCAs),
			"pass only the current and next tenant CA: -c tenantCaCerts=<current.cer>,<next.cer>")
	}
	seen := map[string]string{}
	for _, p := range caPaths {
		cert, err := readCert(KeyTenantCACerts, p, fixTenantCA)
		if err != nil {
			l.errs = append(l.errs, err)
			continue
		}
		if err := azsphere.CheckCA(cert, l.now); err != nil {
			l.fail(KeyTenantCACerts, fmt.Sprintf("%s: %v", p, err),
				"download the tenant CA that is valid now: 'make tenant-ca' (or 'az sphere ca-certificate list' to see them)")
			continue
		}
		fp := string(cert.Raw)
		if first, dup := seen[fp]; dup {
			l.fail(KeyTenantCACerts, fmt.Sprintf("%s is the same certificate as %s", p, first), "name each tenant CA once")
			continue
		}
		seen[fp] = p
		l.cfg.TenantCAs = append(l.cfg.TenantCAs, TenantCA{Path: p, Cert: cert})
	}
	return caPaths
}

func (l *loader) verificationCerts(caPaths []string) {
	verPaths := list(l.get(KeyVerificationCerts))
	fixVerification := "run 'make tenant-ca' (it downloads the proof with the account's registration code), " +
		"or pass -c certificateMode=SNI_ONLY to register without proof of possession"
	mode := l.cfg.CertificateMode
	switch {
	case mode == ModeSNIOnly && len(verPaths) > 0:
		l.fail(KeyVerificationCerts, "is set but certificateMode is SNI_ONLY, which registers without verification certificates",
			"drop -c verificationCerts, or use -c certificateMode=DEFAULT")
	case mode == ModeDefault && len(verPaths) == 0:
		l.fail(KeyVerificationCerts, "is required in DEFAULT certificate mode", fixVerification)
	case mode == ModeDefault && len(verPaths) != len(caPaths):
		l.fail(KeyVerificationCerts, fmt.Sprintf("names %d certificates for %d tenant CAs; give one per CA, in the same order", len(verPaths), len(caPaths)), fixVerification)
	case mode == ModeDefault && len(l.cfg.TenantCAs) == len(caPaths):
		for i, p := range verPaths {
			cert, err := readCert(KeyVerificationCerts, p, fixVerification)
			if err != nil {
				l.errs = append(l.errs, err)
				continue
			}
			ca := l.cfg.TenantCAs[i]
			if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
				l.fail(KeyVerificationCerts, fmt.Sprintf("%s is not signed by the tenant CA %s (%v)", p, ca.Path, err),
					"download the proof for that CA: 'make tenant-ca', or list the verification certificates in the order of tenantCaCerts")
				continue
			}
			l.cfg.TenantCAs[i].Verification = cert
		}
	}
}

func (l *loader) tenantID() {
	tenant, _ := str(l.get(KeyTenantID))
	switch {
	case tenant == "":
		l.fail(KeyTenantID, "is not set", "find it with 'az sphere catalog show --resource-group <group> --catalog <catalog>' (legacy: 'azsphere tenant show-selected') and pass -c tenantId=<GUID>, or run 'make tenant-ca', which prints it")
	case !azsphere.IsTenantID(tenant):
		l.fail(KeyTenantID, fmt.Sprintf("%q is not a GUID", tenant), "copy the tenant id from 'az sphere catalog show' (legacy: 'azsphere tenant show-selected'), in the form 01234567-89ab-cdef-0123-456789abcdef")
	default:
		l.cfg.TenantID = strings.ToLower(tenant)
	}
}

func (l *loader) retainRegistry() {
	if v := l.get(KeyRetainDevices); v != nil {
		l.fail(KeyRetainDevices, "was renamed retainRegistry, because it never kept the devices working: "+RetainRegistryLockout,
			"drop -c retainDevices (the default deletes the registry with the stack), or pass -c retainRegistry=true if you want the registry kept anyway")
	}
	const fix = "pass -c retainRegistry=true or -c retainRegistry=false"
	switch v := l.get(KeyRetainRegistry).(type) {
	case nil:
	case bool:
		l.cfg.RetainRegistry = v
	case string:
		b, err := strconv.ParseBool(v)
		if err != nil || (v != "true" && v != "false") {
			l.fail(KeyRetainRegistry, fmt.Sprintf("%q is not true or false", v), fix)
		}
		l.cfg.RetainRegistry = b
	default:
		l.fail(KeyRetainRegistry, fmt.Sprintf("%v is not true or false", v), fix)
	}
}

func (l *loader) presign() {
	switch v := l.get(KeyPresignMaxPut).(type) {
	case nil:
	case string, float64:
		n, err := strconv.ParseInt(strings.TrimSpace(fmt.Sprint(v)), 10, 64)
		if err != nil || n < 1 || n > MaxPresignMaxPut {
			l.fail(KeyPresignMaxPut, fmt.Sprintf("%v is not a byte count from 1 to %d", v, int64(MaxPresignMaxPut)),
				"pass -c presignMaxPutBytes=<bytes>, e.g. 1048576 (the default, 1 MiB)")
		}
		l.cfg.PresignMaxPutBytes = n
	default:
		l.fail(KeyPresignMaxPut, fmt.Sprintf("%v is not a byte count", v), "pass -c presignMaxPutBytes=<bytes>")
	}
	if v, ok := str(l.get(KeyPresignURLExpiry)); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < MinPresignURLExpiry || d > MaxPresignURLExpiry || d%time.Second != 0 {
			l.fail(KeyPresignURLExpiry, fmt.Sprintf("%q is not a duration in whole seconds from %s to %s", v, MinPresignURLExpiry, MaxPresignURLExpiry),
				"pass -c presignUrlExpiry=15m (the default), or any duration from 1m to 1h")
		}
		l.cfg.PresignURLExpiry = d
	}
}

// storm reads the settings of the registration path: the event source mapping's size and the IoT quotas.
func (l *loader) storm() {
	whole := func(key string, v any, lo, hi int, fix string) (int, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(fmt.Sprint(v)))
		if err != nil || n < lo || n > hi {
			l.fail(key, fmt.Sprintf("%v is not a whole number from %d to %d", v, lo, hi), fix)
			return 0, false
		}
		return n, true
	}
	if v := l.get(KeyJitrConcurrency); v != nil {
		if n, ok := whole(KeyJitrConcurrency, v, 2, MaxJitrConcurrency, "pass -c jitrMaxConcurrency=2 (the default; AWS allows 2 to 1000)"); ok {
			l.cfg.JitrConcurrency = n
		}
	}
	if v := l.get(KeyJitrBatchSize); v != nil {
		if n, ok := whole(KeyJitrBatchSize, v, 1, MaxJitrBatchSize, "pass -c jitrBatchSize=50 (the default), from 1 to 100"); ok {
			l.cfg.JitrBatchSize = n
		}
	}
	if v, ok := str(l.get(KeyJitrBatchWindow)); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxJitrBatchWindow || d%time.Second != 0 {
			l.fail(KeyJitrBatchWindow, fmt.Sprintf("%q is not a duration in whole seconds from 0s to 5m", v),
				"pass -c jitrBatchWindow=1s (the default), or any duration from 0s to 5m")
		} else {
			l.cfg.JitrBatchWindow = d
		}
	}
	if l.cfg.JitrBatchSize > 10 && l.cfg.JitrBatchWindow == 0 {
		l.fail(KeyJitrBatchSize, fmt.Sprintf("%d events per batch need a batching window (SQS returns at most 10 at once)", l.cfg.JitrBatchSize),
			"pass -c jitrBatchWindow=1s as well, or at most -c jitrBatchSize=10")
	}
	l.cfg.IoTQuotas = map[string]float64{}
	for api, rate := range DefaultIoTQuotas {
		l.cfg.IoTQuotas[api] = rate
	}
	const quotaFix = `pass -c iotQuotas='{"DescribeCertificate":20,"UpdateCertificate":20}' with your account's quotas (Service Quotas console, AWS IoT Core)`
	raw, _ := str(l.get(KeyIoTQuotas))
	if v, isMap := l.get(KeyIoTQuotas).(map[string]any); isMap {
		b, _ := json.Marshal(v)
		raw = string(b)
	}
	if raw == "" {
		return
	}
	var over map[string]float64
	if err := json.Unmarshal([]byte(raw), &over); err != nil {
		l.fail(KeyIoTQuotas, fmt.Sprintf("%q is not a JSON object of API name to requests per second", raw), quotaFix)
		return
	}
	for api, rate := range over {
		if _, known := DefaultIoTQuotas[api]; !known || rate <= 0 {
			l.fail(KeyIoTQuotas, fmt.Sprintf("%s: %v is not a positive rate of an API the JITR function calls", api, rate), quotaFix)
			continue
		}
		l.cfg.IoTQuotas[api] = rate
	}
}

// emailPattern is a plausible e-mail address: SNS confirms the subscription by mail, so a typo shows there; this
// only refuses what cannot be an address.
var emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

func (l *loader) alarmEmail() {
	email, _ := str(l.get(KeyAlarmEmail))
	if email == "" {
		return
	}
	if !emailPattern.MatchString(email) || len(email) > 254 {
		l.fail(KeyAlarmEmail, fmt.Sprintf("%q is not an e-mail address", email),
			"pass -c alarmEmail=ops@example.com (the address confirms the SNS subscription), or leave it out for no alarm topic")
		return
	}
	l.cfg.AlarmEmail = email
}

func readCert(key, path, fix string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{key, fmt.Sprintf("cannot read %s (%v)", path, errors.Unwrap(err)), fix}
	}
	cert, err := azsphere.ParseCertificate(data)
	if err != nil {
		return nil, &Error{key, fmt.Sprintf("%s is not a certificate in DER or PEM form (%v)", path, err), fix}
	}
	return cert, nil
}

// str returns a context value as a trimmed string; CDK passes -c values as strings.
func str(v any) (string, bool) {
	s, ok := v.(string)
	return strings.TrimSpace(s), ok
}

// list splits a comma-separated context value; cdk.json may also hold a JSON array.
func list(v any) []string {
	var parts []string
	switch t := v.(type) {
	case string:
		parts = strings.Split(t, ",")
	case []any:
		for _, e := range t {
			if s, ok := e.(string); ok {
				parts = append(parts, s)
			}
		}
	}
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
