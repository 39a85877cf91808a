package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// PipelineFile is the name of the pipeline file at the top of a project's repository.
const PipelineFile = ".ferry.yml"

// Pipeline is a project's .ferry.yml: how to build it and how to deploy it. It is read from the
// commit being built and kept with the version, so deploying an old version uses its own steps.
type Pipeline struct {
	Build   BuildSpec  `yaml:"build" json:"build"`
	Deploy  DeploySpec `yaml:"deploy" json:"deploy"`
	Trigger *Trigger   `yaml:"trigger,omitempty" json:"trigger,omitempty"`
}

// BuildSpec is the build section of .ferry.yml.
type BuildSpec struct {
	// Script lines run one after another with /bin/sh -e in a clean checkout of the commit.
	Script StringList `yaml:"script" json:"script"`
	// Artifact is a file or directory, relative to the checkout, packed as tar.gz.
	Artifact string `yaml:"artifact" json:"artifact"`
	// Timeout ends the build when it runs longer; default 20m.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Env adds variables to the script's environment.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
}

// DeploySpec is the deploy section of .ferry.yml.
type DeploySpec struct {
	// Path is the absolute directory on each host holding releases/, current and shared/.
	Path string `yaml:"path" json:"path"`
	// KeepReleases is how many releases stay on a host; default 5.
	KeepReleases int        `yaml:"keep_releases,omitempty" json:"keep_releases,omitempty"`
	Stop         StopSpec   `yaml:"stop,omitempty" json:"stop"`
	Start        string     `yaml:"start,omitempty" json:"start,omitempty"`
	Health       HealthSpec `yaml:"health,omitempty" json:"health"`
	Strategy     Strategy   `yaml:"strategy,omitempty" json:"strategy"`
	// Config are templates rendered per host into the release (see configrender.go).
	Config []ConfigFile `yaml:"config,omitempty" json:"config,omitempty"`
	// Hooks are commands run on the host around the switch (see configrender.go).
	Hooks Hooks `yaml:"hooks,omitempty" json:"hooks"`
}

// StopSpec says how to stop the running release: a command, or a pid file whose process gets
// SIGTERM, Grace to exit, then SIGKILL.
type StopSpec struct {
	Command string   `yaml:"command,omitempty" json:"command,omitempty"`
	PidFile string   `yaml:"pid_file,omitempty" json:"pid_file,omitempty"`
	Grace   Duration `yaml:"grace,omitempty" json:"grace,omitempty"`
}

// HealthSpec says how to tell that a started release works: an HTTP URL on the host (reached
// through the SSH connection) that must answer 2xx, or a command that must exit 0.
type HealthSpec struct {
	HTTP    string   `yaml:"http,omitempty" json:"http,omitempty"`
	Command string   `yaml:"command,omitempty" json:"command,omitempty"`
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Strategy kinds.
const (
	StrategySerial   = "serial"
	StrategyParallel = "parallel"
	StrategyRolling  = "rolling"
	StrategyCanary   = "canary"
)

// Strategy says in what order a deployment reaches the hosts of an environment.
type Strategy struct {
	// Kind is serial, parallel, rolling or canary; empty means serial.
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty"`
	// Batch is the batch size of rolling and canary: a count ("2") or a percentage ("25%").
	Batch string `yaml:"batch,omitempty" json:"batch,omitempty"`
	// Concurrency limits parallel; 0 means all hosts at once.
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// ContinueOnFailure goes on with the other hosts after a host fails.
	ContinueOnFailure bool `yaml:"continue_on_failure,omitempty" json:"continue_on_failure,omitempty"`
}

// Trigger says which pushes build and where good builds deploy.
type Trigger struct {
	// Keyword must stand as a word in the head commit's message (case-insensitive); empty builds
	// every push.
	Keyword string `yaml:"keyword" json:"keyword"`
	// Branches are glob patterns (path.Match, "*" within a segment); empty means every branch.
	Branches []string `yaml:"branches,omitempty" json:"branches"`
	// Tags builds tag pushes.
	Tags bool `yaml:"tags,omitempty" json:"tags"`
	// Deploy maps a branch (or glob) to the environment a good build of it is deployed to.
	Deploy map[string]string `yaml:"deploy,omitempty" json:"deploy"`
}

// DefaultTrigger is the trigger of a project created without one.
func DefaultTrigger() Trigger {
	return Trigger{Keyword: "devops", Branches: []string{}, Deploy: map[string]string{}}
}

// Validate checks the patterns and names of t.
func (t *Trigger) Validate() error {
	for _, b := range t.Branches {
		if _, err := path.Match(b, ""); err != nil || b == "" {
			return Errorf(EINVALID, "trigger.branches: %q is not a valid branch pattern", b)
		}
	}
	for b, env := range t.Deploy {
		if _, err := path.Match(b, ""); err != nil || b == "" {
			return Errorf(EINVALID, "trigger.deploy: %q is not a valid branch pattern", b)
		}
		if err := ValidateName("trigger.deploy environment", env); err != nil {
			return err
		}
	}
	if strings.ContainsAny(t.Keyword, "\n\r") {
		return Errorf(EINVALID, "trigger.keyword: must be one line")
	}
	return nil
}

// Validate checks a strategy's kind and batch.
func (s *Strategy) Validate() error {
	switch s.Kind {
	case "", StrategySerial, StrategyParallel, StrategyRolling, StrategyCanary:
	default:
		return Errorf(EINVALID, "strategy.kind: %q is not one of serial, parallel, rolling, canary", s.Kind)
	}
	if s.Batch != "" {
		if _, _, err := ParseBatch(s.Batch); err != nil {
			return err
		}
	}
	if s.Concurrency < 0 {
		return Errorf(EINVALID, "strategy.concurrency: must not be negative")
	}
	return nil
}

// ParseBatch reads a batch size: "3" is three hosts, "25%" a quarter of them (at least one).
func ParseBatch(s string) (n int, percent bool, err error) {
	num, percent := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err = strconv.Atoi(num)
	if err != nil || n <= 0 || (percent && n > 100) {
		return 0, false, Errorf(EINVALID, "strategy.batch: %q is not a host count or a percentage", s)
	}
	return n, percent, nil
}

// BatchSize returns the hosts per batch for a strategy over total hosts.
func (s *Strategy) BatchSize(total int) int {
	if total <= 0 {
		return 0
	}
	n, percent, err := ParseBatch(s.Batch)
	if s.Batch == "" || err != nil {
		return 1
	}
	if percent {
		n = (total*n + 99) / 100
	}
	return max(1, min(n, total))
}

// PipelineError is a problem in .ferry.yml, with the line it is on when known.
type PipelineError struct {
	Line    int
	Message string
}

func (e *PipelineError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s line %d: %s", PipelineFile, e.Line, e.Message)
	}
	return fmt.Sprintf("%s: %s", PipelineFile, e.Message)
}

// ParsePipeline reads and checks a .ferry.yml. Its errors are *PipelineError values that name
// the line and the reason.
func ParsePipeline(data []byte) (*Pipeline, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, yamlError(err)
	}
	var p Pipeline
	if err := root.Decode(&p); err != nil {
		return nil, yamlError(err)
	}
	if err := rejectUnknownKeys(&root); err != nil {
		return nil, err
	}
	if err := p.validate(&root); err != nil {
		return nil, err
	}
	return &p, nil
}

var yamlLine = func(msg string) (int, string) {
	// yaml.v3 says "yaml: line 3: did not find expected key"; keep the line apart.
	rest, ok := strings.CutPrefix(msg, "yaml: line ")
	if !ok {
		return 0, strings.TrimPrefix(msg, "yaml: ")
	}
	num, text, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, strings.TrimPrefix(msg, "yaml: ")
	}
	return n, text
}

func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		line, text := yamlLine("yaml: " + te.Errors[0])
		return &PipelineError{Line: line, Message: text}
	}
	if err.Error() == "EOF" {
		return &PipelineError{Message: "the file is empty"}
	}
	line, text := yamlLine(err.Error())
	return &PipelineError{Line: line, Message: text}
}

// known lists the keys each mapping of .ferry.yml may hold, so a typo is an error, not a silent default.
var known = map[string][]string{
	"":                {"build", "deploy", "trigger"},
	"build":           {"script", "artifact", "timeout", "env"},
	"deploy":          {"path", "keep_releases", "stop", "start", "health", "strategy", "config", "hooks"},
	"deploy.config[]": {"template", "path", "mode"},
	"deploy.hooks":    {"once", "before_stop", "after_switch", "after_start", "after_success", "on_failure"},
	"deploy.stop":     {"command", "pid_file", "grace"},
	"deploy.health":   {"http", "command", "timeout"},
	"deploy.strategy": {"kind", "batch", "concurrency", "continue_on_failure"},
	"trigger":         {"keyword", "branches", "tags", "deploy"},
}

func rejectUnknownKeys(root *yaml.Node) error {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	return checkKeys(root.Content[0], "")
}

func checkKeys(n *yaml.Node, at string) error {
	if _, ok := known[at+"[]"]; ok && n.Kind == yaml.SequenceNode {
		for _, item := range n.Content { // each item is a mapping checked as at[]
			if err := checkKeys(item, at+"[]"); err != nil {
				return err
			}
		}
		return nil
	}
	allowed, ok := known[at]
	if !ok || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		found := false
		for _, a := range allowed {
			found = found || a == k.Value
		}
		if !found {
			where := at
			if where == "" {
				where = "the top level"
			}
			return &PipelineError{Line: k.Line, Message: fmt.Sprintf("unknown key %q in %s (allowed: %s)", k.Value, where, strings.Join(allowed, ", "))}
		}
		child := k.Value
		if at != "" {
			child = at + "." + k.Value
		}
		if err := checkKeys(n.Content[i+1], child); err != nil {
			return err
		}
	}
	return nil
}

// lineOf finds the line of a dotted key in the document, or 0.
func lineOf(root *yaml.Node, dotted string) int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return 0
	}
	n := root.Content[0]
	line := 0
	for _, part := range strings.Split(dotted, ".") {
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line, next = n.Content[i].Line, n.Content[i+1]
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

func (p *Pipeline) validate(root *yaml.Node) error {
	fail := func(key, format string, args ...any) error {
		return &PipelineError{Line: lineOf(root, key), Message: key + ": " + fmt.Sprintf(format, args...)}
	}
	if len(p.Build.Script) == 0 {
		return fail("build.script", "at least one command is needed")
	}
	if p.Build.Artifact == "" {
		return fail("build.artifact", "name the file or directory the build makes")
	}
	if err := CheckRelativePath(p.Build.Artifact); err != nil {
		return fail("build.artifact", "%v", err)
	}
	if p.Build.Timeout < 0 {
		return fail("build.timeout", "must not be negative")
	}
	if p.Deploy.Path != "" && (!path.IsAbs(p.Deploy.Path) || path.Clean(p.Deploy.Path) == "/") {
		return fail("deploy.path", "%q must be an absolute directory other than /", p.Deploy.Path)
	}
	if p.Deploy.KeepReleases < 0 {
		return fail("deploy.keep_releases", "must not be negative")
	}
	if pf := p.Deploy.Stop.PidFile; pf != "" {
		if err := CheckRelativePath(pf); err != nil && !path.IsAbs(pf) {
			return fail("deploy.stop.pid_file", "%v", err)
		}
	}
	if h := p.Deploy.Health.HTTP; h != "" && !strings.HasPrefix(h, "http://") && !strings.HasPrefix(h, "https://") {
		return fail("deploy.health.http", "%q must be an http:// or https:// URL", h)
	}
	if err := validateConfig(p.Deploy.Config); err != nil {
		return fail("deploy.config", "%v", err)
	}
	if err := p.Deploy.Strategy.Validate(); err != nil {
		return fail("deploy.strategy", "%s", ErrorMessage(err))
	}
	if p.Trigger != nil {
		if err := p.Trigger.Validate(); err != nil {
			return fail("trigger", "%s", ErrorMessage(err))
		}
	}
	return nil
}

// CheckRelativePath rejects a path that is absolute or climbs out of its directory with "..".
func CheckRelativePath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if path.IsAbs(p) || strings.HasPrefix(p, "\\") {
		return fmt.Errorf("%q must be relative to the checkout", p)
	}
	clean := path.Clean(p)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("%q leaves the checkout", p)
	}
	return nil
}

// Defaults used where .ferry.yml says nothing.
const (
	DefaultBuildTimeout = 20 * time.Minute
	DefaultKeepReleases = 5
	DefaultStopGrace    = 10 * time.Second
	DefaultHealthWait   = 60 * time.Second
)

// StringList is a YAML value that may be one string or a list of strings.
type StringList []string

// UnmarshalYAML accepts "cmd" as well as ["cmd1", "cmd2"].
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = StringList{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*l = list
	return nil
}

// Duration is a time.Duration written as "10s", "20m" or "1h30m" in YAML and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML reads "10s"-style durations.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration such as 30s or 10m", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as "10s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes d as "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "10s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s or 10m", s)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return errors.New("want a duration such as \"30s\"")
	}
	*d = Duration(time.Duration(secs * float64(time.Second)))
	return nil
}
