package build

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ferry/store"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// Commit status states GitLab accepts.
const (
	StatePending  = "pending"
	StateRunning  = "running"
	StateSuccess  = "success"
	StateFailed   = "failed"
	StateCanceled = "canceled"
)

// StatusName is the name ferry's commit statuses carry in GitLab's pipeline view.
const StatusName = "ferry"

// GitLabConfig says how to reach a GitLab instance.
type GitLabConfig struct {
	// BaseURL is the GitLab address, such as https://gitlab.example.com; /api/v4 is added.
	BaseURL string
	// Token is a personal, group or project access token with the api scope.
	Token string
	// Tries is how often a call is made when GitLab answers 5xx or 429 or cannot be reached;
	// 0 means 4.
	Tries int
	// Backoff is the wait before the first retry, doubled for each further one (at most 5s);
	// 0 means 500ms.
	Backoff time.Duration
	// HTTPClient replaces the default client (for timeouts or proxies).
	HTTPClient *http.Client
}

// GitLab calls the few GitLab API endpoints ferry needs.
type GitLab struct {
	client  *gitlab.Client
	baseURL string
	tries   int
}

// NewGitLab returns a client for cfg. It fails only when the base URL is unusable.
func NewGitLab(cfg GitLabConfig) (*GitLab, error) {
	if !strings.HasPrefix(cfg.BaseURL, "https://") && !strings.HasPrefix(cfg.BaseURL, "http://") {
		return nil, fmt.Errorf("GitLab address %q must start with https:// or http://", cfg.BaseURL)
	}
	tries := cfg.Tries
	if tries <= 0 {
		tries = 4
	}
	backoff := cfg.Backoff
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	opts := []gitlab.ClientOptionFunc{
		gitlab.WithBaseURL(cfg.BaseURL),
		gitlab.WithCustomRetryMax(tries - 1),
		gitlab.WithCustomBackoff(func(_, _ time.Duration, attempt int, _ *http.Response) time.Duration {
			return min(backoff<<attempt, 5*time.Second)
		}),
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, gitlab.WithHTTPClient(cfg.HTTPClient))
	}
	c, err := gitlab.NewClient(cfg.Token, opts...)
	if err != nil {
		return nil, fmt.Errorf("GitLab address %q: %w", cfg.BaseURL, err)
	}
	return &GitLab{client: c, baseURL: cfg.BaseURL, tries: tries}, nil
}

// SetCommitStatus sets ferry's status of a commit (state is one of the State constants),
// linking to targetURL. Setting the state a commit already has is not an error.
func (g *GitLab) SetCommitStatus(ctx context.Context, projectPath, sha, state, targetURL, description string) error {
	switch state {
	case StatePending, StateRunning, StateSuccess, StateFailed, StateCanceled:
	default:
		return fmt.Errorf("set commit status: %q is not a GitLab commit state", state)
	}
	opt := &gitlab.SetCommitStatusOptions{
		State:       gitlab.BuildStateValue(state),
		Name:        gitlab.Ptr(StatusName),
		TargetURL:   optional(targetURL),
		Description: optional(truncateText(description, 250)),
	}
	_, _, err := g.client.Commits.SetCommitStatus(projectPath, sha, opt, gitlab.WithContext(ctx))
	if err != nil && isStatusTransition(err) {
		return nil
	}
	if err != nil {
		return g.apiError(fmt.Sprintf("set status %s of commit %s in %s", state, store.ShortSHA(sha), projectPath), projectPath, err)
	}
	return nil
}

// isStatusTransition reports GitLab's refusal to set a state the commit already has.
func isStatusTransition(err error) bool {
	var er *gitlab.ErrorResponse
	return errors.As(err, &er) && er.HasStatusCode(http.StatusBadRequest) && strings.Contains(er.Message, "Cannot transition status")
}

// CreateTag tags sha as tag in the project, annotated with message when it is not empty. A
// tag of that name already on sha is fine; on another commit it is an error naming both.
func (g *GitLab) CreateTag(ctx context.Context, projectPath, tag, sha, message string) error {
	opt := &gitlab.CreateTagOptions{TagName: gitlab.Ptr(tag), Ref: gitlab.Ptr(sha), Message: optional(message)}
	_, _, err := g.client.Tags.CreateTag(projectPath, opt, gitlab.WithContext(ctx))
	if err == nil {
		return nil
	}
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) || !er.HasStatusCode(http.StatusBadRequest) || !strings.Contains(er.Message, "already exists") {
		return g.apiError(fmt.Sprintf("create tag %s on commit %s in %s", tag, store.ShortSHA(sha), projectPath), projectPath, err)
	}
	existing, _, err := g.client.Tags.GetTag(projectPath, tag, gitlab.WithContext(ctx))
	if err != nil {
		return g.apiError(fmt.Sprintf("read existing tag %s in %s", tag, projectPath), projectPath, err)
	}
	if existing.Commit == nil || existing.Commit.ID != sha {
		on := "another commit"
		if existing.Commit != nil {
			on = "commit " + store.ShortSHA(existing.Commit.ID)
		}
		return fmt.Errorf("create tag %s in %s: the tag already exists on %s, not on %s", tag, projectPath, on, store.ShortSHA(sha))
	}
	return nil
}

// RegisterHook makes GitLab send push and tag push events of the project to hookURL with
// secret as X-Gitlab-Token and, when signingToken is not "", signed with it (Standard
// Webhooks headers). A hook with the same URL is updated rather than added twice. It returns
// the hook's id.
//
// GitLab's Go client (v1.46) has no field for the signing token, so the request is made
// through the client with its options wrapped (hookWithSigning); an empty signingToken is
// left out, and GitLab keeps whatever signing token the hook had.
func (g *GitLab) RegisterHook(ctx context.Context, projectPath, hookURL, secret, signingToken string) (int64, error) {
	what := fmt.Sprintf("register webhook %s in %s", hookURL, projectPath)
	existing, err := g.findHook(ctx, projectPath, hookURL)
	if err != nil {
		return 0, g.apiError(what, projectPath, err)
	}
	hooks := "projects/" + gitlab.PathEscape(projectPath) + "/hooks"
	method, path := http.MethodPost, hooks
	opt := hookWithSigning{AddProjectHookOptions: &gitlab.AddProjectHookOptions{
		Name: gitlab.Ptr("ferry"), URL: gitlab.Ptr(hookURL), Token: gitlab.Ptr(secret),
		PushEvents: gitlab.Ptr(true), TagPushEvents: gitlab.Ptr(true), EnableSSLVerification: gitlab.Ptr(true),
	}}
	if existing != nil {
		method, path = http.MethodPut, hooks+"/"+strconv.FormatInt(existing.ID, 10)
		opt.Name = nil
	}
	if signingToken != "" {
		opt.SigningToken = &signingToken
	}
	req, err := g.client.NewRequest(method, path, opt, []gitlab.RequestOptionFunc{gitlab.WithContext(ctx)})
	if err != nil {
		return 0, g.apiError(what, projectPath, err)
	}
	var h gitlab.ProjectHook
	if _, err := g.client.Do(req, &h); err != nil {
		return 0, g.apiError(what, projectPath, err)
	}
	return h.ID, nil
}

// hookWithSigning is a project hook's options with GitLab's signing_token, which the Go
// client does not know yet.
type hookWithSigning struct {
	*gitlab.AddProjectHookOptions
	SigningToken *string `json:"signing_token,omitempty"`
}

func (g *GitLab) findHook(ctx context.Context, projectPath, hookURL string) (*gitlab.ProjectHook, error) {
	opt := &gitlab.ListProjectHooksOptions{ListOptions: gitlab.ListOptions{PerPage: 100, Page: 1}}
	for {
		hooks, resp, err := g.client.Projects.ListProjectHooks(projectPath, opt, gitlab.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		for _, h := range hooks {
			if h.URL == hookURL {
				return h, nil
			}
		}
		if resp == nil || resp.NextPage == 0 || resp.NextPage <= opt.Page {
			return nil, nil
		}
		opt.Page = resp.NextPage
	}
}

// apiError says in words what went wrong with a call.
func (g *GitLab) apiError(what, projectPath string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, gitlab.ErrNotFound) {
		return fmt.Errorf("%s: GitLab says not found (does %s exist, and may the token see it?)", what, projectPath)
	}
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil {
		return fmt.Errorf("%s: GitLab at %s unreachable: %v", what, g.baseURL, err)
	}
	code := er.Response.StatusCode
	switch {
	case code == http.StatusUnauthorized:
		return fmt.Errorf("%s: GitLab refused the API token (401 Unauthorized); check that it is valid and not expired", what)
	case code == http.StatusForbidden:
		return fmt.Errorf("%s: the API token may not do this (403 Forbidden); it needs the api scope and the Maintainer role", what)
	case code >= 500 || code == http.StatusTooManyRequests:
		return fmt.Errorf("%s: GitLab answered %d after %d tries: %s", what, code, g.tries, cmp.Or(er.Message, http.StatusText(code)))
	default:
		return fmt.Errorf("%s: GitLab answered %d: %s", what, code, cmp.Or(er.Message, http.StatusText(code)))
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
