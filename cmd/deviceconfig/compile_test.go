package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// probeSource includes the device app's config guards and prints every value, NUL-terminated, so the test can
// compare what the C compiler made of the generated literals with the values they were generated from.
const probeSource = `#include <stdio.h>
#include "app_config.h"
int main(void)
{
    fwrite(appConfigEndpoint, 1, sizeof(appConfigEndpoint), stdout);
    printf("%d", AWS_IOT_PORT);
    fputc(0, stdout);
    fwrite(appConfigTopicRoot, 1, sizeof(appConfigTopicRoot), stdout);
    fwrite(appConfigFleetGetUrl, 1, sizeof(appConfigFleetGetUrl), stdout);
    return 0;
}
`

// compileAndRun builds the probe against the header in dir with the host compiler, as strictly as the device
// build (C11, warnings as errors), and returns the values it prints.
func compileAndRun(t *testing.T, dir string) []string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Fatalf("no host C compiler (cc): install gcc ('make setup-device'): %v", err)
	}
	src := filepath.Join(t.TempDir(), "probe.c")
	if err := os.WriteFile(src, []byte(probeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(src), "probe")
	out, err := exec.Command(cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wno-overlength-strings",
		"-I", dir, "-I", filepath.Join(deviceDir, "src"), "-o", bin, src).CombinedOutput()
	if err != nil {
		t.Fatalf("the generated header does not compile with the device's guards: %v\n%s", err, out)
	}
	printed, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run the probe: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(printed), "\x00"), "\x00")
}

// The header generated from the sample outputs compiles against device/src/app_config.h and carries the values.
func TestGeneratedHeaderCompiles(t *testing.T) {
	r := runTool(t, testEnv(staticCreds("session-token/with+chars=")), "-outputs", sampleOutputs, "-port", "443")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	header := r.file(t, "device_config.h")
	got := compileAndRun(t, r.dir)
	want := []string{sampleEndpoint, "443", "devices", headerValue(t, header, "S3_FLEET_GET_URL")}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("compiled values\n%q\nwant\n%q", got, want)
	}
	for _, u := range got[3:] {
		if !strings.Contains(u, "%2F") || !strings.Contains(u, "&") {
			t.Errorf("URL lost its %% escapes or & separators: %s", u)
		}
	}
}

// C string escaping: quotes, backslashes, trigraph-looking runs, control and non-ASCII bytes survive the compiler.
func TestCStringEscapingRoundTrip(t *testing.T) {
	nasty := DeviceConfig{
		Endpoint:    `host"with\quote`,
		Port:        8883,
		TopicRoot:   "??=??/??'??(??)??!??<??>??-",
		FleetGetURL: "https://b.s3.amazonaws.com/k?a=%41%2F&b=\"x\"&c=\\n\\&tab=\t&nl=\n&hex=\x01Fe&é=ü&end?",
		FleetObject: "s3://b/k*/", // must not end the header's comment
		Source:      "test */ source",
		URLExpires:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "device_config.h"), []byte(RenderHeader(nasty)), 0o644); err != nil {
		t.Fatal(err)
	}
	got := compileAndRun(t, dir)
	want := []string{nasty.Endpoint, "8883", nasty.TopicRoot, nasty.FleetGetURL}
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("compiled values\n%q\nwant\n%q", got, want)
	}
}

func TestCString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      `"plain"`,
		`a"b`:        `"a\"b"`,
		`a\b`:        `"a\\b"`,
		"??=":        `"?\?="`,
		"?a?":        `"?a?"`,
		"\n":         `"\012"`,
		"\x01" + "1": `"\0011"`,
		"é":          `"\303\251"`,
		"%2F&x=1":    `"%2F&x=1"`,
	} {
		if got := CString(in); got != want {
			t.Errorf("CString(%q) = %s, want %s", in, got, want)
		}
	}
	if !bytes.Contains([]byte(RenderHeader(DeviceConfig{Source: "a */ b"})), []byte("a * / b")) {
		t.Errorf("a */ in a value would end the header comment")
	}
}
