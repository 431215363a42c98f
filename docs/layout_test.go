package docs

import (
	"os"
	"os/exec"
	"path"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// layoutRows reads the README's Layout table: for each row, the top-level folders its first cell names
// (`stacks/`, `mk/`, `.ci/`) and the words of the whole row, where its first-level folders must appear.
func layoutRows(t *testing.T) map[string]map[string]bool {
	t.Helper()
	data, err := os.ReadFile(root + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## Layout")
	if start < 0 {
		t.Fatal("README.md has no Layout section")
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	folder := regexp.MustCompile("`(\\.?[a-z][a-z0-9_.-]*)/`")
	word := regexp.MustCompile(`[A-Za-z0-9_.-]+`)
	rows := map[string]map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		words := map[string]bool{}
		for _, w := range word.FindAllString(line, -1) {
			words[w] = true
		}
		for _, m := range folder.FindAllStringSubmatch(cells[1], -1) {
			rows[m[1]] = words
		}
	}
	return rows
}

// trackedFolders returns the folders git tracks files in, top level → its first-level folders.
func trackedFolders(t *testing.T) map[string]map[string]bool {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files").Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout)", err)
	}
	folders := map[string]map[string]bool{}
	for _, file := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(path.Clean(file), "/")
		if len(parts) < 2 {
			continue // a top-level file
		}
		if folders[parts[0]] == nil {
			folders[parts[0]] = map[string]bool{}
		}
		if len(parts) >= 3 {
			folders[parts[0]][parts[1]] = true
		}
	}
	return folders
}

// TestLayoutTableMatchesTheTree holds the README's Layout table to the tree: every top-level folder has a row,
// every first-level folder is named in its row, and no row names a top-level folder that does not exist.
func TestLayoutTableMatchesTheTree(t *testing.T) {
	rows := layoutRows(t)
	tree := trackedFolders(t)
	var tops []string
	for top := range tree {
		tops = append(tops, top)
	}
	sort.Strings(tops)
	subs := 0
	for _, top := range tops {
		words, ok := rows[top]
		if !ok {
			t.Errorf("README.md Layout: no row for the top-level folder %s/", top)
			continue
		}
		var missing []string
		for sub := range tree[top] {
			subs++
			if !words[sub] {
				missing = append(missing, sub)
			}
		}
		sort.Strings(missing)
		for _, sub := range missing {
			t.Errorf("README.md Layout: the row of %s/ does not name its folder %s/%s/", top, top, sub)
		}
	}
	for top := range rows {
		if tree[top] == nil {
			t.Errorf("README.md Layout: a row names %s/, which is not a folder of the tree", top)
		}
	}
	t.Logf("Layout table checked against %d top-level folders and %d first-level folders", len(tops), subs)
}
