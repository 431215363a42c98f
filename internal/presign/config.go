package presign

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// Limits of what the stack may configure: S3 takes at most 5 GiB in one PUT; a URL signed with the function's
// temporary credentials dies with them anyway, and a device asks for a new one when it needs it, so an hour is plenty.
const (
	MaxPutBytesLimit = 5 << 30
	MinExpiry        = time.Minute
	MaxExpiry        = time.Hour
)

// Config is what the handler needs to know about the stack that deployed it.
type Config struct {
	Bucket      string        // bucket of the devices' objects
	TopicRoot   string        // first level of each device's own topic tree
	MaxPutBytes int64         // largest PUT a URL is signed for
	Expiry      time.Duration // lifetime of a URL
	// ProvisionedBy is the stack name, the dimension of the metrics.
	ProvisionedBy string
	// MetricsNamespace is the CloudWatch namespace of the metrics; empty means contract.MetricsNamespace.
	MetricsNamespace string
}

// ConfigFromEnv reads the configuration from the Lambda environment through getenv (os.Getenv in production).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var problems []error
	required := func(name string) string {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			problems = append(problems, errors.New(name+" is empty"))
		}
		return v
	}
	cfg := Config{
		Bucket:           required(contract.EnvBucketName),
		TopicRoot:        required(contract.EnvDeviceTopicRoot),
		ProvisionedBy:    required(contract.EnvProvisionedBy),
		MetricsNamespace: contract.MetricsNamespace,
	}
	if s := required(contract.EnvPresignMaxBytes); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > MaxPutBytesLimit {
			problems = append(problems, fmt.Errorf("%s = %q: want a byte count from 1 to %d", contract.EnvPresignMaxBytes, s, int64(MaxPutBytesLimit)))
		}
		cfg.MaxPutBytes = n
	}
	if s := required(contract.EnvPresignExpirySec); s != "" {
		n, err := strconv.Atoi(s)
		d := time.Duration(n) * time.Second
		if err != nil || d < MinExpiry || d > MaxExpiry {
			problems = append(problems, fmt.Errorf("%s = %q: want seconds from %d to %d", contract.EnvPresignExpirySec, s, int(MinExpiry.Seconds()), int(MaxExpiry.Seconds())))
		}
		cfg.Expiry = d
	}
	if strings.ContainsAny(cfg.TopicRoot, "/+#") {
		problems = append(problems, fmt.Errorf("%s = %q: want one topic level", contract.EnvDeviceTopicRoot, cfg.TopicRoot))
	}
	if len(problems) > 0 {
		return Config{}, fmt.Errorf("%w\n(the S3UrlService construct sets these variables: redeploy the stack with 'make deploy')", errors.Join(problems...))
	}
	return cfg, nil
}
