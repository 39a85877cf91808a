package store

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// This file holds the types of jobs in BlueKing's sense ("everything is a job"): execution
// accounts, versioned scripts, jobs made of ordered steps, and their runs. They are called
// ScriptJob and JobRun here because "job" already names builds and deployments in jobs.go.

// JobRunLog is the log kind of a job run's log lines. A line's host is "" for the run itself,
// "<step>/" for a step and "<step>/<host>" for a host of a step (step counted from 1).
const JobRunLog = "run"

// Script languages.
const (
	LangShell   = "shell" // /bin/sh
	LangBash    = "bash"
	LangPython3 = "python3"
)

// Job step kinds.
const (
	StepScript     = "script"
	StepDistribute = "distribute"
	StepPause      = "pause"
)

// What a step does when a host fails.
const (
	OnFailureStop     = "stop"     // no further host or step starts; the run fails
	OnFailureContinue = "continue" // the other hosts and steps go on; the run fails at the end
)

// Job run statuses.
const (
	RunQueued  = "queued"
	RunRunning = "running"
	RunWaiting = "waiting" // at a pause step, until someone continues or stops it
	// RunAwaitingApproval: the run reaches an environment that needs approvals, and waits
	// for enough people other than the one it acts for.
	RunAwaitingApproval = "awaiting_approval"
	RunSuccess          = "success"
	RunFailed           = "failed"
	RunCanceled         = "canceled"
)

// Job run step statuses (a host of a step uses the host step statuses of jobs.go).
const (
	StepWaiting   = "waiting"
	StepRunning   = "running"
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
	StepCanceled  = "canceled"
	StepSkipped   = "skipped"
	StepPaused    = "paused" // a pause step that waits for Continue
)

// Limits of job inputs.
const (
	MaxScriptBytes  = 64 << 10
	MaxJobSteps     = 50
	MaxParamBytes   = 8 << 10
	MaxJobFileBytes = 64 << 20
	DefaultStepTime = 10 * time.Minute
	MaxStepTime     = 24 * time.Hour
)

var paramNameRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,63}$`)

// reservedParams may not be set by a job: the shell or ferry itself gives them their meaning.
var reservedParams = map[string]bool{"PATH": true, "HOME": true, "SHELL": true, "USER": true, "LOGNAME": true, "IFS": true,
	"ENV": true, "BASH_ENV": true, "LD_PRELOAD": true, "LD_LIBRARY_PATH": true, "PYTHONPATH": true, "PYTHONSTARTUP": true, "PS4": true}

// ValidateParamName checks a parameter name: an upper-case environment variable name that
// is not one the shell gives a meaning to, and does not start with FERRY_.
func ValidateParamName(field, name string) error {
	switch {
	case !paramNameRE.MatchString(name):
		return Errorf(EINVALID, "%s: %q must be an upper-case environment variable name such as VERSION or COUNT", field, truncate(name, 80))
	case reservedParams[name] || strings.HasPrefix(name, "FERRY_"):
		return Errorf(EINVALID, "%s: %s is reserved; choose another name", field, name)
	}
	return nil
}

// validParamValue refuses what no environment variable can hold.
func validParamValue(field, v string) error {
	switch {
	case len(v) > MaxParamBytes:
		return Errorf(EINVALID, "%s: at most %d bytes", field, MaxParamBytes)
	case strings.IndexByte(v, 0) >= 0:
		return Errorf(EINVALID, "%s: must not hold a NUL byte", field)
	}
	return nil
}

// ExecAccount is a Unix user a job step runs as on hosts, with the key that logs in as it.
type ExecAccount struct {
	ID        int64  `db:"id" json:"id"`
	ProjectID int64  `db:"project_id" json:"-"`
	Name      string `db:"name" json:"name"`
	User      string `db:"username" json:"user"`
	// PrivateKey is sealed at rest and never shown; HasKey says whether there is one.
	PrivateKey string    `db:"-" json:"-"`
	HasKey     bool      `db:"-" json:"has_key"`
	CreatedAt  time.Time `db:"created_at" json:"created_at"`
	UpdatedAt  time.Time `db:"updated_at" json:"updated_at"`
}

// Validate checks an account's name and Unix user name.
func (a *ExecAccount) Validate() error {
	if err := ValidateName("name", a.Name); err != nil {
		return err
	}
	if !unixUserRE.MatchString(a.User) {
		return Errorf(EINVALID, "user: %q is not a Unix user name (lower-case letters, digits, '_', '.', '-')", truncate(a.User, 40))
	}
	return nil
}

// ScriptParam is a parameter of a script or a job: an environment variable the steps get.
type ScriptParam struct {
	Name        string `json:"name"`
	Default     string `json:"default"`
	Description string `json:"description,omitempty"`
}

func validateParams(field string, ps []ScriptParam) error {
	seen := map[string]bool{}
	for i, p := range ps {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := ValidateParamName(f+".name", p.Name); err != nil {
			return err
		}
		if seen[p.Name] {
			return Errorf(EINVALID, "%s.name: %s is named twice", f, p.Name)
		}
		seen[p.Name] = true
		if err := validParamValue(f+".default", p.Default); err != nil {
			return err
		}
	}
	return nil
}

// Script is a saved, versioned piece of code (an atom of a job). Version, Language, Body and
// Params are those of its latest version unless it was read at another one.
type Script struct {
	ID        int64         `db:"id" json:"id"`
	ProjectID int64         `db:"project_id" json:"-"`
	Name      string        `db:"name" json:"name"`
	Version   int           `db:"version" json:"version"`
	Language  string        `db:"language" json:"language"`
	Body      string        `db:"body" json:"body"`
	Params    []ScriptParam `db:"-" json:"params"`
	CreatedBy string        `db:"created_by" json:"created_by"`
	CreatedAt time.Time     `db:"created_at" json:"created_at"`
	UpdatedAt time.Time     `db:"updated_at" json:"updated_at"`
}

// Validate checks a script's name, language, body and parameters.
func (s *Script) Validate() error {
	if err := ValidateName("name", s.Name); err != nil {
		return err
	}
	switch s.Language {
	case LangShell, LangBash, LangPython3:
	default:
		return Errorf(EINVALID, "language: %q is not one of shell, bash, python3", truncate(s.Language, 40))
	}
	switch {
	case strings.TrimSpace(s.Body) == "":
		return Errorf(EINVALID, "body: required")
	case len(s.Body) > MaxScriptBytes:
		return Errorf(EINVALID, "body: at most %d bytes", MaxScriptBytes)
	case strings.IndexByte(s.Body, 0) >= 0:
		return Errorf(EINVALID, "body: must not hold a NUL byte")
	}
	return validateParams("params", s.Params)
}

// JobTarget names the hosts of a step: the hosts of an environment of the job's project, a
// list of hosts, or the hosts with a label. Exactly one is set. Hosts of a list or label must
// belong to an environment of the project.
type JobTarget struct {
	Environment string   `json:"environment,omitempty"`
	Hosts       []string `json:"hosts,omitempty"`
	Label       string   `json:"label,omitempty"`
}

func (t JobTarget) validate(field string) error {
	n := 0
	for _, set := range []bool{t.Environment != "", len(t.Hosts) > 0, t.Label != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return Errorf(EINVALID, "%s: name exactly one of environment, hosts or label", field)
	}
	return nil
}

// JobStepDef is one step of a job as its author wrote it.
type JobStepDef struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // script, distribute or pause
	// Script and ScriptVersion (0: the latest when the run starts) for a script step.
	Script        string `json:"script,omitempty"`
	ScriptVersion int    `json:"script_version,omitempty"`
	// Params are values of the script's parameters for this step.
	Params map[string]string `json:"params,omitempty"`
	// Account and Target: who the step runs as, and where (script and distribute steps).
	Account string    `json:"account,omitempty"`
	Target  JobTarget `json:"target"`
	// Timeout bounds the step on one host; default 10m.
	Timeout Duration `json:"timeout,omitempty"`
	// Version (a kept version of the project, or "$NAME" for the job parameter NAME) or File
	// (an uploaded file) is put under Path, for a distribute step.
	Version string `json:"version,omitempty"`
	File    string `json:"file,omitempty"`
	Path    string `json:"path,omitempty"`
	// Batch is how many hosts run at once; 0 means all at once.
	Batch int `json:"batch,omitempty"`
	// OnFailure is stop (the default) or continue.
	OnFailure string `json:"on_failure,omitempty"`
}

// Validate checks a step as far as it can without the store.
func (s *JobStepDef) Validate(field string) error {
	if s.Name == "" || len(s.Name) > 100 || strings.ContainsAny(s.Name, "\r\n") {
		return Errorf(EINVALID, "%s.name: one line of 1-100 characters", field)
	}
	if s.OnFailure == "" {
		s.OnFailure = OnFailureStop
	}
	if s.OnFailure != OnFailureStop && s.OnFailure != OnFailureContinue {
		return Errorf(EINVALID, "%s.on_failure: %q is not stop or continue", field, truncate(s.OnFailure, 40))
	}
	if s.Batch < 0 {
		return Errorf(EINVALID, "%s.batch: 0 (all hosts at once) or more", field)
	}
	if s.Timeout < 0 || s.Timeout.D() > MaxStepTime {
		return Errorf(EINVALID, "%s.timeout: between 1s and 24h", field)
	}
	for k, v := range s.Params {
		if err := ValidateParamName(field+".params", k); err != nil {
			return err
		}
		if err := validParamValue(field+".params."+k, v); err != nil {
			return err
		}
	}
	switch s.Kind {
	case StepPause:
		return nil
	case StepScript:
		if err := ValidateName(field+".script", s.Script); err != nil {
			return err
		}
	case StepDistribute:
		if (s.Version == "") == (s.File == "") {
			return Errorf(EINVALID, "%s: a distribute step names a version or a file", field)
		}
		if !strings.HasPrefix(s.Path, "/") || strings.Contains(s.Path, "..") || strings.ContainsAny(s.Path, "\x00\r\n") {
			return Errorf(EINVALID, "%s.path: an absolute path on the hosts without '..'", field)
		}
	default:
		return Errorf(EINVALID, "%s.kind: %q is not script, distribute or pause", field, truncate(s.Kind, 40))
	}
	if err := ValidateName(field+".account", s.Account); err != nil {
		return err
	}
	return s.Target.validate(field + ".target")
}

// ScriptJob is a job: ordered steps with parameters, run on demand, on a schedule or by
// another system with its trigger token.
type ScriptJob struct {
	ID          int64         `db:"id" json:"id"`
	ProjectID   int64         `db:"project_id" json:"-"`
	Project     string        `db:"project" json:"project"`
	Name        string        `db:"name" json:"name"`
	Description string        `db:"description" json:"description"`
	Params      []ScriptParam `db:"-" json:"params"`
	Steps       []JobStepDef  `db:"-" json:"steps"`
	// TriggerTokenPrefix starts the job's trigger token ("" when it has none); only its hash
	// is stored.
	TriggerTokenPrefix string    `db:"trigger_token_prefix" json:"trigger_token_prefix"`
	CreatedAt          time.Time `db:"created_at" json:"created_at"`
	UpdatedAt          time.Time `db:"updated_at" json:"updated_at"`
}

// Validate checks a job's name, parameters and steps.
func (j *ScriptJob) Validate() error {
	if err := ValidateName("name", j.Name); err != nil {
		return err
	}
	if len(j.Description) > 2000 {
		return Errorf(EINVALID, "description: at most 2000 characters")
	}
	if err := validateParams("params", j.Params); err != nil {
		return err
	}
	if len(j.Steps) == 0 || len(j.Steps) > MaxJobSteps {
		return Errorf(EINVALID, "steps: 1 to %d steps", MaxJobSteps)
	}
	for i := range j.Steps {
		if err := j.Steps[i].Validate(fmt.Sprintf("steps[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

// JobFile is a file uploaded to ferry for distribute steps.
type JobFile struct {
	ID        int64     `db:"id" json:"id"`
	ProjectID int64     `db:"project_id" json:"-"`
	Name      string    `db:"name" json:"name"`
	SHA256    string    `db:"sha256" json:"sha256"`
	Size      int64     `db:"size" json:"size"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
