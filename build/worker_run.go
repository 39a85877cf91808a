package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"ferry/store"
	"ferry/store/runner"
)

// run is one build being worked on by one worker loop.
type run struct {
	w       *Worker
	ctx     context.Context // ends with the cause: cancel requested, lease lost or shutdown
	b       *store.Build
	job     *runner.Job[*store.Build]
	owner   string // the lease token of this claim
	out     *buildLog
	project *store.Project
	repo    Repo
	ws      Workspace
	gitlab  *statusReporter
	// cookie marks the script's processes; unrecord removes the record of them.
	cookie   string
	unrecord func()
	// made is the artifact packed by this run, removed again if no version keeps it.
	made *Artifact
}

func (w *Worker) newRun(ctx context.Context, job *runner.Job[*store.Build], out *buildLog) *run {
	return &run{w: w, ctx: ctx, b: job.Value, job: job, owner: job.Lease, out: out}
}

// execute runs the build and records its end, unless the worker stopped or lost the build,
// in which case whoever takes it over records it.
func (r *run) execute() {
	start := time.Now()
	res := r.build()
	defer r.cleanup()
	if cause := context.Cause(r.ctx); cause == errShutdown || cause == errLeaseLost {
		r.out.ferry("build stopped on this worker (%v); another worker takes it over", cause)
		r.removeArtifact()
		return
	}
	r.out.ferry("build #%d ended: %s after %s%s", r.b.Number, res.Status, time.Since(start).Round(time.Millisecond), errorSuffix(res.Error))
	r.reportEnd(res)
	r.out.close() // whoever sees the build end has seen its whole log
	done, stored := r.w.finish(r.ctx, r.job, res)
	if !stored {
		r.out.ferry("could not record the end of the build; another worker holds it now")
		r.removeArtifact()
		return
	}
	if done.Status == store.BuildSuccess {
		r.tag(done)
	}
	if done.Status == store.BuildSuccess {
		r.prune()
	}
}

func errorSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ": " + e
}

// build does the work and says how it ended.
func (r *run) build() store.BuildResult {
	p, err := r.w.db.GetProjectByID(r.ctx, r.b.ProjectID)
	if err != nil {
		return r.failed(fmt.Errorf("read project: %w", err))
	}
	r.project, r.repo = p, RepoOf(p, r.w.cfg.GitLab.BaseURL)
	r.gitlab = r.w.newStatusReporter(p, r.b, r.out)
	r.out.ferry("build #%d of %s: commit %s (%s), attempt %d, on %s", r.b.Number, p.Name, store.ShortSHA(r.b.SHA), refText(r.b), r.b.Attempts, r.owner)
	if v, err := r.w.db.VersionBySHA(r.ctx, p.ID, r.b.SHA); err == nil {
		r.out.ferry("commit %s was built before as version %s; that version is reused", store.ShortSHA(r.b.SHA), v.Name)
		if c, err := r.w.git.Commit(r.ctx, r.repo, r.b.SHA); err == nil { // the mirror of this machine may not have it
			r.fillCommit(c)
		}
		return store.BuildResult{Status: store.BuildDuplicate, VersionID: &v.ID}
	} else if !store.IsNotFound(err) {
		return r.failed(fmt.Errorf("look for an earlier version of commit %s: %w", store.ShortSHA(r.b.SHA), err))
	}
	r.gitlab.set(StateRunning, "building")
	pipeline, text, err := r.prepare()
	if err != nil {
		return r.failed(err)
	}
	version, err := r.versionName()
	if err != nil {
		return r.failed(err)
	}
	if err := r.runScript(pipeline, version); err != nil {
		return r.scriptResult(err)
	}
	a, err := r.pack(pipeline, version)
	if err != nil {
		return r.failed(err)
	}
	return store.BuildResult{
		Status: store.BuildSuccess,
		Version: &store.NewVersion{
			Name: version, SHA: r.b.SHA, Ref: r.b.Ref, SHA256: a.SHA256, Size: a.Size, Path: a.Path, Pipeline: text,
			ArtifactID: a.KeptID,
		},
		Deploy: r.deployments(),
	}
}

func refText(b *store.Build) string {
	switch {
	case b.Tag != "":
		return "tag " + b.Tag
	case b.Branch != "":
		return "branch " + b.Branch
	default:
		return "no branch"
	}
}

// prepare fetches the mirror, reads .ferry.yml at the commit and checks the commit out into
// a clean workspace.
func (r *run) prepare() (*store.Pipeline, string, error) {
	start := time.Now()
	r.out.ferry("fetching %s", redactURL(r.repo.URL))
	cloned, err := r.w.git.Mirror(r.ctx, r.repo)
	if err != nil {
		return nil, "", err
	}
	r.out.ferry("%s the mirror in %s", map[bool]string{true: "cloned", false: "fetched"}[cloned], time.Since(start).Round(time.Millisecond))
	c, err := r.w.git.Commit(r.ctx, r.repo, r.b.SHA)
	if err != nil {
		return nil, "", err
	}
	r.out.ferry("commit %s by %s: %s", store.ShortSHA(c.SHA), c.AuthorName, c.Title)
	r.fillCommit(c)
	data, err := r.w.git.ReadFile(r.ctx, r.repo, r.b.SHA, store.PipelineFile)
	if err != nil {
		return nil, "", err
	}
	pipeline, err := store.ParsePipeline(data)
	if err != nil {
		return nil, "", fmt.Errorf("commit %s: %w", store.ShortSHA(r.b.SHA), err)
	}
	if err := r.openWorkspace(); err != nil {
		return nil, "", err
	}
	if err := r.w.git.Checkout(r.ctx, r.repo, r.b.SHA, r.ws.Src()); err != nil {
		return nil, "", err
	}
	return pipeline, string(data), nil
}

// openWorkspace makes this attempt's own workspace, recorded first so that a ferry starting
// after this one was killed removes it and ends the script's processes. An attempt never
// reuses another's workspace, where a script of a dead worker might still write.
func (r *run) openWorkspace() error {
	name := fmt.Sprintf("%d-%d", r.b.ID, r.b.Attempts)
	r.ws = Workspace{Root: filepath.Join(r.w.cfg.WorkDir, r.project.Name, name)}
	r.cookie = newCookie()
	unrecord, err := writeRunRecord(r.w.runRecords(), name, runRecord{Cookie: r.cookie, Workspace: r.ws.Root})
	if err != nil {
		return err
	}
	r.unrecord = unrecord
	return r.ws.Reset()
}

// cacheDir returns the project's cache, kept between its builds, creating it if needed.
func (r *run) cacheDir() (string, error) {
	dir := filepath.Join(r.w.cfg.DataDir, "caches", r.project.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create the build cache: %w", err)
	}
	return dir, nil
}

// versionName names the version; a name taken already (a tag moved to another commit and
// built again) gets the build number added.
func (r *run) versionName() (string, error) {
	name := VersionName(time.Now(), r.b.Branch, r.b.SHA, r.b.Tag)
	_, err := r.w.db.GetVersionByName(r.ctx, r.project.ID, name)
	switch {
	case store.IsNotFound(err):
		return name, nil
	case err != nil:
		return "", fmt.Errorf("check version name %s: %w", name, err)
	default:
		return name + "-b" + strconv.Itoa(r.b.Number), nil
	}
}

func (r *run) runScript(p *store.Pipeline, version string) error {
	if r.w.sandboxErr != nil {
		return r.w.sandboxErr
	}
	cache, err := r.cacheDir()
	if err != nil {
		return err
	}
	s := &Script{
		Lines: p.Build.Script, Dir: r.ws.Src(), Home: r.ws.Home(), Tmp: r.ws.Tmp(), Env: p.Build.Env,
		Timeout: p.Build.Timeout.D(), KillGrace: r.w.cfg.KillGrace,
		Vars:  Vars{Project: r.project.Name, Version: version, Commit: r.b.SHA, Branch: r.b.Branch, Tag: r.b.Tag},
		Cache: cache, Objects: filepath.Join(r.w.git.MirrorDir(r.repo.Project), "objects"),
		Sandbox: r.w.sandbox, Cookie: r.cookie,
	}
	how := "in the build sandbox"
	if s.Sandbox == nil {
		how = "WITHOUT the build sandbox (FERRY_BUILD_SANDBOX=off): it runs as ferry's own user and can read ferry's secrets"
	}
	r.out.ferry("running the build script as version %s (timeout %s) %s", version, shortDuration(orDefault(s.Timeout, store.DefaultBuildTimeout)), how)
	return s.Run(r.ctx, r.out.line)
}

// scriptResult turns a script that did not succeed into the build's end.
func (r *run) scriptResult(err error) store.BuildResult {
	switch Outcome(err) {
	case OutcomeTimeout:
		return store.BuildResult{Status: store.BuildTimeout, Error: "build script " + err.Error()}
	case OutcomeCanceled:
		return r.failed(err)
	}
	var se *ScriptError
	if errors.As(err, &se) {
		return store.BuildResult{Status: store.BuildFailed, Error: "build script " + err.Error()}
	}
	return r.failed(err)
}

func (r *run) pack(p *store.Pipeline, version string) (*Artifact, error) {
	dest := ArtifactPath(r.w.cfg.DataDir, r.project.Name, version)
	a, err := r.packKept(r.ws.Src(), p.Build.Artifact, dest)
	if err != nil {
		return nil, err
	}
	r.made = a
	r.out.ferry("artifact %s packed: %s, sha256 %s", p.Build.Artifact, byteSize(a.Size), a.SHA256)
	return a, nil
}

// deployments are what a good build of the branch queues: the project's trigger maps the
// branch to an environment. The mapping in ferry, not the one in .ferry.yml, decides, so that
// a push cannot send itself to a protected environment. Only the commit that is the tip of
// the branch as the mirror fetched it for this build deploys: an older commit, or one not on
// the branch at all (a sha picked by hand, a webhook's checkout_sha from elsewhere), is built
// and kept but queues nothing, and the log and the webhook event say why. Whether the build
// may reach a protected environment the store decides as it queues (see store.FinishBuild).
func (r *run) deployments() []store.NewDeployment {
	env, ok := r.project.Trigger.DeployTarget(r.b.Branch)
	if !ok {
		return nil
	}
	if why := r.notBranchTip(); why != "" {
		r.notDeploying(env, why)
		return nil
	}
	e, err := r.w.db.GetEnvironment(r.ctx, r.project.ID, env)
	if err != nil {
		r.out.ferry("not deploying to %s: %s", env, store.ErrorMessage(err))
		return nil
	}
	r.out.ferry("a good build of %s is deployed to %s", r.b.Branch, e.Name)
	return []store.NewDeployment{{
		ProjectID: r.project.ID, EnvironmentID: e.ID, BuildID: &r.b.ID,
		TriggeredBy: fmt.Sprintf("build #%d of %s", r.b.Number, r.b.Branch),
	}}
}

// notBranchTip says why the build's commit is not the tip of its branch in the mirror, or "".
func (r *run) notBranchTip() string {
	tip, err := r.w.git.BranchTip(r.ctx, r.repo, r.b.Branch)
	if err != nil {
		if store.ErrorCode(err) == "" || store.ErrorCode(err) == store.EINTERNAL {
			return fmt.Sprintf("could not read the tip of branch %s: %v", r.b.Branch, err)
		}
		return store.ErrorMessage(err)
	}
	if !strings.EqualFold(tip, r.b.SHA) {
		return fmt.Sprintf("commit %s is not the tip of branch %s as just fetched (the tip is %s); only the tip deploys by itself, so deploy this version by hand if you mean it",
			store.ShortSHA(r.b.SHA), r.b.Branch, store.ShortSHA(tip))
	}
	return ""
}

// notDeploying tells the build's log and its webhook event why nothing is deployed to env.
func (r *run) notDeploying(env, why string) {
	text := fmt.Sprintf("deployment to %s not queued: %s", env, why)
	r.out.ferry("%s", text)
	if err := r.w.db.NoteBuildEvent(r.ctx, r.b.ID, text); err != nil {
		r.out.ferry("could not note this on the webhook event: %v", err)
	}
}

// failed ends the build as failed with err in words, or as canceled when a cancel ended it.
func (r *run) failed(err error) store.BuildResult {
	if context.Cause(r.ctx) == errCancelRequested {
		return store.BuildResult{Status: store.BuildCanceled, Error: "canceled"}
	}
	if r.ctx.Err() != nil {
		return store.BuildResult{Status: store.BuildFailed, Error: context.Cause(r.ctx).Error()}
	}
	msg := store.ErrorMessage(err)
	if store.ErrorCode(err) == store.EINTERNAL || store.ErrorCode(err) == "" {
		msg = err.Error()
	}
	return store.BuildResult{Status: store.BuildFailed, Error: msg}
}

// reportEnd sets the commit status GitLab shows for the build's end.
func (r *run) reportEnd(res store.BuildResult) {
	switch res.Status {
	case store.BuildSuccess:
		r.gitlab.set(StateSuccess, "version "+res.Version.Name)
	case store.BuildCanceled:
		r.gitlab.set(StateCanceled, "canceled")
	case store.BuildFailed, store.BuildTimeout:
		r.gitlab.set(StateFailed, res.Error)
	}
}

// tag creates the GitLab tag of a good branch build; a tag build is tagged already.
func (r *run) tag(b *store.Build) {
	if r.b.Tag != "" || !r.gitlab.enabled() {
		return
	}
	name, err := TagName(r.project.TagTemplate, TagVars{Version: b.Version, Branch: r.b.Branch, SHA: r.b.SHA, Number: r.b.Number, Project: r.project.Name})
	if err != nil {
		r.out.ferry("no GitLab tag: %v", err)
		return
	}
	r.gitlab.tag(name, TagMessage(r.project.Name, b.Number, b.Version, r.w.buildURL(b.ID)))
}

// prune applies retention and removes the files of the versions it dropped.
func (r *run) prune() {
	keep := r.project.KeepVersions
	if keep <= 0 {
		keep = DefaultKeepVersions
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dropped, err := r.w.db.PruneVersions(ctx, r.project.ID, keep)
	if err != nil {
		r.out.ferry("retention: %v", err)
		return
	}
	for _, v := range dropped {
		if err := r.w.removeArtifactFile(v.Path); err != nil {
			r.out.ferry("retention: remove version %s: %v", v.Name, err)
			continue
		}
		r.out.ferry("retention: removed version %s (keeping the newest %d)", v.Name, keep)
	}
}

// removeArtifactFile removes a kept artifact, but nothing outside the artifact store.
func (w *Worker) removeArtifactFile(path string) error {
	root, err := filepath.Abs(filepath.Join(w.cfg.DataDir, "artifacts"))
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil || !strings.HasPrefix(abs, root+string(filepath.Separator)) {
		return fmt.Errorf("%s is not in the artifact store %s", path, root)
	}
	if err := os.Remove(abs); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (r *run) removeArtifact() {
	if r.made != nil {
		r.w.removeArtifactFile(r.made.Path)
		r.dropKept(r.made)
	}
}

func (r *run) cleanup() {
	if r.ws.Root != "" {
		if err := removeTree(r.ws.Root); err != nil {
			r.w.log.Warn("remove workspace", "dir", r.ws.Root, "err", err)
			return // the record stays: the sweep after ferry's next start tries again
		}
	}
	if r.unrecord != nil {
		r.unrecord()
	}
}

func (w *Worker) buildURL(id int64) string {
	if w.cfg.BaseURL == "" {
		return ""
	}
	return fmt.Sprintf("%s/builds/%d", w.cfg.BaseURL, id)
}

// fillCommit records the commit's title and author on a build that has none (started from a
// page or the API): git knows them.
func (r *run) fillCommit(c *Commit) {
	if r.b.CommitTitle != "" && r.b.CommitAuthor != "" {
		return
	}
	if err := r.w.db.FillBuildCommit(r.ctx, r.b.ID, c.Title, c.AuthorName); err != nil {
		r.w.log.Warn("record the commit of a build", "build", r.b.ID, "error", err)
	}
}
