package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSynthRefusesBadContext runs the app the way the CDK CLI does (context in CDK_CONTEXT_JSON) and checks that a
// bad input stops the synth with a message naming the key and the fix, before any stack is built.
func TestSynthRefusesBadContext(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	if out, err := exec.Command("go", "build", "-o", app, ".").CombinedOutput(); err != nil {
		t.Fatalf("build app: %v\n%s", err, out)
	}
	tests := []struct {
		name string
		ctx  map[string]any
		want []string
	}{
		{"nothing given", map[string]any{}, []string{`context "tenantCaCerts": is not set`, "make tenant-ca", `context "tenantId": is not set`}},
		{"missing CA file", map[string]any{"tenantCaCerts": filepath.Join(dir, "nope.cer"), "certificateMode": "SNI_ONLY", "tenantId": "01234567-89ab-cdef-0123-456789abcdef"}, []string{`context "tenantCaCerts": cannot read`, "Fix: run 'make tenant-ca'"}},
		{"tenant not a GUID", map[string]any{"tenantId": "contoso"}, []string{`context "tenantId": "contoso" is not a GUID`, "az sphere catalog show"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctxJSON, _ := json.Marshal(tt.ctx)
			cmd := exec.Command(app)
			cmd.Env = append(os.Environ(), "CDK_CONTEXT_JSON="+string(ctxJSON), "CDK_OUTDIR="+filepath.Join(dir, "out"))
			out, err := cmd.CombinedOutput()
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
