package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sphere-jitr/sphere-jitr/internal/config"
)

// The files `make tenant-ca` writes (cmd/tenantca), used when neither the command line nor cdk.json names any.
var (
	defaultTenantCA     = filepath.Join("build", "tenant-ca", "tenant-ca.cer")
	defaultVerification = filepath.Join("build", "tenant-ca", "verification.cer")
)

// caInput is where the deploy will take the tenant CA from: the context keys tenantCaCerts, verificationCerts and
// certificateMode, resolved as the CDK CLI resolves them (the command line's -c over cdk.json's context).
type caInput struct {
	values map[string]any
	source string
}

// resolveCAInput reads the three keys from cdkArgs (the CDK_ARGS of make deploy: "-c key=value" or
// "--context key=value") over the context of cdkJSON; when neither names a tenant CA, the files of `make tenant-ca`.
func resolveCAInput(cdkArgs, cdkJSON string) (caInput, error) {
	keys := []string{config.KeyTenantCACerts, config.KeyVerificationCerts, config.KeyCertificateMode}
	in := caInput{values: map[string]any{}}
	var sources []string
	if data, err := os.ReadFile(cdkJSON); err == nil {
		var doc struct {
			Context map[string]any `json:"context"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return in, fmt.Errorf("read %s: %w", cdkJSON, err)
		}
		for _, k := range keys {
			if v, ok := doc.Context[k]; ok {
				in.values[k] = v
				sources = append(sources, cdkJSON)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return in, fmt.Errorf("read %s: %w", cdkJSON, err)
	}
	fields := strings.Fields(cdkArgs)
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		var kv string
		switch {
		case (f == "-c" || f == "--context") && i+1 < len(fields):
			i++
			kv = fields[i]
		case strings.HasPrefix(f, "--context="):
			kv = strings.TrimPrefix(f, "--context=")
		default:
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				in.values[k] = v
				sources = append(sources, "CDK_ARGS")
			}
		}
	}
	if _, named := in.values[config.KeyTenantCACerts]; !named {
		in.values[config.KeyTenantCACerts] = defaultTenantCA
		if _, ok := in.values[config.KeyVerificationCerts]; !ok && in.values[config.KeyCertificateMode] != config.ModeSNIOnly {
			in.values[config.KeyVerificationCerts] = defaultVerification
		}
		sources = append(sources, "the files of 'make tenant-ca'")
	}
	in.source = strings.Join(uniq(sources), " and ")
	return in, nil
}

// load validates the tenant CA files with the deploy's own rules (config.Load), reporting only the problems of
// these keys: the other context keys are not preflight's business.
func (in caInput) load(now time.Time) ([]config.TenantCA, string, error) {
	get := func(key string) any {
		if key == config.KeyTenantID {
			// Required by Load but not a file; any valid GUID lets the tenant CA keys be judged on their own.
			return "00000000-0000-0000-0000-000000000000"
		}
		return in.values[key]
	}
	cfg, err := config.Load(get, now)
	if err == nil {
		return cfg.TenantCAs, cfg.CertificateMode, nil
	}
	return nil, "", err
}

func uniq(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
