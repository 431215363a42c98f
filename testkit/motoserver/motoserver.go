// Package motoserver starts and stops a moto server (the project's local AWS API) on a free loopback port, from
// the project venv, with AWS IoT certificate ids computed as in AWS (SHA-256 of the DER). Tests, the benchmarks
// and the local emulator share it.
package motoserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// Region and fake credentials the local AWS API is used with.
const (
	Region          = "us-east-1"
	AccessKeyID     = "testing"
	SecretAccessKey = "testing"
	AccountID       = "123456789012" // moto's default account
)

// Server is a running moto server: one moto process, or (Options.Split) one per service group behind one URL.
type Server struct {
	URL  string // http://127.0.0.1:PORT: every service (the router in front of the processes when split)
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
	// split: the processes by service group, and the router that serves URL
	groups map[string]*Server
	router *router
}

// Options tunes Start. Zero values pick defaults.
type Options struct {
	Python  string    // interpreter; default $MOTO_PYTHON or <repo>/.venv/bin/python
	Log     io.Writer // server output; default discarded
	Timeout time.Duration
	// Env is added to the server's environment, e.g. contract.EnvIoTQuotas (the AWS IoT quotas, see Quotas).
	Env []string
	// Split runs one moto process per service group (ServiceGroups) instead of one for every service: moto serves
	// a process's requests one at a time under Python's interpreter lock, so a busy SQS or DynamoDB would make the
	// IoT registry wait and the other way round. URL still serves every service (a router in front); ServiceURL
	// and Env point each service at its process directly.
	Split bool
}

// Start launches moto and waits until it answers.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Split {
		return startSplit(ctx, opts)
	}
	return startProcess(ctx, opts)
}

// startProcess launches one moto process.
func startProcess(ctx context.Context, opts Options) (*Server, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	python, err := pythonPath(root, opts.Python)
	if err != nil {
		return nil, err
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, filepath.Join(root, "testkit", "moto", "launcher.py"), strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), opts.Env...)
	if opts.Log != nil {
		cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto: %w", err)
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, opts.Timeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// pythonPath is the interpreter moto runs in: python, else $MOTO_PYTHON, else the project venv's.
func pythonPath(root, python string) (string, error) {
	if python == "" {
		python = os.Getenv("MOTO_PYTHON")
	}
	if python == "" {
		python = filepath.Join(root, ".venv", "bin", "python")
	}
	if _, err := os.Stat(python); err != nil {
		return "", fmt.Errorf("moto needs the project venv (%s missing): run 'make setup'", python)
	}
	return python, nil
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("moto exited during start-up (run 'make setup' to repair the venv)")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(s.URL + "/moto-api/data.json")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("moto did not answer on %s within %s", s.URL, timeout)
}

// Reset wipes all state held by the server.
func (s *Server) Reset() error {
	resp, err := http.Post(s.URL+"/moto-api/reset", "application/json", strings.NewReader(""))
	if err != nil {
		return fmt.Errorf("reset moto: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset moto: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Env returns the environment variables that point an AWS SDK at this server (each service at its own process
// when split, through the SDK's per-service endpoint variables).
func (s *Server) Env() []string {
	var direct []string
	if s.groups != nil {
		for _, v := range serviceEndpointVars {
			direct = append(direct, v.env+"="+s.ServiceURL(v.service))
		}
	}
	return append(direct,
		"AWS_ENDPOINT_URL="+s.URL,
		"AWS_REGION="+Region,
		"AWS_DEFAULT_REGION="+Region,
		"AWS_ACCESS_KEY_ID="+AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+SecretAccessKey,
		"AWS_SESSION_TOKEN=",
	)
}

// Stop ends the server and everything it started. It is safe to call more than once.
func (s *Server) Stop() {
	s.once.Do(func() {
		if s.groups != nil {
			s.stopSplit()
			return
		}
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// RepoRoot finds the project root: the nearest directory upwards holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("project root (go.mod) not found above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on the loopback interface that nothing listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RunTests is a TestMain body for packages whose tests share one moto server: it starts the server, stores it
// in *server, runs the tests and stops it. When moto cannot start, the run fails (never skips) and says how to
// repair it. extra runs after the tests, before the server stops (e.g. to print a benchmark table).
//
// It is the body of the scenario suites (the JITR function's logic, which inject their own throttling and
// make bursts of calls whose outcome must not depend on the machine's speed): the server's AWS IoT quotas are
// lifted (QuotasOff). Start, the emulator and RunTestsWith(Options{}, ...) enforce them, as AWS does.
func RunTests(m interface{ Run() int }, server **Server, extra ...func()) int {
	return RunTestsWith(Options{Env: []string{QuotasOff}}, m, server, extra...)
}

// QuotasOff in Options.Env lifts the server's AWS IoT quotas (the calls are still counted).
const QuotasOff = contract.EnvIoTQuotasOff + "=1"

// RunTestsWith is RunTests with the server started with opts.
func RunTestsWith(opts Options, m interface{ Run() int }, server **Server, extra ...func()) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: these tests need the moto server, which did not start: %v\n"+
			"Run 'make setup' (it creates .venv with moto), then run the tests again.\n", err)
		return 1
	}
	defer s.Stop()
	*server = s
	code := m.Run()
	for _, f := range extra {
		f()
	}
	return code
}
