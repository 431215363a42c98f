package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
)

// Where the Azure Sphere SDK is found.
const (
	SDKDirEnv        = "AzureSphereDefaultSDKDir"
	DefaultSDKDir    = "/opt/azurespheresdk" // the Linux SDK installer's folder
	SDKToolchainFile = "CMakeFiles/AzureSphereToolchain.cmake"
	SDKInstallPage   = "https://aka.ms/AzureSphereSDKDownload/Linux"
)

// ImageBuild is one build of the image package.
type ImageBuild struct {
	DeviceDir     string // CMake source folder (device/)
	ConfigDir     string // generated device_config.h and app_manifest.json
	Preset        string // ARM-Release
	SDKDir        string // $AzureSphereDefaultSDKDir, may be empty
	DefaultSDKDir string // used when SDKDir is empty
}

// BuildImage configures and builds the preset with the Azure Sphere SDK and prints the image package and the
// command that sideloads it. It checks the SDK first, because CMake's own error for a missing toolchain file
// does not say what to install.
func BuildImage(ctx context.Context, b ImageBuild, stdout, stderr io.Writer) error {
	sdk, err := findSDK(b.SDKDir, b.DefaultSDKDir, b.ConfigDir)
	if err != nil {
		return err
	}
	cmake, err := exec.LookPath("cmake")
	if err != nil {
		return errors.New("cmake is not installed: run 'make setup-device' (it installs cmake and ninja)")
	}
	if _, err := exec.LookPath("ninja"); err != nil {
		return errors.New("ninja is not installed: run 'make setup-device' (it installs cmake and ninja)")
	}
	configDir, err := filepath.Abs(b.ConfigDir)
	if err != nil {
		return err
	}
	environ := append(os.Environ(), SDKDirEnv+"="+sdk)
	steps := [][]string{
		{"--preset", b.Preset, "-DDEVICE_CONFIG_DIR=" + configDir},
		{"--build", "--preset", b.Preset},
	}
	for _, args := range steps {
		cmd := exec.CommandContext(ctx, cmake, args...)
		cmd.Dir = b.DeviceDir
		cmd.Env = environ
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("cmake %v in %s: %w (the output above says why)", args, b.DeviceDir, err)
		}
	}
	// CMakePresets.json: binaryDir is ${sourceDir}/out/${presetName}.
	outDir := filepath.Join(b.DeviceDir, "out", b.Preset)
	packages, _ := filepath.Glob(filepath.Join(outDir, "*.imagepackage"))
	if len(packages) == 0 {
		return fmt.Errorf("the build finished but %s holds no .imagepackage: check azsphere_target_add_image_package in device/CMakeLists.txt", outDir)
	}
	sort.Slice(packages, func(i, j int) bool { return modTime(packages[i]) > modTime(packages[j]) })
	fmt.Fprintf(stdout, "image package: %s\n", packages[0])
	fmt.Fprintf(stdout, "sideload it onto the attached device (development mode: az sphere device enable-development):\n")
	fmt.Fprintf(stdout, "  az sphere device sideload deploy --image-package %s\n", packages[0])
	fmt.Fprintf(stdout, "  (legacy CLI: azsphere device sideload deploy --image-package %s)\n", packages[0])
	return nil
}

// findSDK returns the SDK folder holding the CMake toolchain file, or an error that says how to install it.
func findSDK(dir, defaultDir, configDir string) (string, error) {
	done := fmt.Sprintf("The device config in %s is written; after installing the SDK run 'make device-image' again.", configDir)
	if dir == "" {
		if fileExists(filepath.Join(defaultDir, SDKToolchainFile)) {
			return defaultDir, nil
		}
		return "", fmt.Errorf("the Azure Sphere SDK is not installed: %s is not set and %s has no %s. "+
			"Install the Azure Sphere SDK for Linux (%s) and set %s to its folder (export %s=%s). %s",
			SDKDirEnv, defaultDir, SDKToolchainFile, SDKInstallPage, SDKDirEnv, SDKDirEnv, DefaultSDKDir, done)
	}
	if !fileExists(filepath.Join(dir, SDKToolchainFile)) {
		return "", fmt.Errorf("%s=%s is not an Azure Sphere SDK: %s is missing. "+
			"Install the Azure Sphere SDK for Linux (%s) and point %s at its folder (default %s). %s",
			SDKDirEnv, dir, filepath.Join(dir, SDKToolchainFile), SDKInstallPage, SDKDirEnv, DefaultSDKDir, done)
	}
	return dir, nil
}

func fileExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}

func modTime(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.ModTime().UnixNano()
}
