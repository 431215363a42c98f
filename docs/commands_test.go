package docs

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the repository root, seen from this package's folder (go test runs in it).
const root = ".."

// PENDING: commands another change is adding while these docs were written (issue 24: `make bootstrap`,
// `make preflight`, `fleetctl preflight`; issue 23: `fleetctl why`, named by docs/runbooks/). The docs may name them before they exist. Empty these lists once that
// change is merged: the test fails when a pending name exists, so a stale entry cannot linger.
var (
	pendingMakeTargets = []string{"bootstrap", "preflight"}
	pendingFleetctl    = []string{"preflight", "why"}
)

// docFiles are the documents whose commands must exist: the root README, the emulator's and the test kit's
// READMEs, and every Markdown file under docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "emulator/README.md", "testkit/README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			rel, _ := filepath.Rel(root, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list docs/: %v", err)
	}
	return files
}

// snippet is code in a document: a fenced block's line or an inline `code span`, with the line it is on.
type snippet struct {
	line int
	code string
}

var inlineCode = regexp.MustCompile("`([^`\n]+)`")

// codeOf returns the code of a Markdown document: commands are only recognised there, so prose such as "make
// sure" is never taken for a make target.
func codeOf(text string) []snippet {
	var out []snippet
	fenced := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			out = append(out, snippet{n, line})
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
			out = append(out, snippet{n, m[1]})
		}
	}
	return out
}

var (
	// make [VAR=value ...] target: the first word after make and its variable assignments.
	makeCommand = regexp.MustCompile(`\bmake\s+(?:[A-Z_][A-Z0-9_]*=\S*\s+)*([a-z][a-z0-9_-]*)`)
	// fleetctl subcommand (also build/bin/fleetctl subcommand).
	fleetctlCommand = regexp.MustCompile(`\bfleetctl\s+([a-z][a-z-]*)`)
	// a Markdown link to a relative path or an anchor: [text](path#anchor), [text](#anchor)
	relativeLink = regexp.MustCompile(`\]\(([^)\s#]*)(#[^)\s]*)?\)`)
	heading      = regexp.MustCompile(`^#{1,6}\s+(.+?)\s*$`)
	explicitID   = regexp.MustCompile(`<a id="([^"]+)"></a>`)
)

// makeTargets lists the targets of the Makefile and mk/*.mk as make itself reads them (`make -pRrq`: print the
// database, no built-in rules or variables, run nothing).
func makeTargets(t *testing.T) map[string]bool {
	t.Helper()
	cmd := exec.Command("make", "-pRrq", "-C", root)
	// Under `make test` the parent make's flags would reach this one.
	cmd.Env = append(withoutMakeEnv(os.Environ()), "MAKEFLAGS=", "MAKELEVEL=")
	var out bytes.Buffer
	cmd.Stdout = &out
	_ = cmd.Run() // -q exits 1 when the default goal is not up to date; the database is printed either way
	targets := map[string]bool{}
	rule := regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9_.-]*):(?:[^=]|$)`)
	notATarget := false
	for _, line := range strings.Split(out.String(), "\n") {
		if line == "# Not a target:" {
			notATarget = true
			continue
		}
		if m := rule.FindStringSubmatch(line); m != nil && !notATarget {
			targets[m[1]] = true
		}
		notATarget = false
	}
	for _, known := range []string{"test", "demo", "deploy"} {
		if !targets[known] {
			t.Fatalf("make -pRrq listed no %q target (%d targets read): the target list is broken, not the docs", known, len(targets))
		}
	}
	return targets
}

func withoutMakeEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// fleetctlCommands reads the subcommands from cmd/fleetctl's command table: the keys of `var commands = map[...]`.
func fleetctlCommands(t *testing.T) map[string]bool {
	t.Helper()
	dir := filepath.Join(root, "cmd", "fleetctl")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	commands := map[string]bool{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "commands" || len(vs.Values) != 1 {
				return true
			}
			lit, ok := vs.Values[0].(*ast.CompositeLit)
			if !ok {
				return true
			}
			for _, elt := range lit.Elts {
				kv, ok := elt.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if key, ok := kv.Key.(*ast.BasicLit); ok && key.Kind == token.STRING {
					if name, err := strconv.Unquote(key.Value); err == nil {
						commands[name] = true
					}
				}
			}
			return false
		})
	}
	if !commands["status"] {
		t.Fatalf("no command table with a \"status\" entry found in %s (var commands = map[string]...{...}): the test cannot read the subcommands", dir)
	}
	return commands
}

// TestDocumentedCommandsExist fails for every `make <target>` and `fleetctl <subcommand>` in the docs' code that the
// Makefile or fleetctl's command table does not define.
func TestDocumentedCommandsExist(t *testing.T) {
	targets := makeTargets(t)
	subcommands := fleetctlCommands(t)
	checkPending(t, "make target", pendingMakeTargets, targets)
	checkPending(t, "fleetctl subcommand", pendingFleetctl, subcommands)
	allow := func(set map[string]bool, pending []string, name string) bool {
		return set[name] || contains(pending, name)
	}
	usedMake, usedFleetctl := map[string]int{}, map[string]int{}
	for _, doc := range docFiles(t) {
		data, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		for _, s := range codeOf(string(data)) {
			for _, m := range makeCommand.FindAllStringSubmatch(s.code, -1) {
				usedMake[m[1]]++
				if !allow(targets, pendingMakeTargets, m[1]) {
					t.Errorf("%s:%d: `make %s`: no such make target in the Makefile or mk/*.mk", doc, s.line, m[1])
				}
			}
			for _, m := range fleetctlCommand.FindAllStringSubmatch(s.code, -1) {
				usedFleetctl[m[1]]++
				if !allow(subcommands, pendingFleetctl, m[1]) {
					t.Errorf("%s:%d: `fleetctl %s`: no such subcommand in cmd/fleetctl's command table", doc, s.line, m[1])
				}
			}
		}
	}
	t.Logf("checked %d make targets (%d mentions) against %d defined, %d fleetctl subcommands (%d mentions) against %d defined",
		len(usedMake), sum(usedMake), len(targets), len(usedFleetctl), sum(usedFleetctl), len(subcommands))
	t.Logf("make targets named: %s", strings.Join(keys(usedMake), " "))
	t.Logf("fleetctl subcommands named: %s", strings.Join(keys(usedFleetctl), " "))
}

// TestRelativeLinksResolve fails for every relative Markdown link of the docs whose file does not exist, or whose
// #anchor names no heading (GitHub's slug: lower case, punctuation dropped, spaces to hyphens) or <a id> there.
func TestRelativeLinksResolve(t *testing.T) {
	links, anchors := 0, 0
	for _, doc := range docFiles(t) {
		data, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		for n, line := range strings.Split(string(data), "\n") {
			for _, m := range relativeLink.FindAllStringSubmatch(line, -1) {
				target, anchor := m[1], strings.TrimPrefix(m[2], "#")
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || (target == "" && anchor == "") {
					continue
				}
				links++
				path := filepath.Join(root, filepath.Dir(doc), filepath.FromSlash(target))
				if target == "" {
					path = filepath.Join(root, doc)
				}
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s:%d: link to %s: no such file or folder", doc, n+1, target)
					continue
				}
				if anchor == "" || !strings.HasSuffix(path, ".md") {
					continue
				}
				anchors++
				if ids := anchorsOf(t, path); !ids[anchor] {
					t.Errorf("%s:%d: link to %s#%s: no such heading or anchor in %s", doc, n+1, target, anchor, filepath.Base(path))
				}
			}
		}
	}
	t.Logf("%d relative links resolve, %d of them to an anchor", links, anchors)
}

// anchorsOf returns the anchors of a Markdown file: its headings' slugs and its explicit <a id="..."> anchors.
func anchorsOf(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ids := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if m := heading.FindStringSubmatch(line); m != nil {
			ids[slug(m[1])] = true
		}
		for _, m := range explicitID.FindAllStringSubmatch(line, -1) {
			ids[m[1]] = true
		}
	}
	return ids
}

// slug is GitHub's anchor for a heading: lower case, letters, digits, '-' and '_' kept, spaces to '-', the rest
// dropped.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// checkPending fails for a pending name that exists now: the pending list must be emptied after the merge.
func checkPending(t *testing.T, kind string, pending []string, defined map[string]bool) {
	t.Helper()
	for _, name := range pending {
		if defined[name] {
			t.Errorf("pending %s %q exists now: remove it from the pending list in docs/commands_test.go", kind, name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func keys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
