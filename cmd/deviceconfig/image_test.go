package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBuildTools puts a fake cmake and ninja first on PATH. The fake cmake logs its arguments, its working folder
// and the SDK folder it was given, and the build step writes an image package where the ARM presets put it.
func fakeBuildTools(t *testing.T) (log string) {
	t.Helper()
	bin := t.TempDir()
	log = filepath.Join(t.TempDir(), "cmake.log")
	cmake := fmt.Sprintf(`#!/bin/sh
echo "cwd=$(pwd) sdk=$AzureSphereDefaultSDKDir args=$*" >> '%s'
if [ "$1" = "--build" ]; then
	mkdir -p "out/$3" && echo image > "out/$3/sphere_jitr.imagepackage"
fi
`, log)
	for name, script := range map[string]string{"cmake": cmake, "ninja": "#!/bin/sh\nexit 0\n"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

func fakeSDK(t *testing.T) string {
	t.Helper()
	sdk := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sdk, "CMakeFiles"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sdk, SDKToolchainFile), []byte("# toolchain\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return sdk
}

func TestBuildImage(t *testing.T) {
	log := fakeBuildTools(t)
	sdk := fakeSDK(t)
	for name, b := range map[string]ImageBuild{
		"AzureSphereDefaultSDKDir set":    {SDKDir: sdk, DefaultSDKDir: filepath.Join(t.TempDir(), "none")},
		"SDK found in the default folder": {DefaultSDKDir: sdk},
	} {
		t.Run(name, func(t *testing.T) {
			os.Remove(log)
			b.DeviceDir, b.ConfigDir, b.Preset = t.TempDir(), t.TempDir(), "ARM-Release"
			var stdout, stderr bytes.Buffer
			if err := BuildImage(context.Background(), b, &stdout, &stderr); err != nil {
				t.Fatalf("BuildImage: %v", err)
			}
			calls, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("cwd=%s sdk=%s args=--preset ARM-Release -DDEVICE_CONFIG_DIR=%s\ncwd=%s sdk=%s args=--build --preset ARM-Release\n",
				b.DeviceDir, sdk, b.ConfigDir, b.DeviceDir, sdk)
			if string(calls) != want {
				t.Errorf("cmake calls:\n%s\nwant:\n%s", calls, want)
			}
			pkg := filepath.Join(b.DeviceDir, "out", "ARM-Release", "sphere_jitr.imagepackage")
			for _, line := range []string{"image package: " + pkg, "az sphere device sideload deploy --image-package " + pkg} {
				if !strings.Contains(stdout.String(), line) {
					t.Errorf("output lacks %q:\n%s", line, stdout.String())
				}
			}
		})
	}
}

func TestBuildImageFailures(t *testing.T) {
	sdk := fakeSDK(t)
	t.Run("cmake fails", func(t *testing.T) {
		bin := t.TempDir()
		for name, script := range map[string]string{"cmake": "#!/bin/sh\necho 'CMake Error: toolchain' >&2\nexit 1\n", "ninja": "#!/bin/sh\n"} {
			if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("PATH", bin)
		var stdout, stderr bytes.Buffer
		err := BuildImage(context.Background(), ImageBuild{DeviceDir: t.TempDir(), ConfigDir: t.TempDir(), Preset: "ARM-Release", SDKDir: sdk}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "cmake [--preset ARM-Release") || !strings.Contains(stderr.String(), "CMake Error") {
			t.Errorf("err = %v, stderr %q", err, stderr.String())
		}
	})
	t.Run("no cmake", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		err := BuildImage(context.Background(), ImageBuild{DeviceDir: t.TempDir(), ConfigDir: t.TempDir(), Preset: "ARM-Release", SDKDir: sdk}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "make setup-device") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("build leaves no image package", func(t *testing.T) {
		bin := t.TempDir()
		for _, name := range []string{"cmake", "ninja"} {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("PATH", bin)
		err := BuildImage(context.Background(), ImageBuild{DeviceDir: t.TempDir(), ConfigDir: t.TempDir(), Preset: "ARM-Release", SDKDir: sdk}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "no .imagepackage") {
			t.Errorf("err = %v", err)
		}
	})
}
