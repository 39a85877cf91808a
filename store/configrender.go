package store

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

// ConfigFile is one entry of deploy.config in .ferry.yml: a template in the release (the
// artifact as built) rendered per host into Path in the release directory, with Mode.
type ConfigFile struct {
	Template string `yaml:"template" json:"template"`
	Path     string `yaml:"path" json:"path"`
	// Mode is an octal file mode such as "0640"; default "0644".
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
}

// DefaultConfigMode is the mode of a rendered file whose entry names none.
const DefaultConfigMode = 0o644

// FileMode returns the entry's mode, or an error for one that is not octal permission bits.
func (c ConfigFile) FileMode() (uint32, error) {
	if c.Mode == "" {
		return DefaultConfigMode, nil
	}
	m, err := strconv.ParseUint(c.Mode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("mode %q is not an octal file mode such as \"0640\"", c.Mode)
	}
	return uint32(m), nil
}

// Hooks is deploy.hooks in .ferry.yml: commands run on the host, in the release directory,
// with the variables in their environment.
type Hooks struct {
	// Once runs on exactly one host of the rollout, before any other host goes on (a migration).
	Once         StringList `yaml:"once,omitempty" json:"once,omitempty"`
	BeforeStop   StringList `yaml:"before_stop,omitempty" json:"before_stop,omitempty"`
	AfterSwitch  StringList `yaml:"after_switch,omitempty" json:"after_switch,omitempty"`
	AfterStart   StringList `yaml:"after_start,omitempty" json:"after_start,omitempty"`
	AfterSuccess StringList `yaml:"after_success,omitempty" json:"after_success,omitempty"`
	OnFailure    StringList `yaml:"on_failure,omitempty" json:"on_failure,omitempty"`
}

// validateConfig checks deploy.config: relative paths that stay in the release, modes, no
// path twice.
func validateConfig(files []ConfigFile) error {
	seen := map[string]bool{}
	for i, f := range files {
		if f.Template == "" || f.Path == "" {
			return fmt.Errorf("entry %d needs both template and path", i+1)
		}
		for _, p := range []string{f.Template, f.Path} {
			if err := CheckRelativePath(p); err != nil {
				return fmt.Errorf("entry %d: %v", i+1, err)
			}
		}
		if _, err := f.FileMode(); err != nil {
			return fmt.Errorf("entry %d: %v", i+1, err)
		}
		clean := path.Clean(f.Path)
		if seen[clean] || clean == "." || strings.HasPrefix(clean, ".ferry") {
			return fmt.Errorf("entry %d: path %q is used twice or is not a file name", i+1, f.Path)
		}
		seen[clean] = true
	}
	return nil
}

// TemplateError is a config template that does not render: which template, the line and, when
// a variable is unknown, its name.
type TemplateError struct {
	Template string
	Line     int
	Variable string // the unknown variable, "" for other problems
	Message  string
}

func (e *TemplateError) Error() string {
	where := e.Template
	if e.Line > 0 {
		where += fmt.Sprintf(" line %d", e.Line)
	}
	if e.Variable != "" {
		return fmt.Sprintf("config template %s: unknown variable %s (set it for the project, the environment or the host)", where, e.Variable)
	}
	return fmt.Sprintf("config template %s: %s", where, e.Message)
}

var (
	templateLineRE = regexp.MustCompile(`^template: [^:]*:(\d+)(?::\d+)?: (.*)$`)
	missingKeyRE   = regexp.MustCompile(`map has no entry for key "([^"]*)"`)
	executingRE    = regexp.MustCompile(`^executing "[^"]*" at <[^>]*>: `)
)

// templateError turns text/template's error into a *TemplateError.
func templateError(name string, err error) *TemplateError {
	te := &TemplateError{Template: name, Message: err.Error()}
	if m := templateLineRE.FindStringSubmatch(err.Error()); m != nil {
		te.Line, _ = strconv.Atoi(m[1])
		te.Message = executingRE.ReplaceAllString(m[2], "")
	}
	if m := missingKeyRE.FindStringSubmatch(err.Error()); m != nil {
		te.Variable = m[1]
	}
	return te
}

// RenderConfig renders a config template named name with vars (name → value). A variable the
// template uses but vars lacks fails with a *TemplateError naming the template, line and
// variable; so does any other template error. Templates get a few pure helpers: add, sub, mul,
// div, mod (on numbers or numeric strings), default, optional "NAME" (a variable that may be
// unset: ""), quote, squote, upper, lower, trim, replace, contains, hasPrefix, hasSuffix, split
// and join.
func RenderConfig(name string, text []byte, vars map[string]string) ([]byte, error) {
	data := make(map[string]string, len(vars))
	for k, v := range vars {
		data[k] = v
	}
	funcs := configFuncs()
	funcs["optional"] = func(name string) string { return data[name] }
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(string(text))
	if err != nil {
		return nil, templateError(name, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return nil, templateError(name, err)
	}
	return out.Bytes(), nil
}

func configFuncs() template.FuncMap {
	arith := func(op string, f func(a, b int64) (int64, error)) func(a, b any) (int64, error) {
		return func(a, b any) (int64, error) {
			x, err := toInt(op, a)
			if err != nil {
				return 0, err
			}
			y, err := toInt(op, b)
			if err != nil {
				return 0, err
			}
			return f(x, y)
		}
	}
	nonZero := func(op string, f func(a, b int64) int64) func(a, b int64) (int64, error) {
		return func(a, b int64) (int64, error) {
			if b == 0 {
				return 0, fmt.Errorf("%s by zero", op)
			}
			return f(a, b), nil
		}
	}
	return template.FuncMap{
		"add": arith("add", func(a, b int64) (int64, error) { return a + b, nil }),
		"sub": arith("sub", func(a, b int64) (int64, error) { return a - b, nil }),
		"mul": arith("mul", func(a, b int64) (int64, error) { return a * b, nil }),
		"div": arith("div", nonZero("div", func(a, b int64) int64 { return a / b })),
		"mod": arith("mod", nonZero("mod", func(a, b int64) int64 { return a % b })),
		"default": func(def string, v any) string {
			s := fmt.Sprint(v)
			if v == nil || s == "" {
				return def
			}
			return s
		},
		"quote":     func(v any) string { return strconv.Quote(fmt.Sprint(v)) },
		"squote":    func(v any) string { return "'" + strings.ReplaceAll(fmt.Sprint(v), "'", "''") + "'" },
		"upper":     strings.ToUpper,
		"lower":     strings.ToLower,
		"trim":      strings.TrimSpace,
		"replace":   func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"contains":  func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix": func(prefix, s string) bool { return strings.HasPrefix(s, prefix) },
		"hasSuffix": func(suffix, s string) bool { return strings.HasSuffix(s, suffix) },
		"split":     func(sep, s string) []string { return strings.Split(s, sep) },
		"join":      func(sep string, list []string) string { return strings.Join(list, sep) },
	}
}

func toInt(op string, v any) (int64, error) {
	switch n := v.(type) {
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a whole number", op, n)
		}
		return i, nil
	}
	return 0, fmt.Errorf("%s: %v is not a whole number", op, v)
}

// SecretMask is what a secret's value is shown as in logs and previews.
const SecretMask = "******"

// MaskSecrets replaces every occurrence of each secret value in text with SecretMask, longer
// values first so one that contains another is masked whole.
func MaskSecrets(text string, secrets []string) string {
	if len(secrets) == 0 {
		return text
	}
	sorted := append([]string(nil), secrets...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, s := range sorted {
		if s != "" {
			text = strings.ReplaceAll(text, s, SecretMask)
		}
	}
	return text
}

// MaxTemplateSize is the largest config template ferry reads from an artifact.
const MaxTemplateSize = 1 << 20

// ReadArtifactFiles reads the named regular files from a tar.gz artifact (names relative to its
// top, as in deploy.config's template). A name that is missing, not a regular file or larger
// than MaxTemplateSize fails with EINVALID naming it.
func ReadArtifactFiles(r io.Reader, names []string) (map[string][]byte, error) {
	want := map[string]string{}
	for _, n := range names {
		want[path.Clean(n)] = n
	}
	out := map[string][]byte{}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read artifact: %w", err)
	}
	tr := tar.NewReader(gz)
	for len(out) < len(want) {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read artifact: %w", err)
		}
		name, ok := want[path.Clean(strings.TrimPrefix(hdr.Name, "./"))]
		if !ok {
			continue
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size > MaxTemplateSize {
			return nil, Errorf(EINVALID, "config template %s is not a regular file of at most %d bytes in the artifact", name, MaxTemplateSize)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("read %s from the artifact: %w", name, err)
		}
		out[name] = data
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, Errorf(EINVALID, "config template %s is not in the artifact: the build must put it there (deploy.config names templates relative to the top of the artifact)", n)
		}
	}
	return out, nil
}
