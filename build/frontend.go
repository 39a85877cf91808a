package build

import (
	"context"
	"net/http"

	"ferry/store"
)

// Frontend is what the HTTP layer asks of the build side: checking and reading GitLab
// webhooks, resolving refs for manual builds, registering ferry's hook on GitLab, and waking
// the worker when a build is queued. It implements handlers.GitLab; cmd/ferry passes it in.
type Frontend struct {
	w *Worker
}

// NewFrontend returns the Frontend of a worker (which need not be running: a process with no
// build workers still takes webhooks).
func NewFrontend(w *Worker) *Frontend { return &Frontend{w: w} }

// Authenticate checks a webhook's X-Gitlab-Token against the project's secret in constant
// time and, when the project holds a signing token, its Standard Webhooks signature (see
// CheckSignature). It fails with EUNAUTHORIZED, saying what is wrong; a project with no
// secret and a wrong token get the very words of RefusedToken, so that a caller cannot tell
// them from a project ferry does not have.
func (f *Frontend) Authenticate(p *store.Project, header http.Header, body []byte) error {
	token := header.Get("X-Gitlab-Token")
	if token == "" {
		return store.Errorf(store.EUNAUTHORIZED, "the webhook carries no X-Gitlab-Token; enter the project's webhook secret as the hook's secret token in GitLab")
	}
	if !VerifyToken(token, p.WebhookSecret) {
		return store.Errorf(store.EUNAUTHORIZED, "%s", RefusedToken)
	}
	return CheckSignature(p, header, body)
}

// ParseHook reads a push or tag push webhook for project p into what the trigger looks at,
// the event to record and the build to queue if the trigger matches. It fails with EINVALID
// for other events and malformed bodies.
func (f *Frontend) ParseHook(p *store.Project, event string, body []byte) (store.PushInfo, *store.Event, *store.NewBuild, error) {
	push, err := ParseHook(event, body)
	if err != nil {
		return store.PushInfo{}, nil, nil, err
	}
	message := push.Head.Message
	if push.IsTag && push.TagMessage != "" {
		message = push.TagMessage
	}
	info := store.PushInfo{Tag: push.IsTag, Name: push.Name(), Message: message, Deleted: push.Deleted}
	info.MadeByFerry = push.IsTag && MadeByFerry(p.TagTemplate, push.Tag, push.TagMessage)
	kind := "push"
	if push.IsTag {
		kind = "tag_push"
	}
	author := push.Head.AuthorName
	if author == "" {
		author = push.UserName
	}
	ev := &store.Event{
		ProjectID: &p.ID, Project: p.Name, Kind: kind, Ref: push.Ref, SHA: push.SHA(),
		Author: author, Message: truncateText(message, 4000),
	}
	by := push.UserLogin
	if by == "" {
		by = push.UserName
	}
	nb := &store.NewBuild{
		ProjectID: p.ID, Ref: push.Name(), Branch: push.Branch, Tag: push.Tag, SHA: push.SHA(),
		CommitTitle: truncateText(push.Head.Title, 500), CommitAuthor: push.Head.AuthorName, CommitURL: push.Head.URL,
		TriggeredBy: truncateText(kind+" by "+by, 200),
	}
	return info, ev, nb, nil
}

// ResolveRef returns the commit a branch or tag of the project names now, asking the remote.
func (f *Frontend) ResolveRef(ctx context.Context, p *store.Project, ref string) (sha string, isTag bool, err error) {
	return f.w.git.ResolveRef(ctx, RepoOf(p, f.w.cfg.GitLab.BaseURL), ref)
}

// RegisterHook makes GitLab send the project's push and tag push events to hookURL with the
// project's webhook secret, signed with its webhook signing token when it has one. It fails with EINVALID when no GitLab address is configured or
// the project has no secret, and with GitLab's answer in words otherwise.
func (f *Frontend) RegisterHook(ctx context.Context, p *store.Project, hookURL string) error {
	api, err := f.w.gitlabFor(p)
	if err != nil {
		return store.Errorf(store.EINVALID, "GitLab: %v", err)
	}
	if api == nil {
		return store.Errorf(store.EINVALID, "no GitLab address is configured: set FERRY_GITLAB_URL (and FERRY_GITLAB_TOKEN or the project's gitlab_token)")
	}
	if p.WebhookSecret == "" {
		return store.Errorf(store.EINVALID, "project %s has no webhook secret; set webhook_secret first", p.Name)
	}
	if _, err := api.RegisterHook(ctx, p.GitLabPath, hookURL, p.WebhookSecret, p.WebhookSigningToken); err != nil {
		return store.Errorf(store.EINVALID, "%v", err)
	}
	return nil
}

// Wake makes the worker look for pending builds now.
func (f *Frontend) Wake() { f.w.Wake() }
