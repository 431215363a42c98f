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
	# As the SDK packs: the approot with the source folder's app_manifest.json.
	mkdir -p "out/$3" && { printf 'ELF'; cat app_manifest.json; } > "out/$3/sphere_jitr.imagepackage"
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

// imageDirs returns a device folder (sources, the manifest template, build trees) and a config folder holding a
// generated manifest.
func imageDirs(t *testing.T) (deviceDir, configDir string) {
	t.Helper()
	deviceDir, configDir = t.TempDir(), t.TempDir()
	files := map[string]string{
		"CMakeLists.txt":          "project(sphere_jitr C)\n",
		"src/main.c":              "int main(void) { return 0; }\n",
		"certs/AmazonRootCA1.pem": "pem\n",
		"app_manifest.json":       `{"ComponentId":"x","Capabilities":{"AllowedConnections":["@AWS_IOT_ENDPOINT@"]}}`,
		"build/host/junk.o":       "object\n",
		"out/ARM-Release/old":     "old\n",
	}
	for name, text := range files {
		path := filepath.Join(deviceDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(configDir, "app_manifest.json"), []byte(generatedManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return deviceDir, configDir
}

const generatedManifest = `{"ComponentId":"x","Capabilities":{"AllowedConnections":["a-ats.iot.eu-west-1.amazonaws.com"]},"MallocVersion":2}`

// The image is built from a staged copy of device/ whose app_manifest.json is the generated one: the sources come
// along, the template and the build trees do not.
func TestStageImageSource(t *testing.T) {
	deviceDir, configDir := imageDirs(t)
	stage := filepath.Join(configDir, ImageSourceDir)
	if err := StageImageSource(deviceDir, filepath.Join(configDir, "app_manifest.json"), stage); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"app_manifest.json": generatedManifest, "src/main.c": "int main(void) { return 0; }\n",
		"CMakeLists.txt": "project(sphere_jitr C)\n", "certs/AmazonRootCA1.pem": "pem\n"} {
		if got, err := os.ReadFile(filepath.Join(stage, name)); err != nil || string(got) != want {
			t.Errorf("staged %s = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"build", "out"} {
		if _, err := os.Stat(filepath.Join(stage, name)); !os.IsNotExist(err) {
			t.Errorf("staged %s: %v, want it left out", name, err)
		}
	}
	// Staging again replaces what an earlier staging left.
	if err := os.WriteFile(filepath.Join(stage, "stale.c"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := StageImageSource(deviceDir, filepath.Join(configDir, "app_manifest.json"), stage); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(stage, "stale.c")); !os.IsNotExist(err) {
		t.Errorf("stale.c survived a new staging: %v", err)
	}
	// A generated manifest with a placeholder left is refused before anything is staged.
	if err := StageImageSource(deviceDir, filepath.Join(deviceDir, "app_manifest.json"), stage); err == nil ||
		!strings.Contains(err.Error(), `placeholder "@AWS_IOT_ENDPOINT@"`) {
		t.Errorf("template as the generated manifest: err = %v", err)
	}
}

func TestCheckImagePackage(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct {
		data      string
		found     bool
		wantError string
	}{
		"generated manifest":     {"ELF\x00" + generatedManifest + "\x00bin/app", true, ""},
		"template packed":        {"ELF\x00" + `{"ComponentId":"x","Capabilities":{"AllowedConnections":["@AWS_IOT_ENDPOINT@"]}}`, false, `placeholder "@AWS_IOT_ENDPOINT@"`},
		"tenant placeholder":     {`"DeviceAuthentication": "@AZURE_SPHERE_TENANT_ID@"`, false, "@AZURE_SPHERE_TENANT_ID@"},
		"manifest not plaintext": {"ELF\x00\x01\x02memcpy@GLIBC_2.4", false, ""},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".imagepackage")
			if err := os.WriteFile(path, []byte(c.data), 0o644); err != nil {
				t.Fatal(err)
			}
			found, err := CheckImagePackage(path)
			if c.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantError) || !strings.Contains(err.Error(), "make device-image") {
					t.Errorf("err = %v, want one naming %s", err, c.wantError)
				}
				return
			}
			if err != nil || found != c.found {
				t.Errorf("found %v, err %v; want %v, nil", found, err, c.found)
			}
		})
	}
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
			b.DeviceDir, b.ConfigDir = imageDirs(t)
			b.Preset = "ARM-Release"
			stage := filepath.Join(b.ConfigDir, ImageSourceDir)
			var stdout, stderr bytes.Buffer
			if err := BuildImage(context.Background(), b, &stdout, &stderr); err != nil {
				t.Fatalf("BuildImage: %v", err)
			}
			calls, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("cwd=%s sdk=%s args=--preset ARM-Release -DDEVICE_CONFIG_DIR=%s\ncwd=%s sdk=%s args=--build --preset ARM-Release\n",
				stage, sdk, b.ConfigDir, stage, sdk)
			if string(calls) != want {
				t.Errorf("cmake calls:\n%s\nwant:\n%s", calls, want)
			}
			pkg := filepath.Join(stage, "out", "ARM-Release", "sphere_jitr.imagepackage")
			for _, line := range []string{"image package: " + pkg + " (its app_manifest.json has no @…@ left)",
				"az sphere device sideload deploy --image-package " + pkg} {
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
		err := BuildImage(context.Background(), imageBuild(t, sdk), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "cmake [--preset ARM-Release") || !strings.Contains(stderr.String(), "CMake Error") {
			t.Errorf("err = %v, stderr %q", err, stderr.String())
		}
	})
	t.Run("no cmake", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		err := BuildImage(context.Background(), imageBuild(t, sdk), &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "make setup-device") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("package holds the template", func(t *testing.T) {
		bin := t.TempDir()
		packTemplate := `#!/bin/sh
if [ "$1" = "--build" ]; then
	mkdir -p "out/$3" && printf '"AllowedConnections": [ "@AWS_IOT_ENDPOINT@" ]' > "out/$3/sphere_jitr.imagepackage"
fi
`
		for name, script := range map[string]string{"cmake": packTemplate, "ninja": "#!/bin/sh\n"} {
			if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		err := BuildImage(context.Background(), imageBuild(t, sdk), &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), `still holds the placeholder "@AWS_IOT_ENDPOINT@"`) {
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
		err := BuildImage(context.Background(), imageBuild(t, sdk), &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "no .imagepackage") {
			t.Errorf("err = %v", err)
		}
	})
}

func imageBuild(t *testing.T, sdk string) ImageBuild {
	deviceDir, configDir := imageDirs(t)
	return ImageBuild{DeviceDir: deviceDir, ConfigDir: configDir, Preset: "ARM-Release", SDKDir: sdk}
}
