package localaws

import (
	"context"
	"fmt"
	"os"

	"github.com/sphere-jitr/sphere-jitr/emulator/lambdaruntime"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// SetupOptions configures Prepare.
type SetupOptions struct {
	TemplatePath string             // the template `cdk synth` wrote
	Root         string             // the checkout the functions are built from; default: the one holding the working directory
	Moto         motoserver.Options // how moto runs (its log, its environment: e.g. the AWS IoT quota scale)
}

// Setup is the part of the emulator's start-up that outlives one emulator: the template, the functions of the
// checkout built for the host with aws-lambda-rie, and moto running. The start-up is always the same sequence —
// Prepare (build the functions and RIE, start moto), then Start (deploy, start the parts) — whether the command
// runs one emulator or a test package runs one per test on the same Setup.
type Setup struct {
	Template *stacktemplate.Template
	Code     lambdaruntime.Functions
	Moto     *motoserver.Server
	dir      string
}

// Prepare reads the template, builds the functions and aws-lambda-rie from the checkout, and starts moto.
func Prepare(ctx context.Context, o SetupOptions) (s *Setup, err error) {
	s = &Setup{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Template, err = stacktemplate.LoadTemplate(o.TemplatePath); err != nil {
		return nil, err
	}
	if o.Root == "" {
		if o.Root, err = motoserver.RepoRoot(); err != nil {
			return nil, err
		}
	}
	if s.dir, err = os.MkdirTemp("", "localaws-bootstrap-"); err != nil {
		return nil, err
	}
	if s.Code, err = lambdaruntime.BuildFunctions(ctx, o.Root, s.dir); err != nil {
		return nil, err
	}
	// One moto process per service group: IoT's registry, SQS and DynamoDB each on a core of their own when the
	// machine has them (a storm keeps all three busy at once).
	o.Moto.Split = true
	if s.Moto, err = motoserver.Start(ctx, o.Moto); err != nil {
		return nil, err
	}
	return s, nil
}

// Start deploys the template (opts.Template, default the Setup's) into a clean moto — its state and its IAM
// counters reset — and starts the emulator's parts on it.
func (s *Setup) Start(ctx context.Context, opts Options) (*Emulator, error) {
	if opts.Template == nil {
		opts.Template = s.Template
	}
	if err := s.Moto.Reset(); err != nil {
		return nil, err
	}
	if err := s.Moto.ResetIAMStats(ctx); err != nil {
		return nil, fmt.Errorf("reset IAM counters: %w", err)
	}
	return start(ctx, s.Moto, s.Code, opts)
}

// Close stops moto and removes the built functions.
func (s *Setup) Close() {
	if s.Moto != nil {
		s.Moto.Stop()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
