package store

import "time"

// This file holds the types of the job side of the store: webhook events, builds, versions,
// deployments with their host steps, instances, log lines and the outbox that tells the
// notifier what happened. The builds and deployments tables are the job queue.

// Log kinds: the job a log line belongs to.
const (
	JobBuild      = "build"
	JobDeployment = "deployment"
)

// Build statuses.
const (
	BuildPending   = "pending"
	BuildRunning   = "running"
	BuildSuccess   = "success"
	BuildFailed    = "failed"
	BuildTimeout   = "timeout"
	BuildCanceled  = "canceled"
	BuildDuplicate = "duplicate" // the commit was built before; Version names the existing version
)

// Deployment statuses.
const (
	DeploymentQueued   = "queued"
	DeploymentRunning  = "running"
	DeploymentSuccess  = "success"
	DeploymentFailed   = "failed"
	DeploymentCanceled = "canceled"
)

// Deployment statuses of change control: DeploymentAwaitingApproval waits for enough
// approvals, DeploymentScheduled for its time or for a freeze to end (both come before queued);
// DeploymentRejected is final (rejected by a person, or nobody approved it in time).
const (
	DeploymentAwaitingApproval = "awaiting_approval"
	DeploymentScheduled        = "scheduled"
	DeploymentRejected         = "rejected"
)

// Host step statuses. The finished ones match the deploy package's HostResult.Status.
const (
	HostWaiting   = "waiting"
	HostRunning   = "running"
	HostSucceeded = "succeeded"
	HostFailed    = "failed"
	HostCanceled  = "canceled"
	HostSkipped   = "skipped"
)

// Event decisions: what ferry did with a webhook.
const (
	EventBuild = "build" // a build was queued (BuildID)
	EventSkip  = "skip"  // nothing matched; Reason says why
)

// Outbox events, the names channels subscribe to.
const (
	OutboxBuildSucceeded      = "build.succeeded"
	OutboxBuildFailed         = "build.failed" // failed or timeout
	OutboxDeploymentStarted   = "deployment.started"
	OutboxDeploymentSucceeded = "deployment.succeeded"
	OutboxDeploymentFailed    = "deployment.failed"
	OutboxDeploymentCanceled  = "deployment.canceled"
	// Change control: a deployment waits for approval, was approved (by enough people), or was
	// rejected (by a person, or because nobody approved it in time).
	OutboxDeploymentAwaitingApproval = "deployment.awaiting_approval"
	OutboxDeploymentApproved         = "deployment.approved"
	OutboxDeploymentRejected         = "deployment.rejected"
)

// Event is one webhook delivery as received, and what ferry decided about it.
type Event struct {
	ID          int64     `db:"id" json:"id"`
	ProjectID   *int64    `db:"project_id" json:"-"`
	Project     string    `db:"project" json:"project"` // name; "" when no project matched
	DeliveryKey *string   `db:"delivery_key" json:"delivery_key,omitempty"`
	Kind        string    `db:"kind" json:"kind"` // push or tag_push
	Ref         string    `db:"ref" json:"ref"`
	SHA         string    `db:"sha" json:"sha"`
	Author      string    `db:"author" json:"author"`
	Message     string    `db:"message" json:"message"`
	Decision    string    `db:"decision" json:"decision"`
	Reason      string    `db:"reason" json:"reason"`
	BuildID     *int64    `db:"build_id" json:"build_id,omitempty"`
	ReceivedAt  time.Time `db:"received_at" json:"received_at"`
}

// Build is one run of a project's build script on one commit.
type Build struct {
	ID              int64      `db:"id" json:"id"`
	ProjectID       int64      `db:"project_id" json:"-"`
	Project         string     `db:"project" json:"project"`
	Number          int        `db:"number" json:"number"`
	Status          string     `db:"status" json:"status"`
	Ref             string     `db:"ref" json:"ref"`
	Branch          string     `db:"branch" json:"branch"`
	Tag             string     `db:"tag" json:"tag"`
	SHA             string     `db:"sha" json:"sha"`
	CommitTitle     string     `db:"commit_title" json:"commit_title"`
	CommitAuthor    string     `db:"commit_author" json:"commit_author"`
	CommitURL       string     `db:"commit_url" json:"commit_url"`
	TriggeredBy     string     `db:"triggered_by" json:"triggered_by"`
	VersionID       *int64     `db:"version_id" json:"version_id,omitempty"`
	Version         string     `db:"version" json:"version"` // name; "" until success or duplicate
	Error           string     `db:"error" json:"error"`
	QueuedAt        time.Time  `db:"queued_at" json:"queued_at"`
	StartedAt       *time.Time `db:"started_at" json:"started_at,omitempty"`
	FinishedAt      *time.Time `db:"finished_at" json:"finished_at,omitempty"`
	Attempts        int        `db:"attempts" json:"attempts"`
	CancelRequested bool       `db:"cancel_requested" json:"cancel_requested"`

	// Source is how the build was asked for: BuildSourcePush (a GitLab webhook) or
	// BuildSourceAPI (a person, RequestedByID). It decides whether the build may deploy to a
	// protected environment by itself.
	Source        string `db:"source" json:"source"`
	RequestedByID *int64 `db:"requested_by" json:"-"`
}

// How a build was asked for (Build.Source). The store sets it from the way the build came
// in: RecordEvent (a webhook) or CreateBuild (a person, the context's actor).
const (
	BuildSourcePush = "push"
	BuildSourceAPI  = "api"
)

// NewBuild is what a webhook or a person asks to build. SHA is required; Ref is the branch or
// tag name as pushed.
type NewBuild struct {
	ProjectID    int64
	Ref          string
	Branch       string
	Tag          string
	SHA          string
	CommitTitle  string
	CommitAuthor string
	CommitURL    string
	TriggeredBy  string // "push by alice", "api by bob", ...
}

// BuildFilter selects builds; zero fields select all. Builds list newest first.
type BuildFilter struct {
	ProjectID int64
	Status    []string
	Limit     int   // 0 means 50
	BeforeID  int64 // for paging: only builds with a smaller id
}

// BuildResult ends a build. Status is success, failed, timeout, canceled or duplicate.
type BuildResult struct {
	Status string
	Error  string // in words, for a build that did not succeed
	// Version is the artifact of a successful build, created in the same transaction.
	Version *NewVersion
	// VersionID points a duplicate build at the version its commit already has.
	VersionID *int64
	// Deploy queues deployments of the new version (the trigger's branch → environment
	// mapping) in the same transaction; VersionID of each is filled in by FinishBuild.
	Deploy []NewDeployment
}

// Version is the kept artifact of a successful build.
type Version struct {
	ID        int64      `db:"id" json:"id"`
	ProjectID int64      `db:"project_id" json:"-"`
	Project   string     `db:"project" json:"project"`
	BuildID   int64      `db:"build_id" json:"build_id"`
	Name      string     `db:"name" json:"name"`
	SHA       string     `db:"sha" json:"sha"`
	Ref       string     `db:"ref" json:"ref"`
	SHA256    string     `db:"sha256" json:"sha256"`
	Size      int64      `db:"size" json:"size"`
	Path      string     `db:"path" json:"-"`     // local tar.gz in the artifact store
	Pipeline  string     `db:"pipeline" json:"-"` // the commit's .ferry.yml text
	CreatedAt time.Time  `db:"created_at" json:"created_at"`
	DeletedAt *time.Time `db:"deleted_at" json:"deleted_at,omitempty"` // set by retention
	// ArtifactID is the artifact kept in the database (PostgreSQL); nil on SQLite, for
	// versions made before artifacts were kept there, and once retention removed it.
	ArtifactID *int64 `db:"artifact_id" json:"-"`
}

// NewVersion is the artifact a successful build made.
type NewVersion struct {
	Name     string
	SHA      string
	Ref      string
	SHA256   string
	Size     int64
	Path     string
	Pipeline string
	// ArtifactID is the artifact kept in the database (store.CreateArtifact), complete and with
	// this size and sha256; nil when the artifact is a file only (SQLite).
	ArtifactID *int64
}

// Deployment puts one version on some or all hosts of one environment.
type Deployment struct {
	ID              int64      `db:"id" json:"id"`
	ProjectID       int64      `db:"project_id" json:"-"`
	Project         string     `db:"project" json:"project"`
	EnvironmentID   int64      `db:"environment_id" json:"-"`
	Environment     string     `db:"environment" json:"environment"`
	VersionID       int64      `db:"version_id" json:"-"`
	Version         string     `db:"version" json:"version"`
	Status          string     `db:"status" json:"status"`
	Strategy        Strategy   `db:"-" json:"strategy"`
	TriggeredBy     string     `db:"triggered_by" json:"triggered_by"`
	BuildID         *int64     `db:"build_id" json:"build_id,omitempty"`
	Error           string     `db:"error" json:"error"`
	QueuedAt        time.Time  `db:"queued_at" json:"queued_at"`
	StartedAt       *time.Time `db:"started_at" json:"started_at,omitempty"`
	FinishedAt      *time.Time `db:"finished_at" json:"finished_at,omitempty"`
	Attempts        int        `db:"attempts" json:"attempts"`
	CancelRequested bool       `db:"cancel_requested" json:"cancel_requested"`
	// RequestedBy is who asked for it ("ferry" for an automatic deployment after a build).
	RequestedBy   string `db:"requested_by" json:"requested_by"`
	RequestedByID *int64 `db:"requested_by_id" json:"-"`
	// ScheduledAt is when it should run; nil means as soon as its gates let it.
	ScheduledAt       *time.Time `db:"scheduled_at" json:"scheduled_at"`
	ApprovalsRequired int        `db:"approvals_required" json:"approvals_required"`
	// ApprovalExpiresAt is when a deployment still awaiting approval ends as rejected.
	ApprovalExpiresAt *time.Time `db:"approval_expires_at" json:"approval_expires_at,omitempty"`
	// Approvals are the decisions on it, oldest first, filled in by GetDeployment.
	Approvals []*Approval `db:"-" json:"approvals"`
	// FrozenBy names the freeze window a due deployment waits on; "" when none.
	FrozenBy string `db:"frozen_by" json:"frozen_by"`
	// OverrideReason is why an administrator deployed during a freeze; "" when nobody did.
	OverrideReason string `db:"override_reason" json:"override_reason"`
	// WaitingFor says, for a queued deployment, what it waits for ("deployment 12 to staging"),
	// filled in by GetDeployment.
	WaitingFor string `db:"-" json:"waiting_for,omitempty"`
	// Hosts are the host steps in rollout order, filled in by GetDeployment.
	Hosts []*HostStep `db:"-" json:"hosts"`
}

// HostStep is how one deployment goes on one host.
type HostStep struct {
	DeploymentID int64      `db:"deployment_id" json:"-"`
	HostID       int64      `db:"host_id" json:"-"`
	Host         string     `db:"host_name" json:"host"`
	Position     int        `db:"position" json:"position"`
	Status       string     `db:"status" json:"status"`
	Step         string     `db:"step" json:"step"`
	BytesSent    int64      `db:"bytes_sent" json:"bytes_sent"`
	BytesTotal   int64      `db:"bytes_total" json:"bytes_total"`
	Error        string     `db:"error" json:"error"`
	StartedAt    *time.Time `db:"started_at" json:"started_at,omitempty"`
	FinishedAt   *time.Time `db:"finished_at" json:"finished_at,omitempty"`
	// PreviousRecorded says the worker recorded, before stopping anything, the release the
	// host ran: PreviousRelease ("" when none) and its version (nil when ferry does not know
	// it). A worker taking the deployment over goes back to that release, not to current.
	PreviousRecorded  bool   `db:"previous_recorded" json:"-"`
	PreviousRelease   string `db:"previous_release" json:"previous_release,omitempty"`
	PreviousVersionID *int64 `db:"previous_version_id" json:"-"`
}

// NewDeployment asks for a version on an environment's hosts.
type NewDeployment struct {
	ProjectID     int64
	EnvironmentID int64
	VersionID     int64
	// Hosts is a subset of the environment's hosts by id, in rollout order; empty means all of
	// them in the environment's order.
	Hosts []int64
	// Strategy overrides the version's .ferry.yml strategy when not nil.
	Strategy    *Strategy
	TriggeredBy string
	BuildID     *int64
	// ScheduledAt asks for the deployment to run at that time (which must be in the future).
	ScheduledAt *time.Time
	// OverrideFreeze deploys during a freeze; only an administrator may, with OverrideReason.
	OverrideFreeze bool
	OverrideReason string
	// askedBy is the person who asked for the build that queues this deployment by itself,
	// the deployment's requester for the four-eyes rule (set by queueAutoDeploys).
	askedBy *Actor
}

// DeploymentFilter selects deployments; zero fields select all. Newest first.
type DeploymentFilter struct {
	ProjectID     int64
	EnvironmentID int64
	Status        []string
	Limit         int // 0 means 50
	BeforeID      int64
}

// HostStepUpdate changes the fields of a host step that are not nil.
type HostStepUpdate struct {
	Status     *string
	Step       *string
	BytesSent  *int64
	BytesTotal *int64
	Error      *string
	Started    bool // set started_at to now
	Finished   bool // set finished_at to now
}

// Instance is what runs on one host for one project now.
type Instance struct {
	ProjectID     int64     `db:"project_id" json:"-"`
	HostID        int64     `db:"host_id" json:"-"`
	Host          string    `db:"host" json:"host"`
	EnvironmentID *int64    `db:"environment_id" json:"-"`
	Environment   string    `db:"environment" json:"environment"`
	Version       string    `db:"version" json:"version"`
	Previous      string    `db:"previous" json:"previous"`
	Releases      []string  `db:"-" json:"releases"` // kept on the host, newest first
	Status        string    `db:"status" json:"status"`
	DeploymentID  *int64    `db:"deployment_id" json:"deployment_id,omitempty"`
	Since         time.Time `db:"since" json:"since"`
}

// LogLine is one line of a job's log.
type LogLine struct {
	Seq    int64     `db:"seq" json:"seq"`
	At     time.Time `db:"at" json:"at"`
	Stream string    `db:"stream" json:"stream"` // stdout, stderr or ferry
	Host   string    `db:"host" json:"host,omitempty"`
	Text   string    `db:"text" json:"text"`
}

// OutboxEntry tells the notifier that something happened to a job. Entries are written in the
// same transaction as the change they report, so none is lost on a crash.
type OutboxEntry struct {
	ID        int64     `db:"id"`
	Event     string    `db:"event"` // one of the Outbox* names
	ProjectID int64     `db:"project_id"`
	JobKind   string    `db:"job_kind"` // JobBuild or JobDeployment
	JobID     int64     `db:"job_id"`
	CreatedAt time.Time `db:"created_at"`
}
