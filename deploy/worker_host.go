package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"ferry/store"
)

// progressEvery is how often a host's upload progress is written to the store at most.
const progressEvery = 250 * time.Millisecond

// rollout deploys to the hosts that are not done yet, as the strategy says, with at most
// MaxHostConcurrency hosts at once, and ends the steps of hosts that never started.
func (r *deploymentRun) rollout(ctx context.Context) {
	byName := make(map[string]*hostJob, len(r.hosts))
	var names []string
	for _, j := range r.hosts {
		if j.result == nil {
			byName[j.step.Host] = j
			names = append(names, j.step.Host)
		}
	}
	if plan := Plan(r.strategy, names); len(plan) > 0 && len(plan[0]) > 0 {
		r.runOnce(ctx, plan[0][0]) // hooks.go: deploy.hooks.once, before any host
	}
	slots := make(chan struct{}, r.w.cfg.MaxHostConcurrency)
	outcomes := RunPlan(ctx, r.strategy, names, func(ctx context.Context, name string) error {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-slots }()
		return r.deployHost(ctx, byName[name])
	})
	for _, o := range outcomes {
		j := byName[o.Host]
		if j.result != nil {
			continue
		}
		res := HostResult{Host: o.Host, Version: r.rel.Version, Status: o.Status}
		switch o.Status {
		case HostSkipped:
			res.Reason = "not started: the rollout stopped after a host failed"
		default:
			res.Status = HostCanceled
			res.Reason = "not started: the deployment was canceled"
		}
		j.result = &res
		r.say(o.Host, "%s", res.Reason)
		r.updateStep(ctx, j, store.HostStepUpdate{Status: &res.Status, Error: &res.Reason, Finished: true})
	}
}

// deployHost connects to one host, deploys the release there and records how it went, in
// the host step and in the instance. Its error is nil only when the host succeeded.
func (r *deploymentRun) deployHost(ctx context.Context, j *hostJob) error {
	ev := r.hostEvents(ctx, j)
	ev.step(StepConnect)
	if j.loadErr != nil {
		r.say(j.step.Host, "%s: %v", HostFailed, j.loadErr)
		r.finishHost(ctx, j, HostResult{Host: j.step.Host, Version: r.rel.Version, Status: HostFailed, Reason: j.loadErr.Error()})
		return j.loadErr
	}
	// The SSH handshake goes on while the host's variables and config are read and rendered.
	dialed := make(chan dialResult, 1)
	go func() {
		conn, err := r.w.dial(ctx, j.target, r.dialOptions(ctx, j))
		dialed <- dialResult{conn, err}
	}()
	extras, err := r.hostExtras(ctx, j) // config.go: variables and rendered config, before the host is touched
	if err != nil {
		if d := <-dialed; d.conn != nil {
			r.w.release(d.conn)
		}
		r.say(j.step.Host, "%s: %v", HostFailed, err)
		r.finishHost(ctx, j, HostResult{Host: j.step.Host, Version: r.rel.Version, Status: HostFailed, Reason: err.Error()})
		return err
	}
	ev = extras.masked(ev)
	d := <-dialed
	conn, err := d.conn, d.err
	var changed *HostKeyChangedError
	if errors.As(err, &changed) { // shown on the hosts page beside the pinned key, to re-pin
		if rerr := r.w.db.RecordChangedHostKey(ctx, j.step.HostID, changed.Key); rerr != nil {
			r.w.log.Warn("keep the changed host key", "host", j.step.Host, "error", rerr)
		}
	}
	if err != nil {
		res := HostResult{Host: j.step.Host, Version: r.rel.Version, Status: HostFailed, Reason: err.Error()}
		if ctx.Err() != nil {
			res.Status = HostCanceled
		}
		r.say(j.step.Host, "%s: %s", res.Status, res.Reason)
		r.finishHost(ctx, j, res)
		return err
	}
	defer r.w.release(conn) // kept for the next deployment to the host, unless closed below
	// Once the lease is lost the host is not touched again, not even to switch back: the
	// connection goes, so nothing this run still had under way can reach the host.
	stopFence := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), errLeaseLost) {
			conn.Close()
		}
	})
	defer stopFence()
	ev.say("connected to %s as %s", j.target.label(), j.target.User)
	res, err := DeployHostPlan(ctx, conn, HostPlan{Spec: r.spec, Release: r.rel, Events: ev,
		SpecOf: r.specOf(ctx, j), RecordPrevious: r.recordPrevious(ctx, j), Earlier: earlierOf(j.step),
		Extras: extras})
	r.finishHost(ctx, j, res)
	r.recordInstance(ctx, j, conn, res)
	return err
}

type dialResult struct {
	conn *Conn
	err  error
}

// dialOptions are the worker's with trust on first use: a host without a pinned key gets the
// key it offers now pinned in the store, and later connections insist on it. A host in a
// protected environment is not trusted on first use: its key is kept as offered and the
// connection refused until an administrator accepts it (store.AcceptHostKey).
func (r *deploymentRun) dialOptions(ctx context.Context, j *hostJob) DialOptions {
	opts := r.w.cfg.Dial
	opts.OnNewHostKey = func(line string) error {
		fingerprint := line
		if key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
			fingerprint = ssh.FingerprintSHA256(key)
		}
		protected, err := r.w.db.ProtectedEnvironmentsOf(ctx, j.step.HostID)
		if err != nil {
			return err
		}
		if len(protected) > 0 {
			return r.refuseUnpinned(ctx, j, line, fingerprint, protected)
		}
		if err := r.w.db.PinHostKey(ctx, j.step.HostID, line); err != nil {
			return err
		}
		r.say(j.step.Host, "no host key was pinned for %s: trusting %s on first use and pinning it", j.step.Host, fingerprint)
		return nil
	}
	return opts
}

// refuseUnpinned keeps the key an unpinned host in a protected environment offered, for an
// administrator to accept, and returns the error that refuses the connection.
func (r *deploymentRun) refuseUnpinned(ctx context.Context, j *hostJob, line, fingerprint string, protected []string) error {
	if err := r.w.db.OfferHostKey(ctx, j.step.HostID, line); err != nil {
		return err
	}
	r.w.log.Warn("refused the unpinned host key of a host in a protected environment",
		"deployment", r.d.ID, "host", j.step.Host, "fingerprint", fingerprint)
	return &HostKeyRefusedError{Reason: fmt.Sprintf("%s is in the protected environment %s and has no pinned host key, so ferry does not trust the key it offers (%s) on first use; "+
		"check that fingerprint on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then an administrator accepts it with "+
		`POST /api/v1/hosts/%s/accept-key {"fingerprint":"%s"} (or sets the host's host_key) and deploys again`,
		j.step.Host, strings.Join(protected, ", "), fingerprint, j.step.Host, fingerprint)}
}

// hostEvents writes a host's steps, log lines and upload progress to the store.
func (r *deploymentRun) hostEvents(ctx context.Context, j *hostJob) HostEvents {
	var mu sync.Mutex
	var lastProgress time.Time
	running := store.HostRunning
	return HostEvents{
		Step: func(step string) {
			u := store.HostStepUpdate{Step: &step}
			if step == StepConnect {
				u.Status, u.Started = &running, true
			}
			r.updateStep(ctx, j, u)
		},
		Log: func(stream, line string) {
			if r.log == nil {
				return
			}
			keep, notice := true, ""
			if stream != StreamFerry {
				keep, notice = r.logBudget.admit(j.step.Host, int64(len(line))+1)
			}
			if notice != "" {
				r.log.Write(StreamFerry, j.step.Host, notice)
			}
			if keep {
				r.log.Write(stream, j.step.Host, line)
			}
		},
		Progress: func(sent, total int64) {
			mu.Lock()
			now := time.Now()
			due := now.Sub(lastProgress) >= progressEvery || sent >= total
			if due {
				lastProgress = now
			}
			mu.Unlock()
			if due {
				r.updateStep(ctx, j, store.HostStepUpdate{BytesSent: &sent, BytesTotal: &total})
			}
		},
	}
}

// finishHost records how a host ended in its step and its log.
func (r *deploymentRun) finishHost(ctx context.Context, j *hostJob, res HostResult) {
	j.result = &res
	u := store.HostStepUpdate{Status: &res.Status, BytesSent: &res.BytesSent, Finished: true}
	if res.BytesSent > 0 {
		u.BytesTotal = &r.rel.Size
	}
	if res.Reason != "" {
		u.Error = &res.Reason
	}
	r.updateStep(ctx, j, u)
	if res.Status == HostSucceeded {
		r.say(j.step.Host, "%s is running %s (%s)", j.step.Host, res.Version, res.Duration.Round(time.Millisecond))
	}
}

// updateStep writes to a host step even after ctx ended, so a canceled host still says so.
func (r *deploymentRun) updateStep(ctx context.Context, j *hostJob, u store.HostStepUpdate) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	err := r.w.db.UpdateHostStep(ctx, r.d.ID, j.step.HostID, r.lease, u)
	if store.ErrorCode(err) == store.ECONFLICT {
		r.cancel(errLeaseLost) // another claim has the deployment: stop at once
	}
	if err != nil {
		r.w.log.Warn("update a host step", "deployment", r.d.ID, "host", j.step.Host, "err", err)
	}
}

// recordInstance reads what the host holds now and records it as the project's instance
// there: the release current points at, the one before it and every release kept.
func (r *deploymentRun) recordInstance(ctx context.Context, j *hostJob, conn *Conn, res HostResult) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var state HostState
	if res.Status == HostSucceeded && res.Kept != nil { // known without asking the host again
		state.Current = res.Version
		for _, v := range res.Kept {
			state.Releases = append(state.Releases, KeptRelease{Version: v})
		}
	} else {
		var err error
		if state, err = conn.State(ctx, r.spec.Path); err != nil {
			r.say(j.step.Host, "could not read which releases %s holds: %v", j.step.Host, err)
			return
		}
	}
	in := store.Instance{
		ProjectID: r.d.ProjectID, HostID: j.step.HostID, Host: j.step.Host,
		EnvironmentID: &r.d.EnvironmentID, Environment: r.d.Environment,
		Version: state.Current, Releases: []string{}, Status: res.Status,
		DeploymentID: &r.d.ID, Since: r.w.db.Now().UTC(),
	}
	for _, kept := range state.Releases {
		in.Releases = append(in.Releases, kept.Version)
		if in.Previous == "" && kept.Version != state.Current {
			in.Previous = kept.Version
		}
	}
	if old := r.instances[j.step.HostID]; old != nil && old.Version == state.Current && res.Status != HostSucceeded {
		in.Since = old.Since // the same release kept running
	}
	if err := r.w.db.SetInstance(ctx, in); err != nil {
		r.w.log.Warn("record an instance", "deployment", r.d.ID, "host", j.step.Host, "err", err)
		r.say(j.step.Host, "could not record what runs on %s: %v", j.step.Host, err)
	}
}
