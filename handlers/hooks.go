package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerHooks(r *gin.Engine) {
	r.POST("/hooks/gitlab", s.need(public), s.gitlabHook)
	r.POST("/api/v1/projects/:project/gitlab-hook", s.need(projectAdmin), s.registerGitLabHook)
}

// GitLab is what the HTTP layer needs of the build side; cmd/ferry passes build.Frontend.
type GitLab interface {
	// Authenticate checks a webhook's X-Gitlab-Token (and, when p has a signing token, its
	// Standard Webhooks signature) for project p; an EUNAUTHORIZED error says what is wrong,
	// in the same words for a wrong token and for a project without a secret.
	Authenticate(p *store.Project, header http.Header, body []byte) error
	// ParseHook reads a "Push Hook" or "Tag Push Hook" body for p: what the trigger looks at,
	// the event to record and the build to queue if the trigger matches. EINVALID for a
	// malformed body.
	ParseHook(p *store.Project, event string, body []byte) (store.PushInfo, *store.Event, *store.NewBuild, error)
	// ResolveRef returns the commit a branch or tag of p names now, and whether it is a tag.
	ResolveRef(ctx context.Context, p *store.Project, ref string) (sha string, isTag bool, err error)
	// RegisterHook makes GitLab send p's push and tag push events to hookURL with p's secret
	// (and p's signing token, when it has one).
	RegisterHook(ctx context.Context, p *store.Project, hookURL string) error
	// Wake tells the build workers that a build was queued.
	Wake()
}

// hookAnswer is the answer to a webhook: what ferry did with it.
type hookAnswer struct {
	Event    int64  `json:"event,omitempty"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Build    *int64 `json:"build,omitempty"`
	// Duplicate marks a redelivery: nothing new was stored; the answer is the first one's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Events ferry builds from; GitLab sends these names in X-Gitlab-Event.
var buildEvents = map[string]bool{"Push Hook": true, "Tag Push Hook": true}

// gitlabHook takes a GitLab webhook. Once the sender is authenticated, every well-formed
// event is answered 200 (an event that builds nothing says why), because GitLab disables
// hooks that keep failing; the event and its build are stored before the answer. Errors are
// JSON, as for the API. A webhook naming a project ferry does not have is checked against a
// secret nobody knows, so that it is refused exactly as a wrong token is (same status, same
// words, about the same time): the answer does not tell which GitLab paths ferry has.
func (s *Server) gitlabHook(c *gin.Context) {
	body, err := readBody(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	path, p, err := s.hookProject(c.Request.Context(), body)
	if err != nil {
		s.fail(c, err)
		return
	}
	if s.gitlab == nil {
		s.fail(c, store.Errorf(store.EINTERNAL, "webhooks: no GitLab adapter configured"))
		return
	}
	if err := s.authenticateHook(c, path, p, body); err != nil {
		s.fail(c, err)
		return
	}
	event := c.GetHeader("X-Gitlab-Event")
	if !buildEvents[event] {
		c.JSON(http.StatusOK, hookAnswer{Decision: store.EventSkip, Reason: fmt.Sprintf("GitLab event %q does not build; ferry builds from push and tag push events", clip(event, 60))})
		return
	}
	info, ev, nb, err := s.gitlab.ParseHook(p, event, body)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.recordHook(c, p, info, ev, nb)
}

// authenticateHook checks the webhook's token (and signature) for p, or for a project nobody
// has the secret of when p is nil. A refusal is logged with what was wrong, which the answer
// to the sender may not say.
func (s *Server) authenticateHook(c *gin.Context, path string, p *store.Project, body []byte) error {
	target := p
	if target == nil {
		target = &store.Project{WebhookSecret: store.RandomSecret(24)}
	}
	err := s.gitlab.Authenticate(target, c.Request.Header, body)
	if err == nil && p == nil { // a random secret matched: cannot happen, but never let it through
		err = store.Errorf(store.EUNAUTHORIZED, "webhook refused")
	}
	if err != nil {
		s.log.Warn("webhook refused", "gitlab_path", clip(path, 255), "known_project", p != nil, "from", c.ClientIP(), "reason", store.ErrorMessage(err))
	}
	return err
}

func (s *Server) recordHook(c *gin.Context, p *store.Project, info store.PushInfo, ev *store.Event, nb *store.NewBuild) {
	builds, reason := p.Trigger.Match(info)
	ev.Decision, ev.Reason = store.EventSkip, reason
	if builds {
		ev.Decision = store.EventBuild
	} else {
		nb = nil
	}
	if key := deliveryKey(c); key != "" {
		key = strconv.FormatInt(p.ID, 10) + ":" + key
		ev.DeliveryKey = &key
	}
	got, b, dup, err := s.db.RecordEvent(c.Request.Context(), ev, nb)
	if err != nil {
		s.fail(c, fmt.Errorf("record webhook event of %s: %w", p.Name, err))
		return
	}
	if b != nil && !dup {
		s.gitlab.Wake()
	}
	answer := hookAnswer{Event: got.ID, Decision: got.Decision, Reason: got.Reason, Build: got.BuildID, Duplicate: dup}
	if answer.Build == nil && b != nil {
		answer.Build = &b.ID
	}
	c.JSON(http.StatusOK, answer)
}

// deliveryKey is what identifies one delivery across GitLab's retries. The Standard Webhooks
// webhook-id comes first: it is covered by the signature, so a replayed signed delivery cannot
// pass as new by changing the other headers (GitLab sends the same value as Idempotency-Key).
func deliveryKey(c *gin.Context) string {
	key := c.GetHeader("webhook-id")
	if key == "" {
		key = c.GetHeader("Idempotency-Key")
	}
	if key == "" {
		key = c.GetHeader("X-Gitlab-Event-UUID")
	}
	return clip(key, 200)
}

// readBody reads the whole request body; over MaxBodyBytes is ETOOLARGE.
func readBody(c *gin.Context) ([]byte, error) {
	if c.Request.Body == nil {
		return nil, store.Errorf(store.EINVALID, "the webhook has no body")
	}
	body, err := io.ReadAll(c.Request.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errBodyTooLarge
	}
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "read webhook body: %v", err)
	}
	return body, nil
}

// hookProject finds the project a webhook is about by project.path_with_namespace, and
// returns the path too. An unknown project is nil, not an error: the caller refuses it as it
// refuses a wrong token.
func (s *Server) hookProject(ctx context.Context, body []byte) (string, *store.Project, error) {
	var head struct {
		Project struct {
			Path string `json:"path_with_namespace"`
		} `json:"project"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return "", nil, jsonError(body, err)
	}
	if head.Project.Path == "" {
		return "", nil, store.Errorf(store.EINVALID, "the webhook names no project (project.path_with_namespace is missing)")
	}
	p, err := s.db.GetProjectByGitLabPath(ctx, head.Project.Path)
	if store.IsNotFound(err) {
		return head.Project.Path, nil, nil
	}
	return head.Project.Path, p, err
}

// registerGitLabHook registers ferry's webhook on the project's GitLab project.
func (s *Server) registerGitLabHook(c *gin.Context) {
	p := projectOf(c)
	if s.gitlab == nil {
		s.fail(c, store.Errorf(store.EINVALID, "this ferry has no GitLab connection"))
		return
	}
	url := s.baseURL + "/hooks/gitlab"
	if err := s.gitlab.RegisterHook(c.Request.Context(), p, url); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.db.RecordAudit(c.Request.Context(), "project.gitlab_hook", "project/"+p.Name, url); err != nil {
		s.log.Warn("audit gitlab hook registration", "project", p.Name, "err", err)
	}
	c.JSON(http.StatusOK, gin.H{"url": url, "events": []string{"push", "tag_push"}})
}
