package cheader

import (
	"strings"
	"testing"
)

// The reader takes what the device headers hold: string literals, concatenated, names of other defines, integer
// expressions with suffixes, trailing comments; and refuses what it cannot evaluate.
func TestStringsAndIntegers(t *testing.T) {
	text := "#define A \"fleet\" /* scope */\n#  define B A \"/\"  // prefix\n#define C D\n#define E 42\n" +
		"#ifndef F\n#define F \"x\\\"y\"\n#endif\n#define U \"https://example.com/x\" // a URL keeps its //\n" +
		"#define N (2U * 1000UL) /* ms */\n#define M (30 * 60 * 1000) // half an hour\n#define Z 1/0\n#define FN(x) (x)\n"
	d, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"A": "fleet", "B": "fleet/", "F": `x"y`, "U": "https://example.com/x"} {
		if got, err := d.String(name); err != nil || got != want {
			t.Errorf("String(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"C", "E", "G"} {
		if got, err := d.String(name); err == nil {
			t.Errorf("String(%s) = %q, want an error", name, got)
		}
	}
	for name, want := range map[string]int64{"E": 42, "N": 2000, "M": 1_800_000} {
		if got, err := d.Int(name); err != nil || got != want {
			t.Errorf("Int(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
	for _, name := range []string{"A", "Z", "G", "FN"} {
		if got, err := d.Int(name); err == nil {
			t.Errorf("Int(%s) = %d, want an error", name, got)
		}
	}
}
