package store

import (
	"context"
	"net"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidateName checks a name used in URLs and paths: 1–63 ASCII letters, digits, '.', '_' or '-',
// starting with a letter or digit. field names the input in the error.
func ValidateName(field, name string) error {
	if name == "" {
		return Errorf(EINVALID, "%s: required", field)
	}
	if !nameRE.MatchString(name) {
		return Errorf(EINVALID, "%s: %q must be 1-63 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit", field, truncate(name, 80))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// User is a person or robot that logs in to ferry.
type User struct {
	ID           int64     `db:"id" json:"id"`
	Name         string    `db:"name" json:"name"`
	Email        string    `db:"email" json:"email"`
	PasswordHash string    `db:"password_hash" json:"-"`
	Admin        bool      `db:"admin" json:"admin"`
	CreatedAt    time.Time `db:"created_at" json:"created_at"`
	UpdatedAt    time.Time `db:"updated_at" json:"updated_at"`
}

// Validate checks the user's name and mail address.
func (u *User) Validate() error {
	if err := ValidateName("name", u.Name); err != nil {
		return err
	}
	if u.Email != "" && (!strings.Contains(u.Email, "@") || strings.ContainsAny(u.Email, " \r\n<>,;")) {
		return Errorf(EINVALID, "email: %q is not a mail address", truncate(u.Email, 80))
	}
	return nil
}

// Token is an API token. Its secret is shown once at creation; the store keeps only a hash.
type Token struct {
	ID         int64      `db:"id" json:"id"`
	UserID     int64      `db:"user_id" json:"user_id"`
	Name       string     `db:"name" json:"name"`
	Hash       string     `db:"hash" json:"-"`
	Prefix     string     `db:"prefix" json:"prefix"`
	CreatedAt  time.Time  `db:"created_at" json:"created_at"`
	LastUsedAt *time.Time `db:"last_used_at" json:"last_used_at"`
}

// Session is a browser login. Its id is a secret held in a cookie; the store keeps only a hash.
type Session struct {
	ID        int64     `db:"id" json:"-"`
	Hash      string    `db:"hash" json:"-"`
	UserID    int64     `db:"user_id" json:"-"`
	CSRFToken string    `db:"csrf_token" json:"-"`
	CreatedAt time.Time `db:"created_at" json:"-"`
	ExpiresAt time.Time `db:"expires_at" json:"-"`
}

// Project is one GitLab repository that ferry builds and deploys.
type Project struct {
	ID int64 `db:"id" json:"id"`
	// Name is ferry's short name of the project, used in URLs.
	Name string `db:"name" json:"name"`
	// GitLabPath is the path with namespace, "group/sub/repo", that webhooks name.
	GitLabPath string `db:"gitlab_path" json:"gitlab_path"`
	CloneURL   string `db:"clone_url" json:"clone_url"`
	// WebhookSecret is the X-Gitlab-Token GitLab must send; write-only, stored encrypted.
	WebhookSecret string `db:"-" json:"-"`
	// GitLabToken is this project's own GitLab API token, if any; write-only, stored encrypted.
	GitLabToken  string    `db:"-" json:"-"`
	Trigger      Trigger   `db:"-" json:"trigger"`
	KeepVersions int       `db:"keep_versions" json:"keep_versions"`
	TagTemplate  string    `db:"tag_template" json:"tag_template"`
	CreatedAt    time.Time `db:"created_at" json:"created_at"`
	UpdatedAt    time.Time `db:"updated_at" json:"updated_at"`

	// CloneCredentials is the user info ("oauth2:TOKEN") git gives the http(s) clone URL,
	// which never holds it itself; write-only, stored encrypted (see SplitCloneURL).
	CloneCredentials string `db:"-" json:"-"`
	// WebhookSigningToken is GitLab's webhook signing token ("whsec_" + base64), with which
	// GitLab signs each delivery (Standard Webhooks); when set, an unsigned or badly signed
	// delivery is refused. Write-only, stored encrypted; "" for none.
	WebhookSigningToken string `db:"-" json:"-"`
}

// Validate checks a project's fields.
func (p *Project) Validate() error {
	if err := ValidateName("name", p.Name); err != nil {
		return err
	}
	if err := validateGitLabPath(p.GitLabPath); err != nil {
		return err
	}
	if err := validateCloneURL(p.CloneURL); err != nil {
		return err
	}
	if err := validateCloneCredentials(p); err != nil {
		return err
	}
	if p.KeepVersions < 1 || p.KeepVersions > 10000 {
		return Errorf(EINVALID, "keep_versions: must be between 1 and 10000")
	}
	if len(p.WebhookSecret) > 256 || strings.ContainsAny(p.WebhookSecret, "\r\n") {
		return Errorf(EINVALID, "webhook_secret: must be one line of at most 256 characters")
	}
	if len(p.TagTemplate) > 200 {
		return Errorf(EINVALID, "tag_template: at most 200 characters")
	}
	return p.Trigger.Validate()
}

var gitlabPathRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$`)

func validateGitLabPath(p string) error {
	if p == "" {
		return Errorf(EINVALID, "gitlab_path: required (the project's path with namespace, such as group/app)")
	}
	if len(p) > 255 || !gitlabPathRE.MatchString(p) || strings.Contains(p, "..") {
		return Errorf(EINVALID, "gitlab_path: %q is not a GitLab path such as group/app", truncate(p, 80))
	}
	return nil
}

func validateCloneURL(u string) error {
	if u == "" {
		return Errorf(EINVALID, "clone_url: required")
	}
	ok := strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") ||
		strings.HasPrefix(u, "ssh://") || strings.HasPrefix(u, "git@") || strings.HasPrefix(u, "file://") ||
		strings.HasPrefix(u, "/")
	if !ok || len(u) > 1024 || strings.ContainsAny(u, " \r\n\t") || strings.HasPrefix(u, "-") {
		return Errorf(EINVALID, "clone_url: %q is not a git URL (https://, ssh://, git@host:path, file:// or an absolute path)", truncate(ShownCloneURL(u), 80))
	}
	return nil
}

// Member is a user's right on a project: read, build and deploy to unprotected environments,
// and with Production also to protected ones.
type Member struct {
	ProjectID  int64  `db:"project_id" json:"-"`
	UserID     int64  `db:"user_id" json:"-"`
	UserName   string `db:"user_name" json:"user"`
	Production bool   `db:"production" json:"production"`
}

// Host is an SSH endpoint that releases are deployed to.
type Host struct {
	ID      int64  `db:"id" json:"id"`
	Name    string `db:"name" json:"name"`
	Address string `db:"address" json:"address"`
	Port    int    `db:"port" json:"port"`
	// User is the account ferry logs in as and runs the service as.
	User string `db:"username" json:"user"`
	// PrivateKey is the PEM private key; write-only, stored encrypted.
	PrivateKey string `db:"-" json:"-"`
	// HostKey is the pinned public key, an authorized_keys line; empty until the first
	// connection records it (trust on first use).
	HostKey string `db:"host_key" json:"host_key"`
	// OfferedHostKey is the key the host offered on a first connection that ferry refused
	// (a host in a protected environment is not trusted on first use); see AcceptHostKey.
	OfferedHostKey string    `db:"offered_host_key" json:"-"`
	CreatedAt      time.Time `db:"created_at" json:"created_at"`
	UpdatedAt      time.Time `db:"updated_at" json:"updated_at"`
}

var hostAddrRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)
var unixUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// Validate checks a host's fields (but not that its key parses; the store does that).
func (h *Host) Validate() error {
	if err := ValidateName("name", h.Name); err != nil {
		return err
	}
	if h.Address == "" {
		return Errorf(EINVALID, "address: required")
	}
	if net.ParseIP(h.Address) == nil && !hostAddrRE.MatchString(h.Address) {
		return Errorf(EINVALID, "address: %q is not a host name or IP address", truncate(h.Address, 80))
	}
	if h.Port < 1 || h.Port > 65535 {
		return Errorf(EINVALID, "port: %d is not between 1 and 65535", h.Port)
	}
	if !unixUserRE.MatchString(h.User) {
		return Errorf(EINVALID, "user: %q is not a Unix account name", truncate(h.User, 80))
	}
	return nil
}

// Environment is a named set of hosts of a project, such as test, staging or prod.
type Environment struct {
	ID        int64  `db:"id" json:"id"`
	ProjectID int64  `db:"project_id" json:"-"`
	Name      string `db:"name" json:"name"`
	// Hosts are the names of its hosts, in rollout order.
	Hosts     []string  `db:"-" json:"hosts"`
	Protected bool      `db:"protected" json:"protected"`
	Strategy  Strategy  `db:"-" json:"strategy"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
	UpdatedAt time.Time `db:"updated_at" json:"updated_at"`

	// ApprovalsRequired is how many people other than the requester must approve a deployment
	// here before it is queued; 0 means none.
	ApprovalsRequired int `db:"approvals_required" json:"approvals_required"`
	// Freezes are the periods in which the environment takes no deployments.
	Freezes []Freeze `db:"-" json:"freezes"`
}

// Validate checks an environment's name, host names and strategy.
func (e *Environment) Validate() error {
	if err := ValidateName("name", e.Name); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, h := range e.Hosts {
		if err := ValidateName("hosts", h); err != nil {
			return err
		}
		if seen[h] {
			return Errorf(EINVALID, "hosts: %q is named twice", h)
		}
		seen[h] = true
	}
	if e.ApprovalsRequired < 0 || e.ApprovalsRequired > 10 {
		return Errorf(EINVALID, "approvals_required: %d is not between 0 (none) and 10", e.ApprovalsRequired)
	}
	if err := ValidateFreezes(e.Freezes); err != nil {
		return err
	}
	return e.Strategy.Validate()
}

// AuditEntry records one change: who did what to which target, when, from where.
type AuditEntry struct {
	ID         int64     `db:"id" json:"id"`
	At         time.Time `db:"at" json:"at"`
	UserID     *int64    `db:"user_id" json:"user_id,omitempty"`
	UserName   string    `db:"user_name" json:"user"`
	Action     string    `db:"action" json:"action"`
	Target     string    `db:"target" json:"target"`
	Detail     string    `db:"detail" json:"detail,omitempty"`
	RemoteAddr string    `db:"remote_addr" json:"remote_addr,omitempty"`
}

// Actor is who makes a change, recorded in the audit log.
type Actor struct {
	UserID     int64
	Name       string
	RemoteAddr string
}

type actorKey struct{}

// WithActor returns a context whose changes the store records as made by a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor of ctx, or the "ferry" system actor.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return Actor{Name: "ferry"}
}
