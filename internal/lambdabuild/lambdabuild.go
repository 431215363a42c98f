// Package lambdabuild builds the project's Go Lambda functions as the `bootstrap` executable the provided.al2023
// runtime starts. The stack's asset bundling (linux/arm64), the local emulator and the benchmarks (this machine's
// architecture) all build through it, so they run the same program built the same way.
package lambdabuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build compiles the main package pkg (relative to moduleRoot, e.g. ./lambda/jitr) for linux/goarch into
// outDir/bootstrap and returns that path: static (no cgo), reproducible paths (-trimpath), without the RPC
// entry point the provided runtimes do not use (lambda.norpc), stripped.
func Build(ctx context.Context, moduleRoot, pkg, goarch, outDir string) (string, error) {
	out := filepath.Join(outDir, "bootstrap")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s for linux/%s: %w\n%s", pkg, goarch, err, msg)
	}
	return out, nil
}
