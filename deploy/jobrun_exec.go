package deploy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"ferry/store"
	"ferry/store/runner"
)

// jobRun is one claimed run as a runner executes it.
type jobRun struct {
	w      *JobRunner
	r      *store.JobRun
	lease  string
	log    *store.LogWriter
	cancel context.CancelCauseFunc
}

// runJob executes a claimed run from its next step and finishes it, unless it paused, the
// process stops (the runner hands it back to the queue) or the lease was lost.
func (w *JobRunner) runJob(ctx context.Context, job *runner.Job[*store.JobRun]) {
	claimed, lease := job.Value, job.Lease
	log := w.log.With("run", claimed.ID)
	logw, err := w.db.OpenLog(ctx, store.JobRunLog, claimed.ID)
	if err != nil {
		log.Error("open the run log", "err", err)
	}
	// The job's own context, also ended by a write refused for a lost lease.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jr := &jobRun{w: w, r: claimed, lease: lease, log: logw, cancel: cancel}
	status, reason, paused := jr.execute(rctx)
	cause := context.Cause(rctx)
	switch {
	case paused:
		return
	case errors.Is(cause, errLeaseLost):
		jr.close()
		log.Warn("the job run was taken over by another worker; leaving it")
		return
	case errors.Is(cause, runner.ErrShutdown):
		jr.say(0, "", "ferry is stopping: the run is handed over and goes on from this step")
		jr.close()
		return
	case errors.Is(cause, errCancelRequested):
		status, reason = store.RunCanceled, "canceled on request"
	}
	jr.say(0, "", "%s%s", status, prefixed(": ", reason))
	// The log is stored before the run ends, so that lines people add once it has ended
	// (a retry) come after it.
	jr.close()
	err = job.Finish(ctx, func(ctx context.Context) error {
		_, err := w.db.FinishJobRun(ctx, claimed.ID, lease, status, reason)
		return err
	})
	if err != nil {
		log.Error("finish the job run", "status", status, "err", err)
	}
}

// handedOver reports whether ctx ended because the run leaves this worker (the process stops
// or the lease was lost), rather than because it was canceled: then nothing more of the step
// is recorded, and the next worker runs it again where it was.
func handedOver(ctx context.Context) bool {
	cause := context.Cause(ctx)
	return errors.Is(cause, runner.ErrShutdown) || errors.Is(cause, errLeaseLost)
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func (jr *jobRun) say(step int, host, format string, args ...any) {
	if jr.log != nil {
		jr.log.Write(StreamFerry, store.RunLogHost(step, host), fmt.Sprintf(format, args...))
	}
}

func (jr *jobRun) close() {
	if jr.log != nil {
		if err := jr.log.Close(); err != nil {
			jr.w.log.Warn("close the run log", "run", jr.r.ID, "err", err)
		}
	}
}

// execute runs the steps from the run's next one. It returns the run's end status, or paused
// when a pause step stopped it.
func (jr *jobRun) execute(ctx context.Context) (status, reason string, paused bool) {
	r, err := jr.w.db.GetJobRun(ctx, jr.r.ID)
	if err != nil {
		return store.RunFailed, fmt.Sprintf("load run %d: %v", jr.r.ID, err), false
	}
	jr.r = r
	if r.NextStep == 0 {
		jr.say(0, "", "run %d of job %s started by %s", r.ID, r.Job, r.TriggeredBy)
	}
	var failed []string
	for i := r.NextStep; i < len(r.Plan) && i < len(r.Steps); i++ {
		if ctx.Err() != nil {
			return store.RunCanceled, "", false
		}
		plan, step := r.Plan[i], r.Steps[i]
		if plan.Kind == store.StepPause {
			jr.say(step.Position, "", "paused: waiting for someone to continue or stop the run")
			jr.close() // stored before the run waits, so a continue's line comes after
			if err := jr.w.db.PauseJobRun(ctx, r.ID, jr.lease, step.Position); err != nil {
				jr.cancel(errLeaseLost)
				return store.RunFailed, err.Error(), false
			}
			return "", "", true
		}
		stepStatus, stepErr := jr.runStep(ctx, plan, step)
		if ctx.Err() != nil {
			return store.RunCanceled, "", false
		}
		if stepStatus == store.StepSucceeded {
			jr.say(step.Position, "", "step %d (%s) succeeded", step.Position, step.Name)
		}
		if stepStatus == store.StepFailed {
			failed = append(failed, fmt.Sprintf("step %d (%s): %s", step.Position, step.Name, stepErr))
			if plan.OnFailure != store.OnFailureContinue {
				return store.RunFailed, strings.Join(failed, "; "), false
			}
		}
	}
	for _, s := range r.Steps[:min(r.NextStep, len(r.Steps))] {
		if s.Status == store.StepFailed {
			failed = append([]string{fmt.Sprintf("step %d (%s) failed", s.Position, s.Name)}, failed...)
		}
	}
	if len(failed) > 0 {
		return store.RunFailed, strings.Join(failed, "; "), false
	}
	return store.RunSuccess, "", false
}

// runStep runs one script or distribute step on its hosts that have not succeeded yet, in
// batches, and records how it ended.
func (jr *jobRun) runStep(ctx context.Context, plan store.RunStepPlan, step *store.JobRunStep) (string, string) {
	db := jr.w.db
	if err := db.StartRunStep(ctx, jr.r.ID, jr.lease, step.Position); err != nil {
		jr.cancel(errLeaseLost)
		return store.StepFailed, err.Error()
	}
	var todo []*store.JobRunHost
	for _, h := range step.Hosts {
		if h.Status != store.HostSucceeded {
			todo = append(todo, h)
		}
	}
	jr.say(step.Position, "", "step %d (%s, %s) on %d hosts", step.Position, step.Name, plan.Kind, len(todo))
	batch := plan.Batch
	if batch <= 0 || batch > jr.w.cfg.MaxHostConcurrency {
		batch = min(len(todo), jr.w.cfg.MaxHostConcurrency)
	}
	var failed []string
	var mu sync.Mutex
	for start := 0; start < len(todo); start += max(batch, 1) {
		if ctx.Err() != nil || (len(failed) > 0 && plan.OnFailure != store.OnFailureContinue) {
			break
		}
		var wg sync.WaitGroup
		for _, h := range todo[start:min(start+max(batch, 1), len(todo))] {
			wg.Go(func() {
				if err := jr.runHost(ctx, plan, step.Position, h); err != nil {
					mu.Lock()
					failed = append(failed, h.Host+": "+err.Error())
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	status, errText := store.StepSucceeded, ""
	switch {
	case handedOver(ctx):
		return store.StepRunning, ""
	case ctx.Err() != nil:
		status = store.StepCanceled
	case len(failed) > 0:
		status, errText = store.StepFailed, strings.Join(failed, "; ")
	}
	fctx, done := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer done()
	if err := db.FinishRunStep(fctx, jr.r.ID, jr.lease, step.Position, status, errText); err != nil {
		jr.cancel(errLeaseLost)
	}
	return status, errText
}

// runHost runs the step on one host and records its result; the error says why it failed.
func (jr *jobRun) runHost(ctx context.Context, plan store.RunStepPlan, pos int, h *store.JobRunHost) error {
	db := jr.w.db
	if err := db.UpdateRunHost(ctx, jr.r.ID, jr.lease, pos, h.HostID, store.RunHostUpdate{Status: store.HostRunning, Started: true}); err != nil {
		jr.cancel(errLeaseLost)
		return err
	}
	exit, err := jr.onHost(ctx, plan, pos, h)
	u := store.RunHostUpdate{Status: store.HostSucceeded, ExitCode: exit, Finished: true}
	switch {
	case handedOver(ctx):
		return errors.New("handed over")
	case ctx.Err() != nil:
		u.Status, u.Error = store.HostCanceled, "canceled"
		err = errors.New("canceled")
	case err != nil:
		u.Status, u.Error = store.HostFailed, err.Error()
		jr.say(pos, h.Host, "failed: %v", err)
	default:
		jr.say(pos, h.Host, "done")
	}
	fctx, done := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer done()
	if uerr := db.UpdateRunHost(fctx, jr.r.ID, jr.lease, pos, h.HostID, u); uerr != nil {
		jr.cancel(errLeaseLost)
	}
	return err
}

// onHost connects to the host as the step's account and does the step there. It returns the
// script's exit code when there is one.
func (jr *jobRun) onHost(ctx context.Context, plan store.RunStepPlan, pos int, h *store.JobRunHost) (*int, error) {
	db := jr.w.db
	host, err := db.GetHostByID(ctx, h.HostID)
	if err != nil {
		return nil, fmt.Errorf("load host %s: %w", h.Host, err)
	}
	if host.HostKey == "" {
		return nil, fmt.Errorf("host %s has no pinned host key yet; deploy to it once or pin its key before running jobs there", h.Host)
	}
	acct, err := db.GetExecAccountByID(ctx, plan.AccountID)
	if err != nil {
		return nil, fmt.Errorf("load account %s: %w", plan.Account, err)
	}
	t := Target{Name: host.Name, Address: host.Address, Port: host.Port, User: acct.User, PrivateKey: []byte(acct.PrivateKey), HostKey: host.HostKey}
	tctx, cancel := context.WithTimeout(ctx, plan.Timeout.D())
	defer cancel()
	conn, err := Dial(tctx, t, jr.w.cfg.Dial)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	out := func(stream, line string) {
		if jr.log != nil {
			jr.log.Write(stream, store.RunLogHost(pos, h.Host), line)
		}
	}
	switch {
	case plan.Kind == store.StepScript:
		jr.say(pos, h.Host, "running %s version %d as %s", plan.Script, plan.ScriptVersion, acct.User)
		err = conn.Run(tctx, scriptCommand(plan), jr.stepEnv(plan, pos, h.Host), out)
		if tctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("timed out after %s", plan.Timeout.D())
		}
		return exitCode(err), err
	case plan.FileID != 0:
		return nil, jr.putFile(tctx, conn, plan, pos, h.Host)
	default:
		return nil, jr.putVersion(tctx, conn, plan, pos, h.Host)
	}
}

// stepEnv is the environment a script step gets: its parameters and what ferry says of the run.
func (jr *jobRun) stepEnv(plan store.RunStepPlan, pos int, host string) map[string]string {
	env := make(map[string]string, len(plan.Env)+5)
	for k, v := range plan.Env {
		env[k] = v
	}
	env["FERRY_RUN_ID"] = strconv.FormatInt(jr.r.ID, 10)
	env["FERRY_JOB"] = jr.r.Job
	env["FERRY_PROJECT"] = jr.r.Project
	env["FERRY_STEP"] = strconv.Itoa(pos)
	env["FERRY_HOST"] = host
	return env
}

// scriptCommand runs the body with its interpreter; the body is one quoted word, never
// parsed by the outer shell.
func scriptCommand(plan store.RunStepPlan) string {
	interp := "/bin/sh"
	switch plan.Language {
	case store.LangBash:
		interp = "bash"
	case store.LangPython3:
		interp = "python3"
	}
	return interp + " -c " + store.ShellQuote(plan.Body)
}

// exitCode reads the exit status out of Conn.Run's error: 0 for nil, nil when the command
// did not exit by itself.
func exitCode(err error) *int {
	n := 0
	if err == nil {
		return &n
	}
	if _, scanErr := fmt.Sscanf(err.Error(), "exit status %d", &n); scanErr == nil {
		return &n
	}
	return nil
}

// putVersion puts a kept version under the step's path with the deploy engine's upload
// (releases/<version>/, sha256 checked, skipped where the same version is there already).
func (jr *jobRun) putVersion(ctx context.Context, conn *Conn, plan store.RunStepPlan, pos int, host string) error {
	v, err := jr.w.db.GetVersion(ctx, plan.VersionID)
	if err != nil {
		return fmt.Errorf("load version %s: %w", plan.Version, err)
	}
	if v.DeletedAt != nil {
		return fmt.Errorf("version %s was removed by retention", v.Name)
	}
	artifact, err := jr.w.db.LocalArtifact(ctx, v, jr.w.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("the artifact of version %s: %w", v.Name, err)
	}
	rel := Release{Version: v.Name, Artifact: artifact, SHA256: v.SHA256, Size: v.Size}
	sent, err := conn.Upload(ctx, plan.Path, rel, nil)
	if err != nil {
		return err
	}
	if sent == 0 {
		jr.say(pos, host, "%s is in %s/releases already with the same sha256: skipped", v.Name, plan.Path)
		return nil
	}
	jr.say(pos, host, "put %s (%s, sha256 %s) in %s/releases/%s", v.Name, byteCount(sent), v.SHA256[:12], plan.Path, v.Name)
	return nil
}
