package contract

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNamesAreWrittenOnlyHere checks that no other non-test Go file of the repository spells one of this package's
// names as a string literal: every side must take it from here, or a rename would leave that side behind.
func TestNamesAreWrittenOnlyHere(t *testing.T) {
	values := stringConstants(t, "contract.go")
	if len(values) < 15 {
		t.Fatalf("found %d string constants in contract.go; the parser missed them", len(values))
	}
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("find the repository: %v", err)
	}
	files, err := exec.Command("git", "-C", strings.TrimSpace(string(root)), "ls-files", "--cached", "--others", "--exclude-standard", "*.go").Output()
	if err != nil {
		t.Fatalf("list Go files: %v", err)
	}
	checked := 0
	for _, f := range strings.Fields(string(files)) {
		if strings.HasSuffix(f, "_test.go") || filepath.Dir(f) == "internal/contract" {
			continue
		}
		path := filepath.Join(strings.TrimSpace(string(root)), f)
		if _, err := os.Stat(path); err != nil {
			continue // deleted in the work tree
		}
		checked++
		for _, lit := range stringLiterals(t, path) {
			if name, ok := values[lit]; ok {
				t.Errorf("%s spells %q: use contract.%s", f, lit, name)
			}
		}
	}
	if checked < 30 {
		t.Fatalf("checked only %d files", checked)
	}
	t.Logf("%d names checked in %d non-test Go files", len(values), checked)
}

// stringConstants maps the value of each string constant declared in file to its name.
func stringConstants(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, v := range vs.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					if s == "" {
						continue // S3URLScopeDevice: the empty string names nothing a file could spell by mistake
					}
					out[s] = vs.Names[i].Name
				}
			}
		}
	}
	return out
}

func stringLiterals(t *testing.T, path string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				out = append(out, s)
			}
		}
		return true
	})
	return out
}
