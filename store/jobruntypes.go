package store

import "time"

// The types of job runs and schedules.

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
	// ApprovalsRequired is how many people other than the requester must approve the run
	// (the most any environment it reaches asks for); Approvals are the decisions so far.
	ApprovalsRequired int            `db:"approvals_required" json:"approvals_required"`
	RequestedByID     *int64         `db:"requested_by_id" json:"-"`
	Approvals         []*RunApproval `db:"-" json:"approvals"`
	// ApprovalExpiresAt is when a run awaiting approval ends as canceled (FERRY_APPROVAL_EXPIRY
	// after it began to wait).
	ApprovalExpiresAt *time.Time `db:"approval_expires_at" json:"approval_expires_at,omitempty"`
	// Plan is what the worker runs; not shown (it holds the scripts' bodies).
	Plan []RunStepPlan `db:"-" json:"-"`
}

// RunApproval is one person's decision on a run awaiting approval.
type RunApproval struct {
	UserID   int64     `db:"user_id" json:"-"`
	User     string    `db:"user_name" json:"user"`
	Decision string    `db:"decision" json:"decision"` // approved or rejected
	Comment  string    `db:"comment" json:"comment"`
	At       time.Time `db:"at" json:"at"`
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
