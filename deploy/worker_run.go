package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"ferry/store"
	"ferry/store/runner"
)

// deploymentRun is one claimed deployment as a worker runs it.
type deploymentRun struct {
	w   *Worker
	d   *store.Deployment
	log *store.LogWriter
	// lease is the token of this claim; cancel ends the run, with errLeaseLost once a write
	// with the token is refused.
	lease  string
	cancel context.CancelCauseFunc

	spec     store.DeploySpec
	rel      Release
	strategy store.Strategy
	hosts    []*hostJob
	// instances are the project's instances before the deployment, by host id.
	instances map[int64]*store.Instance
	// logBudget bounds the host output kept in the log.
	logBudget *logBudget
	// config holds the config templates and the once hook's outcome (config.go, hooks.go).
	config *deployConfig
}

// hostJob is one host of a deployment: its step row, how to reach it and how it ended.
type hostJob struct {
	step    *store.HostStep
	target  Target
	loadErr error // the host could not be loaded: it fails without being contacted
	result  *HostResult
}

// runDeployment runs one claimed deployment and finishes it, unless the process stops (the
// runner hands the deployment over) or the lease was lost (another process has it now).
func (w *Worker) runDeployment(ctx context.Context, job *runner.Job[*store.Deployment]) {
	claimed, lease := job.Value, job.Lease
	log := w.log.With("deployment", claimed.ID)
	logw, err := w.db.OpenLog(ctx, store.JobDeployment, claimed.ID)
	if err != nil {
		log.Error("open the deployment log", "err", err)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r := &deploymentRun{w: w, d: claimed, log: logw, lease: lease, cancel: cancel, logBudget: newLogBudget(w.cfg.MaxLogBytes, w.cfg.MaxHostLogBytes), config: &deployConfig{}}
	status, reason := r.execute(rctx)
	cause := context.Cause(rctx)
	r.sayEnd(status, reason, cause)
	r.close() // viewers see the end of the log before the deployment's end is recorded
	switch {
	case errors.Is(cause, runner.ErrShutdown):
		log.Warn("stopping with a deployment unfinished; it is handed over to another worker")
		return
	case errors.Is(cause, errLeaseLost):
		log.Warn("the deployment was taken over by another worker; leaving it")
		return
	case errors.Is(cause, errCancelRequested) && status != store.DeploymentSuccess:
		status = store.DeploymentCanceled
	}
	err = job.Finish(ctx, func(ctx context.Context) error {
		_, err := w.jobs.FinishDeployment(ctx, claimed.ID, lease, status, reason)
		return err
	})
	if err != nil {
		log.Error("finish the deployment", "status", status, "err", err)
		return
	}
	log.Info("deployment finished", "status", status, "error", reason)
}

func (r *deploymentRun) say(host, format string, args ...any) {
	if r.log != nil {
		r.log.Write(StreamFerry, host, fmt.Sprintf(format, args...))
	}
}

func (r *deploymentRun) close() {
	if r.log == nil {
		return
	}
	if err := r.log.Close(); err != nil {
		r.w.log.Warn("close the deployment log", "deployment", r.d.ID, "err", err)
	}
}

// execute prepares and runs the rollout and says how the deployment ended.
func (r *deploymentRun) execute(ctx context.Context) (status, reason string) {
	if err := r.prepare(ctx); err != nil {
		if ctx.Err() != nil {
			return store.DeploymentCanceled, "canceled before any host was started"
		}
		return store.DeploymentFailed, err.Error()
	}
	r.say("", "deploying %s to %s (%s) on %s%s", r.d.Version, r.d.Environment, strategyText(r.strategy),
		strings.Join(r.hostNames(), ", "), attemptText(r.d.Attempts))
	r.rollout(ctx)
	return summarize(r.hosts, errors.Is(context.Cause(ctx), errCancelRequested))
}

// sayEnd writes the deployment's last log line.
func (r *deploymentRun) sayEnd(status, reason string, cause error) {
	switch {
	case errors.Is(cause, errLeaseLost):
		r.say("", "this worker lost its lease on the deployment; another one carries on")
	case cause != nil && !errors.Is(cause, errCancelRequested):
		r.say("", "ferry is stopping: the deployment stops here and another worker takes it over")
	case reason != "":
		r.say("", "%s: %s", status, reason)
	default:
		r.say("", "%s: %s is on every host", status, r.d.Version)
	}
}

// prepare loads what the rollout needs: the deployment with its host steps, the version and
// its artifact, the .ferry.yml deploy section, the strategy and the hosts.
func (r *deploymentRun) prepare(ctx context.Context) error {
	d, err := r.w.db.GetDeployment(ctx, r.d.ID)
	if err != nil {
		return fmt.Errorf("load deployment %d: %w", r.d.ID, err)
	}
	r.d = d
	v, err := r.w.db.GetVersion(ctx, d.VersionID)
	if err != nil {
		return fmt.Errorf("load version %s: %w", d.Version, err)
	}
	if err := r.readVersion(ctx, v); err != nil {
		return err
	}
	if err := r.chooseStrategy(ctx); err != nil {
		return err
	}
	if err := r.loadInstances(ctx); err != nil {
		return err
	}
	return r.loadHosts(ctx)
}

// readVersion finds the version's artifact on this machine (copied from the database the first
// time this machine deploys it) and reads its .ferry.yml.
func (r *deploymentRun) readVersion(ctx context.Context, v *store.Version) error {
	if v.DeletedAt != nil {
		return fmt.Errorf("version %s was removed by retention on %s; deploy a version that is kept",
			v.Name, v.DeletedAt.UTC().Format("2006-01-02 15:04 MST"))
	}
	artifact, err := r.w.db.LocalArtifact(ctx, v, r.w.cfg.DataDir)
	if store.IsNotFound(err) {
		return fmt.Errorf("the artifact of version %s is missing from the artifact store (%s); build the commit again or deploy another version", v.Name, v.Path)
	}
	if err != nil {
		return err
	}
	if strings.TrimSpace(v.Pipeline) == "" {
		return fmt.Errorf("version %s has no .ferry.yml, so ferry does not know how to deploy it", v.Name)
	}
	p, err := store.ParsePipeline([]byte(v.Pipeline))
	if err != nil {
		return fmt.Errorf("the .ferry.yml of version %s: %w", v.Name, err)
	}
	if p.Deploy.Path == "" {
		return fmt.Errorf("the .ferry.yml of version %s has no deploy.path: ferry does not know where to put it", v.Name)
	}
	r.spec = p.Deploy
	r.rel = Release{Version: v.Name, Artifact: artifact, SHA256: v.SHA256, Size: v.Size, Files: r.w.manifests.Index()}
	return r.rel.Validate()
}

// chooseStrategy takes the deployment's own strategy when one was asked for, else the
// environment's when it has one, else the version's .ferry.yml.
func (r *deploymentRun) chooseStrategy(ctx context.Context) error {
	r.strategy = r.spec.Strategy
	if r.d.Strategy != (store.Strategy{}) {
		r.strategy = r.d.Strategy
		return nil
	}
	env, err := r.w.db.GetEnvironment(ctx, r.d.ProjectID, r.d.Environment)
	if err != nil {
		return fmt.Errorf("load environment %s: %w", r.d.Environment, err)
	}
	if env.Strategy != (store.Strategy{}) {
		r.strategy = env.Strategy
	}
	return nil
}

func (r *deploymentRun) loadInstances(ctx context.Context) error {
	list, err := r.w.db.ListInstances(ctx, r.d.ProjectID)
	if err != nil {
		return fmt.Errorf("load the instances of %s: %w", r.d.Project, err)
	}
	r.instances = make(map[int64]*store.Instance, len(list))
	for _, in := range list {
		r.instances[in.HostID] = in
	}
	return nil
}

// loadHosts makes a job per host step. Steps that succeeded in an earlier attempt (before a
// takeover) are kept as they are.
func (r *deploymentRun) loadHosts(ctx context.Context) error {
	r.hosts = nil
	for _, step := range r.d.Hosts {
		job := &hostJob{step: step}
		if step.Status == store.HostSucceeded {
			job.result = &HostResult{Host: step.Host, Version: r.rel.Version, Status: HostSucceeded, BytesSent: step.BytesSent}
		}
		h, err := r.w.db.GetHostByID(ctx, step.HostID)
		switch {
		case store.IsNotFound(err):
			job.loadErr = fmt.Errorf("host %s was removed from ferry", step.Host)
		case err != nil:
			return fmt.Errorf("load host %s: %w", step.Host, err)
		default:
			job.target = Target{Name: h.Name, Address: h.Address, Port: h.Port, User: h.User,
				PrivateKey: []byte(h.PrivateKey), HostKey: h.HostKey}
		}
		r.hosts = append(r.hosts, job)
	}
	if len(r.hosts) == 0 {
		return fmt.Errorf("deployment %d has no hosts", r.d.ID)
	}
	return nil
}

func (r *deploymentRun) hostNames() []string {
	names := make([]string, len(r.hosts))
	for i, j := range r.hosts {
		names[i] = j.step.Host
	}
	return names
}

// summarize says how a deployment ended from how its hosts did, in words.
func summarize(hosts []*hostJob, cancelRequested bool) (status, reason string) {
	var failed, notStarted []string
	succeeded := 0
	for _, j := range hosts {
		res := j.result
		switch {
		case res == nil:
			notStarted = append(notStarted, j.step.Host)
		case res.Status == HostSucceeded:
			succeeded++
		case res.Status == HostFailed:
			failed = append(failed, j.step.Host+": "+res.Reason)
		default:
			notStarted = append(notStarted, j.step.Host)
		}
	}
	switch {
	case cancelRequested && succeeded < len(hosts):
		reason = fmt.Sprintf("canceled on request: %d of %d hosts done", succeeded, len(hosts))
		if len(failed) > 0 {
			reason += fmt.Sprintf("; %s failed: %s", plural(len(failed), "host"), strings.Join(failed, "; "))
		}
		return store.DeploymentCanceled, reason
	case len(failed) > 0:
		reason = fmt.Sprintf("%d of %d hosts failed: %s", len(failed), len(hosts), strings.Join(failed, "; "))
		if len(notStarted) > 0 {
			reason += fmt.Sprintf("; not started: %s", strings.Join(notStarted, ", "))
		}
		return store.DeploymentFailed, reason
	case len(notStarted) > 0:
		return store.DeploymentFailed, fmt.Sprintf("%d of %d hosts were not deployed: %s", len(notStarted), len(hosts), strings.Join(notStarted, ", "))
	}
	return store.DeploymentSuccess, ""
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func strategyText(s store.Strategy) string {
	kind := s.Kind
	if kind == "" {
		kind = store.StrategySerial
	}
	if s.Batch != "" && (kind == store.StrategyRolling || kind == store.StrategyCanary) {
		kind += " by " + s.Batch
	}
	if s.Concurrency > 0 {
		kind += fmt.Sprintf(", at most %d at once", s.Concurrency)
	}
	if s.ContinueOnFailure {
		kind += ", going on after failures"
	}
	return kind
}

func attemptText(attempts int) string {
	if attempts > 1 {
		return fmt.Sprintf(" (attempt %d: taking over from a worker that stopped)", attempts)
	}
	return ""
}
