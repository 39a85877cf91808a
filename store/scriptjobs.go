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
	RunQueued   = "queued"
	RunRunning  = "running"
	RunWaiting  = "waiting" // at a pause step, until someone continues or stops it
	RunSuccess  = "success"
	RunFailed   = "failed"
	RunCanceled = "canceled"
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

// RunStepPlan is a step of a run as it was resolved when the run was created: the script's
// body at its version, the hosts, the environment values. Runs keep it, so editing a job or
// a script never changes a run.
type RunStepPlan struct {
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Script        string            `json:"script,omitempty"`
	ScriptVersion int               `json:"script_version,omitempty"`
	Language      string            `json:"language,omitempty"`
	Body          string            `json:"body,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	AccountID     int64             `json:"account_id,omitempty"`
	Account       string            `json:"account,omitempty"`
	Timeout       Duration          `json:"timeout,omitempty"`
	VersionID     int64             `json:"version_id,omitempty"`
	Version       string            `json:"version,omitempty"`
	FileID        int64             `json:"file_id,omitempty"`
	File          string            `json:"file,omitempty"`
	Path          string            `json:"path,omitempty"`
	Batch         int               `json:"batch,omitempty"`
	OnFailure     string            `json:"on_failure,omitempty"`
}

// JobRun is one execution of a job.
type JobRun struct {
	ID          int64             `db:"id" json:"id"`
	JobID       int64             `db:"job_id" json:"job_id"`
	ProjectID   int64             `db:"project_id" json:"-"`
	Project     string            `db:"project" json:"project"`
	Job         string            `db:"job_name" json:"job"`
	Status      string            `db:"status" json:"status"`
	Params      map[string]string `db:"-" json:"params"`
	NextStep    int               `db:"next_step" json:"-"`
	TriggeredBy string            `db:"triggered_by" json:"triggered_by"`
	ScheduleID  *int64            `db:"schedule_id" json:"schedule_id,omitempty"`
	Error       string            `db:"error" json:"error,omitempty"`
	QueuedAt    time.Time         `db:"queued_at" json:"queued_at"`
	StartedAt   *time.Time        `db:"started_at" json:"started_at,omitempty"`
	FinishedAt  *time.Time        `db:"finished_at" json:"finished_at,omitempty"`
	Attempts    int               `db:"attempts" json:"attempts"`
	Cancel      bool              `db:"cancel_requested" json:"cancel_requested"`
	Steps       []*JobRunStep     `db:"-" json:"steps"`
	// Plan is what the worker runs; not shown (it holds the scripts' bodies).
	Plan []RunStepPlan `db:"-" json:"-"`
}

// Ended reports whether the run has a final status.
func (r *JobRun) Ended() bool {
	return r.Status == RunSuccess || r.Status == RunFailed || r.Status == RunCanceled
}

// JobRunStep is one step of a run with its hosts.
type JobRunStep struct {
	RunID      int64         `db:"run_id" json:"-"`
	Position   int           `db:"position" json:"position"` // from 1
	Name       string        `db:"name" json:"name"`
	Kind       string        `db:"kind" json:"kind"`
	Status     string        `db:"status" json:"status"`
	Error      string        `db:"error" json:"error,omitempty"`
	StartedAt  *time.Time    `db:"started_at" json:"started_at,omitempty"`
	FinishedAt *time.Time    `db:"finished_at" json:"finished_at,omitempty"`
	Hosts      []*JobRunHost `db:"-" json:"hosts"`
}

// JobRunHost is how one host did in one step of a run.
type JobRunHost struct {
	RunID      int64      `db:"run_id" json:"-"`
	Position   int        `db:"position" json:"-"`
	HostID     int64      `db:"host_id" json:"host_id"`
	Host       string     `db:"host_name" json:"host"`
	Order      int        `db:"host_order" json:"-"`
	Status     string     `db:"status" json:"status"`
	ExitCode   *int       `db:"exit_code" json:"exit_code"`
	Error      string     `db:"error" json:"error,omitempty"`
	StartedAt  *time.Time `db:"started_at" json:"started_at,omitempty"`
	FinishedAt *time.Time `db:"finished_at" json:"finished_at,omitempty"`
	// DurationMS is how long the host took, once it finished.
	DurationMS *int64 `db:"-" json:"duration_ms,omitempty"`
}

// JobSchedule runs a job on a cron expression in a time zone with fixed parameter values.
type JobSchedule struct {
	ID        int64             `db:"id" json:"id"`
	ProjectID int64             `db:"project_id" json:"-"`
	JobID     int64             `db:"job_id" json:"-"`
	Job       string            `db:"job_name" json:"job"`
	Cron      string            `db:"cron" json:"cron"`
	TimeZone  string            `db:"time_zone" json:"time_zone"`
	Params    map[string]string `db:"-" json:"params"`
	Enabled   bool              `db:"enabled" json:"enabled"`
	NextRunAt *time.Time        `db:"next_run_at" json:"next_run_at,omitempty"`
	LastRunID *int64            `db:"last_run_id" json:"last_run_id,omitempty"`
	CreatedBy string            `db:"created_by" json:"created_by"`
	// CreatedByID is the user whose rights the schedule's runs use (0 when removed).
	CreatedByID int64     `db:"-" json:"-"`
	CreatedAt   time.Time `db:"created_at" json:"created_at"`
	UpdatedAt   time.Time `db:"updated_at" json:"updated_at"`
}

// NewJobRun asks for a run of a job.
type NewJobRun struct {
	JobID  int64
	Params map[string]string
	// Hosts, when not empty, limits every step to these of its hosts (by name).
	Hosts       []string
	TriggeredBy string
	ScheduleID  *int64
	// AsUserID is the user whose rights the run uses: the person asking, the creator of the
	// trigger token or of the schedule. Administrators may run anywhere; members on
	// unprotected environments, and on protected ones with the production right.
	AsUserID int64
}

// RunEnvironment is an environment a run's hosts belong to.
type RunEnvironment struct {
	Name              string `db:"name"`
	Protected         bool   `db:"protected"`
	ApprovalsRequired int    `db:"approvals_required"`
	FreezesJSON       string `db:"freezes"`
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
