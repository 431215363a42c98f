// Package cheader reads the object-like #defines of the C device app's headers, so Go code that must agree with
// the app (the device simulator's retry policy, the topic segments the contract pins) reads the app's own figures
// rather than a copy: integer expressions and string literals, the forms those headers use.
package cheader

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Defines is the value text of every object-like #define of a header, by name, as written (comments included).
type Defines map[string]string

// Read returns the object-like #defines of the header at path.
func Read(path string) (Defines, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return d, nil
}

// Parse returns the object-like #defines of a header; function-like macros are left out.
func Parse(r io.Reader) (Defines, error) {
	defines := Defines{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			continue
		}
		directive := strings.TrimSpace(strings.TrimPrefix(line, "#"))
		fields := strings.Fields(directive)
		if len(fields) < 3 || fields[0] != "define" || strings.Contains(fields[1], "(") {
			continue
		}
		value := strings.TrimSpace(strings.TrimPrefix(directive, "define"))
		defines[fields[1]] = strings.TrimSpace(strings.TrimPrefix(value, fields[1]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	return defines, nil
}

// Int evaluates the #define name as an integer expression (decimal integers with optional U/L suffixes, + - * /
// and parentheses; a trailing comment is ignored).
func (d Defines) Int(name string) (int64, error) {
	expr, ok := d[name]
	if !ok {
		return 0, fmt.Errorf("#define %s missing", name)
	}
	if i := strings.Index(expr, "/*"); i >= 0 {
		expr = expr[:i]
	}
	if i := strings.Index(expr, "//"); i >= 0 {
		expr = expr[:i]
	}
	v, err := evalIntExpr(strings.TrimSpace(expr))
	if err != nil {
		return 0, fmt.Errorf("#define %s %s: %w", name, strings.TrimSpace(expr), err)
	}
	return v, nil
}

// String expands the #define name as the compiler would a string: literals concatenated, names of other defines
// expanded (a trailing comment is ignored).
func (d Defines) String(name string) (string, error) { return expandString(d, name, 0) }

var cToken = regexp.MustCompile(`^\s*("(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*)`)

func expandString(defines Defines, name string, depth int) (string, error) {
	value, ok := defines[name]
	if !ok {
		return "", fmt.Errorf("#define %s missing", name)
	}
	if depth > 8 {
		return "", fmt.Errorf("#define %s: nested too deep", name)
	}
	var b strings.Builder
	rest := value
	for {
		rest = strings.TrimSpace(rest)
		if rest == "" || strings.HasPrefix(rest, "//") || strings.HasPrefix(rest, "/*") {
			break
		}
		m := cToken.FindStringSubmatch(rest)
		if m == nil {
			return "", fmt.Errorf("#define %s %s: not a string", name, strings.TrimSpace(value))
		}
		rest = rest[len(m[0]):]
		if strings.HasPrefix(m[1], `"`) {
			s, err := strconv.Unquote(m[1])
			if err != nil {
				return "", fmt.Errorf("#define %s %s: %w", name, value, err)
			}
			b.WriteString(s)
			continue
		}
		s, err := expandString(defines, m[1], depth+1)
		if err != nil {
			return "", fmt.Errorf("#define %s: %w", name, err)
		}
		b.WriteString(s)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("#define %s is empty", name)
	}
	return b.String(), nil
}

// evalIntExpr evaluates an integer expression: decimal integers with optional U/L suffixes, + - * / and
// parentheses.
func evalIntExpr(expr string) (int64, error) {
	e := &intExpr{s: strings.ReplaceAll(expr, " ", "")}
	v, err := e.sum()
	if err != nil {
		return 0, err
	}
	if e.i != len(e.s) {
		return 0, fmt.Errorf("unexpected %q", e.s[e.i:])
	}
	return v, nil
}

type intExpr struct {
	s string
	i int
}

func (e *intExpr) sum() (int64, error) {
	v, err := e.product()
	for err == nil && e.i < len(e.s) && (e.s[e.i] == '+' || e.s[e.i] == '-') {
		op := e.s[e.i]
		e.i++
		var w int64
		if w, err = e.product(); err == nil {
			if op == '+' {
				v += w
			} else {
				v -= w
			}
		}
	}
	return v, err
}

func (e *intExpr) product() (int64, error) {
	v, err := e.operand()
	for err == nil && e.i < len(e.s) && (e.s[e.i] == '*' || e.s[e.i] == '/') {
		op := e.s[e.i]
		e.i++
		var w int64
		if w, err = e.operand(); err == nil {
			switch {
			case op == '*':
				v *= w
			case w == 0:
				err = errors.New("division by zero")
			default:
				v /= w
			}
		}
	}
	return v, err
}

func (e *intExpr) operand() (int64, error) {
	if e.i < len(e.s) && e.s[e.i] == '(' {
		e.i++
		v, err := e.sum()
		if err != nil {
			return 0, err
		}
		if e.i >= len(e.s) || e.s[e.i] != ')' {
			return 0, errors.New("missing )")
		}
		e.i++
		return v, nil
	}
	start := e.i
	for e.i < len(e.s) && e.s[e.i] >= '0' && e.s[e.i] <= '9' {
		e.i++
	}
	if start == e.i {
		return 0, fmt.Errorf("want a decimal integer at %q", e.s[start:])
	}
	v, err := strconv.ParseInt(e.s[start:e.i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse integer: %w", err)
	}
	for e.i < len(e.s) && strings.ContainsRune("uUlL", rune(e.s[e.i])) {
		e.i++
	}
	return v, nil
}
