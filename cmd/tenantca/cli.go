package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// runner runs one command of an installed CLI and returns its standard output. Tests put fake CLIs (shell
// scripts) first on PATH, so the real process execution is what they exercise.
type runner interface {
	LookPath(name string) (string, error)
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// execRunner runs commands as child processes.
type execRunner struct{}

func (execRunner) LookPath(name string) (string, error) { return exec.LookPath(name) }

func (execRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.Bytes(), &cliError{command: name + " " + strings.Join(args, " "), output: msg, err: err}
	}
	return stdout.Bytes(), nil
}

// cliError is a CLI command that failed, with what it printed.
type cliError struct {
	command, output string
	err             error
}

func (e *cliError) Error() string {
	if e.output == "" {
		return fmt.Sprintf("'%s': %v", e.command, e.err)
	}
	return fmt.Sprintf("'%s': %v: %s", e.command, e.err, e.output)
}

func (e *cliError) Unwrap() error { return e.err }

// sphereCLI is the Azure Sphere CLI found on this machine: the Azure CLI extension (az sphere) or the legacy
// azsphere.
type sphereCLI interface {
	Name() string
	// TenantID checks the sign-in and returns the tenant id (DeviceAuthentication of the app manifest).
	TenantID(ctx context.Context) (string, error)
	DownloadCA(ctx context.Context, dest string) error
	DownloadProof(ctx context.Context, dest, verificationCode string) error
}

// CASelection picks the CA certificate when the tenant has more than one (the next tenant CA is issued about
// 90 days before the current one expires). Empty: the CLI's default, the active one.
type CASelection struct {
	Name       string // az sphere: --name (certificate serial number)
	Index      string // azsphere: --index
	Thumbprint string // azsphere: --thumbprint
}

// CatalogSelection names the Azure Sphere catalog for az sphere; empty values are looked up.
type CatalogSelection struct {
	ResourceGroup, Catalog string
}

const installHint = "install the Azure CLI and its Azure Sphere extension: 'az extension add --name azure-sphere' " +
	"(https://aka.ms/AzureSphereSDKDownload/Linux)"

// LegacyCLIRetirement is when Microsoft retires the legacy azsphere CLI (Azure Sphere (Legacy) tooling); az sphere
// is the CLI after it.
const LegacyCLIRetirement = "2027-09-27"

// LegacyCLIWarning is printed whenever the legacy CLI is used.
const LegacyCLIWarning = "warning: the legacy azsphere CLI retires on " + LegacyCLIRetirement +
	"; move to az sphere ('az extension add --name azure-sphere') and run 'make tenant-ca' without LEGACY_CLI"

// legacyFlagHint tells how to opt into the legacy CLI.
const legacyFlagHint = "the legacy azsphere CLI is used only when asked: make tenant-ca LEGACY_CLI=1 (tenantca -legacy-cli), until its retirement on " + LegacyCLIRetirement

// findCLI returns az sphere, or the legacy azsphere when legacy is set (never silently).
func findCLI(ctx context.Context, r runner, ca CASelection, catalog CatalogSelection, legacy bool) (sphereCLI, error) {
	if legacy {
		if ca.Name != "" {
			return nil, errors.New("-ca-name selects a CA in az sphere; with the legacy azsphere CLI pass -index <n> or -thumbprint <sha1> ('azsphere ca-certificate list')")
		}
		if _, err := r.LookPath("azsphere"); err != nil {
			return nil, errors.New("-legacy-cli: the legacy azsphere CLI is not on PATH (it comes with the Azure Sphere SDK); " +
				"or drop LEGACY_CLI and use az sphere: " + installHint)
		}
		return &legacyAzsphere{r: r, ca: ca}, nil
	}
	if ca.Index != "" || ca.Thumbprint != "" {
		return nil, errors.New("-index and -thumbprint select a CA in the legacy azsphere CLI; with az sphere pass -ca-name <serial number> ('az sphere ca-certificate list'); " + legacyFlagHint)
	}
	_, legacyErr := r.LookPath("azsphere")
	legacyNote := ""
	if legacyErr == nil {
		legacyNote = " (azsphere is on PATH: " + legacyFlagHint + ")"
	}
	if _, err := r.LookPath("az"); err != nil {
		return nil, fmt.Errorf("no Azure Sphere CLI found (az is not on PATH): %s, then 'make tenant-ca' again%s", installHint, legacyNote)
	}
	if _, err := r.Run(ctx, "az", "extension", "show", "--name", "azure-sphere", "--output", "none"); err != nil {
		return nil, fmt.Errorf("az is installed without the Azure Sphere extension: run 'az extension add --name azure-sphere', "+
			"then 'make tenant-ca' again%s", legacyNote)
	}
	return &azSphere{r: r, ca: ca, catalog: catalog}, nil
}

// azSphere drives the Azure Sphere (Integrated) CLI, an Azure CLI extension working on catalogs.
type azSphere struct {
	r       runner
	ca      CASelection
	catalog CatalogSelection
}

func (a *azSphere) Name() string { return "az sphere" }

func (a *azSphere) TenantID(ctx context.Context) (string, error) {
	if _, err := a.r.Run(ctx, "az", "account", "show", "--output", "none"); err != nil {
		return "", fmt.Errorf("the Azure CLI is not signed in: run 'az login' (and 'az account set --subscription <id>' for the "+
			"subscription of your Azure Sphere catalog), then 'make tenant-ca' again (%v)", err)
	}
	if a.catalog.ResourceGroup == "" || a.catalog.Catalog == "" {
		if err := a.pickCatalog(ctx); err != nil {
			return "", err
		}
	}
	out, err := a.r.Run(ctx, "az", "sphere", "catalog", "show", "--resource-group", a.catalog.ResourceGroup, "--catalog", a.catalog.Catalog, "--output", "json")
	if err != nil {
		return "", fmt.Errorf("show Azure Sphere catalog %s in resource group %s: %w", a.catalog.Catalog, a.catalog.ResourceGroup, err)
	}
	var catalog struct {
		Properties struct {
			TenantID string `json:"tenantId"`
		} `json:"properties"`
		TenantID string            `json:"tenantId"`
		Tags     map[string]string `json:"tags"`
	}
	if err := json.Unmarshal(out, &catalog); err != nil {
		return "", fmt.Errorf("'az sphere catalog show' printed no catalog JSON: %v", err)
	}
	for _, id := range []string{catalog.Properties.TenantID, catalog.TenantID, catalog.Tags["MigratedCatalogId"]} {
		if guidPattern.MatchString(id) {
			return strings.ToLower(id), nil
		}
	}
	return "", fmt.Errorf("catalog %s has no tenant id (properties.tenantId or tags.MigratedCatalogId): pass -tenant-id <GUID> ", a.catalog.Catalog)
}

// pickCatalog fills in the catalog when the subscription has exactly one.
func (a *azSphere) pickCatalog(ctx context.Context) error {
	out, err := a.r.Run(ctx, "az", "sphere", "catalog", "list", "--output", "json")
	if err != nil {
		return fmt.Errorf("list Azure Sphere catalogs: %w", err)
	}
	var catalogs []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &catalogs); err != nil {
		return fmt.Errorf("'az sphere catalog list' printed no catalog list: %v", err)
	}
	var names []string
	want := a.catalog
	for _, c := range catalogs {
		group := resourceGroupOf(c.ID)
		if (want.Catalog == "" || strings.EqualFold(c.Name, want.Catalog)) &&
			(want.ResourceGroup == "" || strings.EqualFold(group, want.ResourceGroup)) {
			names = append(names, fmt.Sprintf("-catalog %s -resource-group %s", c.Name, group))
			if len(names) == 1 {
				a.catalog = CatalogSelection{ResourceGroup: group, Catalog: c.Name}
			}
		}
	}
	switch len(names) {
	case 1:
		return nil
	case 0:
		return errors.New("no matching Azure Sphere catalog in this subscription: select the subscription that holds it " +
			"('az account set --subscription <id>') or pass -catalog <name> -resource-group <group>")
	default:
		return fmt.Errorf("%d Azure Sphere catalogs match; pick one: make tenant-ca %s", len(names), strings.Join(names, " | "))
	}
}

func resourceGroupOf(id string) string {
	parts := strings.Split(id, "/")
	for i := 0; i+1 < len(parts); i++ {
		if strings.EqualFold(parts[i], "resourceGroups") {
			return parts[i+1]
		}
	}
	return ""
}

func (a *azSphere) args(verb string) []string {
	args := []string{"sphere", "ca-certificate", verb, "--resource-group", a.catalog.ResourceGroup, "--catalog", a.catalog.Catalog}
	if a.ca.Name != "" {
		args = append(args, "--name", a.ca.Name)
	}
	return args
}

func (a *azSphere) DownloadCA(ctx context.Context, dest string) error {
	_, err := a.r.Run(ctx, "az", append(a.args("download"), "--output-file", dest)...)
	return err
}

func (a *azSphere) DownloadProof(ctx context.Context, dest, code string) error {
	_, err := a.r.Run(ctx, "az", append(a.args("download-proof"), "--verification-code", code, "--output-file", dest)...)
	return err
}

// legacyAzsphere drives the Azure Sphere (Legacy) CLI, which works on the selected tenant.
type legacyAzsphere struct {
	r  runner
	ca CASelection
}

func (l *legacyAzsphere) Name() string { return "azsphere" }

var guidPattern = regexp.MustCompile(`(?i)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
var guidInText = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)

func (l *legacyAzsphere) TenantID(ctx context.Context) (string, error) {
	out, err := l.r.Run(ctx, "azsphere", "tenant", "show-selected", "--output", "json")
	if err != nil {
		return "", fmt.Errorf("azsphere is not signed in or has no tenant selected: run 'azsphere login' and "+
			"'azsphere tenant select --tenant <id>', then 'make tenant-ca' again (%v)", err)
	}
	var tenant struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(out, &tenant) == nil && guidPattern.MatchString(tenant.ID) {
		return strings.ToLower(tenant.ID), nil
	}
	if id := guidInText.Find(out); id != nil { // older CLIs print a table
		return strings.ToLower(string(id)), nil
	}
	return "", fmt.Errorf("'azsphere tenant show-selected' printed no tenant id: select one with 'azsphere tenant select --tenant <id>'")
}

func (l *legacyAzsphere) args(verb, dest string) []string {
	args := []string{"ca-certificate", verb, "--destination", dest}
	if l.ca.Index != "" {
		args = append(args, "--index", l.ca.Index)
	}
	if l.ca.Thumbprint != "" {
		args = append(args, "--thumbprint", l.ca.Thumbprint)
	}
	return args
}

func (l *legacyAzsphere) DownloadCA(ctx context.Context, dest string) error {
	_, err := l.r.Run(ctx, "azsphere", l.args("download", dest)...)
	return err
}

func (l *legacyAzsphere) DownloadProof(ctx context.Context, dest, code string) error {
	_, err := l.r.Run(ctx, "azsphere", append(l.args("download-proof", dest), "--verification-code", code)...)
	return err
}
