package motoserver

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
)

// TestQuotaTableMatchesGo holds the emulator's quotas (testkit/moto/quotas.py DEFAULT_QUOTAS, read by the venv's
// python) to the product's table of AWS IoT's defaults (internal/iotquota): same operations, same rates. Otherwise
// the emulator would throttle the JITR function and fleetctl at other rates than the ones they pace themselves to.
func TestQuotaTableMatchesGo(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	python, err := pythonPath(root, "")
	if err != nil {
		t.Fatal(err)
	}
	const read = "import json, sys; sys.path.insert(0, sys.argv[1]); import quotas; print(json.dumps(quotas.DEFAULT_QUOTAS))"
	out, err := exec.Command(python, "-c", read, filepath.Join(root, "testkit", "moto")).Output()
	if err != nil {
		t.Fatalf("read quotas.DEFAULT_QUOTAS with %s: %v", python, err)
	}
	var py map[string]float64
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatalf("quotas.DEFAULT_QUOTAS is not a JSON object of rates (%v): %s", err, out)
	}
	goTable := iotquota.Defaults()
	apis := map[string]bool{}
	for api := range py {
		apis[api] = true
	}
	for api := range goTable {
		apis[api] = true
	}
	names := make([]string, 0, len(apis))
	for api := range apis {
		names = append(names, api)
	}
	sort.Strings(names)
	for _, api := range names {
		p, inPy := py[api]
		g, inGo := goTable[api]
		switch {
		case !inPy:
			t.Errorf("%s: %v per second in internal/iotquota, missing from testkit/moto/quotas.py DEFAULT_QUOTAS", api, g)
		case !inGo:
			t.Errorf("%s: %v per second in testkit/moto/quotas.py DEFAULT_QUOTAS, missing from internal/iotquota", api, p)
		case p != g:
			t.Errorf("%s: %v per second in testkit/moto/quotas.py DEFAULT_QUOTAS, %v in internal/iotquota (%s)", api, p, g, iotquota.Source)
		}
	}
	if !t.Failed() {
		t.Logf("%d operations agree", len(names))
	}
}
