package build

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"ferry/store"
)

// gitlabCallTimeout bounds one GitLab call with its retries.
const gitlabCallTimeout = time.Minute

// gitlabShutdownGrace is how long a stopping worker waits for GitLab calls still queued.
const gitlabShutdownGrace = 10 * time.Second

// maxPendingReporters bounds the builds whose GitLab calls may wait at once: past it, while
// GitLab does not answer, a new build tells GitLab nothing (and says so in its log).
const maxPendingReporters = 256

// gitlabFor returns the GitLab client for a project: with its own token when it has one, else
// ferry's; nil when no GitLab address is configured.
func (w *Worker) gitlabFor(p *store.Project) (*GitLab, error) {
	if w.cfg.GitLab.BaseURL == "" {
		return nil, nil
	}
	token := w.cfg.GitLab.Token
	if p.GitLabToken != "" {
		token = p.GitLabToken
	}
	w.clientsMu.Lock()
	defer w.clientsMu.Unlock()
	if c, ok := w.clients[token]; ok {
		return c, nil
	}
	cfg := w.cfg.GitLab
	cfg.Token = token
	c, err := NewGitLab(cfg)
	if err != nil {
		return nil, err
	}
	w.clients[token] = c
	return c, nil
}

// statusReporter makes a build's GitLab calls one after another, off the build's path: a slow
// or failing GitLab delays nothing and fails nothing; its failures become log lines. The calls
// outlive the build's slot: the worker loop takes the next build while they wait for GitLab
// (each call bounded by gitlabCallTimeout), and the worker's Run waits for them on shutdown.
type statusReporter struct {
	api   *GitLab
	path  string
	sha   string
	link  string
	out   *buildLog
	calls chan func(context.Context)
	after chan func()     // what end was given, run after the last call
	ctx   context.Context // the worker's gitlabCtx
}

func (w *Worker) newStatusReporter(p *store.Project, b *store.Build, out *buildLog) *statusReporter {
	api, err := w.gitlabFor(p)
	if err != nil {
		out.ferry("GitLab: %v", err)
	}
	if api == nil {
		return nil
	}
	if w.pending.Add(1) > maxPendingReporters {
		w.pending.Add(-1)
		out.ferry("GitLab: the calls of %d builds are still waiting for GitLab; this build's status and tag are not sent", maxPendingReporters)
		return nil
	}
	s := &statusReporter{
		api: api, path: p.GitLabPath, sha: b.SHA, link: w.buildURL(b.ID), out: out,
		calls: make(chan func(context.Context), reporterQueue), after: make(chan func(), 1), ctx: w.gitlabCtx,
	}
	w.reporters.Add(1)
	go func() {
		defer w.reporters.Done()
		defer w.pending.Add(-1)
		s.loop()
	}()
	return s
}

// reporterQueue is how many calls a build may have waiting; a build makes at most four.
const reporterQueue = 8

func (s *statusReporter) loop() {
	for call := range s.calls {
		ctx, cancel := context.WithTimeout(s.ctx, gitlabCallTimeout)
		call(ctx)
		cancel()
	}
	(<-s.after)()
}

// queue adds a call without ever waiting: a full queue drops it with a log line.
func (s *statusReporter) queue(what string, call func(context.Context)) {
	select {
	case s.calls <- call:
	default:
		s.out.ferry("GitLab: %s not sent, too many calls waiting for GitLab", what)
	}
}

func (s *statusReporter) enabled() bool { return s != nil }

// set queues a commit status.
func (s *statusReporter) set(state, description string) {
	if s == nil {
		return
	}
	s.queue("commit status "+state, func(ctx context.Context) {
		if err := s.api.SetCommitStatus(ctx, s.path, s.sha, state, s.link, description); err != nil {
			s.out.ferry("GitLab: %v", err)
		}
	})
}

// tag queues the creation of a tag on the commit.
func (s *statusReporter) tag(name, message string) {
	if s == nil {
		return
	}
	s.queue("tag "+name, func(ctx context.Context) {
		if err := s.api.CreateTag(ctx, s.path, name, s.sha, message); err != nil {
			s.out.ferry("GitLab: %v", err)
			return
		}
		s.out.ferry("GitLab: tagged commit %s as %s", store.ShortSHA(s.sha), name)
	})
}

// end takes no more calls and runs then once the queued ones have ended, without waiting for
// them; with no reporter it runs then at once.
func (s *statusReporter) end(then func()) {
	if s == nil {
		then()
		return
	}
	s.after <- then
	close(s.calls)
}

// DefaultTagTemplate names the tag of a good build when the project sets no template.
const DefaultTagTemplate = "ferry-{version}"

// TagMarker starts the message of every tag ferry creates; a tag push carrying it is ferry's
// own and does not build.
const TagMarker = "Tagged by ferry"

// TagVars are what a tag template may use: {version}, {branch}, {sha}, {short_sha},
// {number} and {project}.
type TagVars struct {
	Version, Branch, SHA, Project string
	Number                        int
}

var tagNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._/-]*$`)

// TagName fills in a tag template ("" means DefaultTagTemplate). It fails, saying why, when
// the result is not a tag name git accepts.
func TagName(template string, v TagVars) (string, error) {
	if template == "" {
		template = DefaultTagTemplate
	}
	name := strings.NewReplacer(
		"{version}", v.Version, "{branch}", SafeName(v.Branch), "{sha}", v.SHA,
		"{short_sha}", store.ShortSHA(v.SHA), "{number}", strconv.Itoa(v.Number), "{project}", v.Project,
	).Replace(template)
	if !tagNameRE.MatchString(name) || strings.Contains(name, "..") || strings.HasSuffix(name, ".lock") ||
		strings.HasSuffix(name, "/") || strings.HasSuffix(name, ".") || strings.Contains(name, "//") || strings.Contains(name, "{") {
		return "", fmt.Errorf("tag template %q gives %q, which is not a tag name (letters, digits, '.', '_', '-', '/'; placeholders {version} {branch} {sha} {short_sha} {number} {project})", template, name)
	}
	return name, nil
}

// TagMessage is the annotation of the tag ferry creates for a build.
func TagMessage(project string, number int, version, link string) string {
	msg := fmt.Sprintf("%s: %s build #%d, version %s", TagMarker, project, number, version)
	if link != "" {
		msg += "\n" + link
	}
	return msg
}

// MadeByFerry reports whether a pushed tag is one ferry created: its message starts with
// TagMarker, or its name fits the project's tag template.
func MadeByFerry(template, tag, message string) bool {
	if strings.HasPrefix(strings.TrimSpace(message), TagMarker) {
		return true
	}
	if template == "" {
		template = DefaultTagTemplate
	}
	pattern := regexp.QuoteMeta(template)
	for _, ph := range []string{"{version}", "{branch}", "{sha}", "{short_sha}", "{number}", "{project}"} {
		pattern = strings.ReplaceAll(pattern, regexp.QuoteMeta(ph), `[A-Za-z0-9._/-]+`)
	}
	if pattern == regexp.QuoteMeta(template) {
		return tag == template
	}
	ok, _ := regexp.MatchString("^"+pattern+"$", tag)
	return ok
}
