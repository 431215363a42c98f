package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeEnv is an environment for running the make targets offline: the Go caches of this machine, no module
// proxy, no AWS configuration but the given credentials.
func makeEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	env := isolatedAWSEnv(t)
	for _, name := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOTOOLCHAIN"} {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		env = append(env, name+"="+strings.TrimSpace(string(out)))
	}
	return append(append(env, "GOPROXY=off", "GOFLAGS=-mod=mod"), extra...)
}

func runMake(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-C", filepath.Join("..", ".."), "--no-print-directory"}, args...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatalf("make: %v", err)
	}
	return 0, stdout.String(), stderr.String()
}

// `make device-config OUTPUTS=<sample>` works offline and writes where DEVICE_CONFIG_DIR says.
func TestMakeDeviceConfigOffline(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runMake(t, makeEnv(t, "AWS_ACCESS_KEY_ID="+testAccessKey, "AWS_SECRET_ACCESS_KEY="+testSecretKey),
		"device-config", "OUTPUTS=cmd/deviceconfig/testdata/cdk-outputs.json", "DEVICE_CONFIG_DIR="+out, "EXPIRES=2h")
	if code != 0 {
		t.Fatalf("make device-config: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "wrote "+filepath.Join(out, "device_config.h")) {
		t.Errorf("output:\n%s", stdout)
	}
	header, err := os.ReadFile(filepath.Join(out, "device_config.h"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(header), "X-Amz-Expires=7200&") {
		t.Errorf("EXPIRES=2h did not reach the URLs:\n%s", header)
	}
}

// `make device-image` without the SDK: a clear error and a failing exit, after the config was written.
func TestMakeDeviceImageWithoutSDK(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runMake(t, makeEnv(t, "AWS_ACCESS_KEY_ID="+testAccessKey, "AWS_SECRET_ACCESS_KEY="+testSecretKey, "AzureSphereDefaultSDKDir="+t.TempDir()),
		"device-image", "OUTPUTS=cmd/deviceconfig/testdata/cdk-outputs.json", "DEVICE_CONFIG_DIR="+out)
	if code == 0 {
		t.Fatalf("make device-image succeeded without the SDK:\n%s", stdout)
	}
	for _, want := range []string{"is not an Azure Sphere SDK", "AzureSphereDefaultSDKDir", "https://aka.ms/AzureSphereSDKDownload/Linux"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("message does not contain %q:\n%s", want, stderr)
		}
	}
	for _, name := range []string{"device_config.h", "app_manifest.json"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("config not written: %v", err)
		}
	}
}
