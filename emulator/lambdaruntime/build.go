package lambdaruntime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/sphere-jitr/sphere-jitr/emulator/deploy"
	"github.com/sphere-jitr/sphere-jitr/internal/lambdabuild"
)

// rieTool is the AWS Lambda Runtime Interface Emulator the emulator runs the functions under; go.mod pins its
// version with a tool directive.
const rieTool = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

// Functions are the executables the emulator runs the template's functions with, built from one checkout.
type Functions struct {
	Bootstrap, Presign, AccountSettings, Teardown, RIE string
}

// Code returns the executable of a function of the given kind ("" when none was built).
func (f Functions) Code(kind deploy.Kind) string {
	switch kind {
	case deploy.KindJITR:
		return f.Bootstrap
	case deploy.KindPresign:
		return f.Presign
	case deploy.KindAccountSettings:
		return f.AccountSettings
	case deploy.KindTeardown:
		return f.Teardown
	}
	return ""
}

// BuildFunctions builds the JITR, presign, account-settings and teardown functions into dir and aws-lambda-rie (see findRIE) from the repository
// at root, every time (the Go build cache makes it cheap), so the emulator runs exactly the code of the checkout.
func BuildFunctions(ctx context.Context, root, dir string) (Functions, error) {
	var f Functions
	var err error
	if f.RIE, err = findRIE(ctx, root); err != nil {
		return f, err
	}
	if f.Bootstrap, err = buildBootstrap(ctx, root, dir); err != nil {
		return f, err
	}
	if f.Presign, err = buildPresignBootstrap(ctx, root, dir); err != nil {
		return f, err
	}
	if f.AccountSettings, err = lambdabuild.Build(ctx, root, "./lambda/accountsettings", runtime.GOARCH, filepath.Join(dir, "accountsettings")); err != nil {
		return f, err
	}
	f.Teardown, err = lambdabuild.Build(ctx, root, "./lambda/teardown", runtime.GOARCH, filepath.Join(dir, "teardown"))
	return f, err
}

// buildBootstrap compiles the JITR function (./lambda/jitr of the repository at root) for the host, as the
// file the Lambda runtime starts, and returns its path.
func buildBootstrap(ctx context.Context, root, outDir string) (string, error) {
	return lambdabuild.Build(ctx, root, "./lambda/jitr", runtime.GOARCH, outDir)
}

// buildPresignBootstrap compiles the presign function (./lambda/presign) for the host into outDir/presign.
func buildPresignBootstrap(ctx context.Context, root, outDir string) (string, error) {
	return lambdabuild.Build(ctx, root, "./lambda/presign", runtime.GOARCH, filepath.Join(outDir, "presign"))
}

// findRIE builds the aws-lambda-rie command into build/tools/bin of the repository at root, at the version go.mod
// pins (its tool directive), and returns its path. The Go build cache makes this cheap after the first time.
func findRIE(ctx context.Context, root string) (string, error) {
	p := filepath.Join(root, "build", "tools", "bin", "aws-lambda-rie")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", p, rieTool)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build aws-lambda-rie: %w\n%s", err, msg)
	}
	return p, nil
}
