package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
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
	// Staged before the SDK is looked for, so the manifest the image would pack is checked on any machine.
	stage := filepath.Join(b.ConfigDir, ImageSourceDir)
	if err := StageImageSource(b.DeviceDir, filepath.Join(b.ConfigDir, "app_manifest.json"), stage); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "staged the image sources in %s (app_manifest.json: the generated one, no @…@ left)\n", stage)
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
		cmd.Dir = stage
		cmd.Env = environ
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("cmake %v in %s: %w (the output above says why)", args, stage, err)
		}
	}
	// CMakePresets.json: binaryDir is ${sourceDir}/out/${presetName}.
	outDir := filepath.Join(stage, "out", b.Preset)
	packages, _ := filepath.Glob(filepath.Join(outDir, "*.imagepackage"))
	if len(packages) == 0 {
		return fmt.Errorf("the build finished but %s holds no .imagepackage: check azsphere_target_add_image_package in device/CMakeLists.txt", outDir)
	}
	sort.Slice(packages, func(i, j int) bool { return modTime(packages[i]) > modTime(packages[j]) })
	found, err := CheckImagePackage(packages[0])
	if err != nil {
		return err
	}
	if found {
		fmt.Fprintf(stdout, "image package: %s (its app_manifest.json has no @…@ left)\n", packages[0])
	} else {
		fmt.Fprintf(stdout, "image package: %s (no placeholder in it; its manifest is not stored as plain text, the staged one was checked)\n", packages[0])
	}
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

// ImageSourceDir is the folder, under the config folder, the image is built from.
const ImageSourceDir = "image-src"

// StageImageSource copies the device app's sources (deviceDir without its build trees and without the manifest
// template) into dst and writes the generated manifest there as app_manifest.json. The SDK's image packaging reads
// app_manifest.json from the CMake source folder (azsphere_target_add_image_package has no manifest argument), so
// an image configured from dst can only pack the generated manifest; device/CMakeLists.txt refuses to package a
// manifest with a placeholder left. dst is emptied first.
func StageImageSource(deviceDir, generatedManifest, dst string) error {
	manifest, err := os.ReadFile(generatedManifest)
	if err != nil {
		return fmt.Errorf("read the generated manifest: %w (run 'make device-config')", err)
	}
	if err := CheckNoPlaceholders(generatedManifest, manifest); err != nil {
		return err
	}
	absDst, err := filepath.Abs(dst)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("stage the image sources: %w", err)
	}
	err = filepath.WalkDir(deviceDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(deviceDir, path)
		if err != nil {
			return err
		}
		if abs, _ := filepath.Abs(path); abs == absDst {
			return filepath.SkipDir
		}
		top := strings.Split(filepath.ToSlash(rel), "/")[0]
		switch {
		case d.IsDir() && (top == "build" || top == "out" || d.Name() == ".git"):
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case rel == "app_manifest.json" || !d.Type().IsRegular():
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		return fmt.Errorf("stage the image sources from %s: %w", deviceDir, err)
	}
	staged := filepath.Join(dst, "app_manifest.json")
	if err := os.WriteFile(staged, manifest, 0o644); err != nil {
		return fmt.Errorf("stage the image sources: %w", err)
	}
	data, err := os.ReadFile(staged)
	if err != nil {
		return err
	}
	return CheckNoPlaceholders(staged, data)
}

// quotedPlaceholder is an @NAME@ marker as a JSON string holds it, as the template's are ("@AWS_IOT_ENDPOINT@").
var quotedPlaceholder = regexp.MustCompile(`"@[A-Z0-9_]+@"`)

// CheckNoPlaceholders fails when a manifest (or an image package holding one) still has an @NAME@ marker: a
// device with "@AWS_IOT_ENDPOINT@" in AllowedConnections could not connect.
func CheckNoPlaceholders(what string, data []byte) error {
	if p := quotedPlaceholder.Find(data); p != nil {
		return fmt.Errorf("%s still holds the placeholder %s: the manifest template was packed instead of the generated "+
			"manifest; build the image with 'make device-image'", what, p)
	}
	return nil
}

// CheckImagePackage reads an image package and fails when it holds a manifest placeholder. found tells whether
// the app manifest was in it as plain text (its ComponentId and Capabilities), so the check saw it.
func CheckImagePackage(path string) (found bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read the image package: %w", err)
	}
	if err := CheckNoPlaceholders(path, data); err != nil {
		return false, err
	}
	return strings.Contains(string(data), `"ComponentId"`) && strings.Contains(string(data), `"AllowedConnections"`), nil
}
