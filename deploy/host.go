package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ferry/store"
)

// Steps of a deployment on one host, in the order they happen.
const (
	StepConnect  = "connect"
	StepUpload   = "upload"
	StepStop     = "stop"
	StepSwitch   = "switch"
	StepStart    = "start"
	StepHealth   = "health"
	StepRollback = "rollback"
	StepDone     = "done"
)

// Statuses of a host at the end of a deployment.
const (
	HostSucceeded = "succeeded"
	HostFailed    = "failed"
	HostCanceled  = "canceled"
	HostSkipped   = "skipped" // not started: the rollout stopped after another host failed
)

// HostEvents receives what happens on one host while it is deployed, so the worker can store
// and stream it. Any field may be nil. Calls for one host never overlap.
type HostEvents struct {
	// Step is called when a step begins.
	Step func(step string)
	// Log is called for every log line; stream is stdout, stderr or ferry.
	Log func(stream, line string)
	// Progress is called while the artifact is uploaded.
	Progress func(sent, total int64)
}

func (e HostEvents) step(s string) {
	if e.Step != nil {
		e.Step(s)
	}
}

func (e HostEvents) log(stream, line string) {
	if e.Log != nil {
		e.Log(stream, line)
	}
}

func (e HostEvents) say(format string, args ...any) { e.log(StreamFerry, fmt.Sprintf(format, args...)) }

// HostResult is how a deployment went on one host.
type HostResult struct {
	Host     string
	Version  string
	Previous string // the release current pointed at before, "" on a first deployment
	Status   string // HostSucceeded, HostFailed, HostCanceled or HostSkipped
	// BytesSent is 0 when the release was already on the host.
	BytesSent  int64
	RolledBack bool   // current was switched back to Previous
	Reason     string // why the host failed, in words
	Duration   time.Duration
	// Kept are the releases the host keeps once it succeeded, the new one first and the others
	// most recently deployed first; nil when that is not known (the host failed, or pruning
	// did), and the host must be asked.
	Kept []string
}

// HostPlan is what DeployHostPlan does on one host, besides the connection.
type HostPlan struct {
	// Spec is the deploy section of the new release's .ferry.yml.
	Spec    store.DeploySpec
	Release Release
	Events  HostEvents
	// SpecOf returns the deploy section of the .ferry.yml a release already on the host was
	// deployed with, so that release is stopped, restarted and checked with its own steps. When
	// SpecOf is nil the new release's steps are used; when it fails they are used too, and the
	// log says so.
	SpecOf func(version string) (store.DeploySpec, error)
	// RecordPrevious is called with the release the host runs ("" for none) before anything
	// there is stopped; when it fails the host fails with nothing changed. Not called when
	// Earlier is set: that record stands.
	RecordPrevious func(release string) error
	// Earlier is what an interrupted attempt on this host recorded; nil for a first attempt.
	Earlier *Earlier
	// Extras are the host's rendered config files and the variables its hooks see (config.go,
	// hooks.go); nil for none.
	Extras *HostExtras
}

// Earlier is what an attempt on a host that was interrupted (ferry stopped or died) recorded
// before it stopped anything: the release to go back to and the last step it began.
type Earlier struct {
	Previous string // the release the host ran before the attempt, "" for none
	Step     string // one of the Step* names
}

// DeployHost runs the whole sequence on one host over conn with the release's own deploy steps
// for every release: see DeployHostPlan.
func DeployHost(ctx context.Context, conn *Conn, spec store.DeploySpec, rel Release, ev HostEvents) (HostResult, error) {
	return DeployHostPlan(ctx, conn, HostPlan{Spec: spec, Release: rel, Events: ev})
}

// DeployHostPlan runs the whole sequence on one host over conn: upload, stop the running
// release (with its own stop section), switch, start, health check, and prune; when stop,
// start or the health check fails it switches back to the previous release and starts and
// checks it with that release's own steps. Taking over an interrupted attempt (plan.Earlier),
// it goes on from where that attempt was, or back to the release it recorded. It reports each
// step and log line through plan.Events. The error is nil only when the host succeeded;
// HostResult says the same in Status and Reason.
func DeployHostPlan(ctx context.Context, conn *Conn, plan HostPlan) (HostResult, error) {
	rel, ev := plan.Release, plan.Events
	d := &hostDeploy{conn: conn, l: layout{root: plan.Spec.Path, vars: extrasEnv(plan.Extras)}, spec: plan.Spec, prevSpec: plan.Spec, rel: rel, ev: ev, plan: plan}
	d.res = HostResult{Host: conn.target.Name, Version: rel.Version}
	start := time.Now()
	err := d.run(ctx)
	d.res.Duration = time.Since(start)
	if err != nil {
		d.res.Reason = err.Error()
		d.res.Status = HostFailed
		if ctx.Err() != nil {
			d.res.Status = HostCanceled
		}
		d.onFailure(ctx, err) // hooks.go
		ev.say("%s: %s", d.res.Status, d.res.Reason)
		return d.res, fmt.Errorf("deploy %s to %s: %w", rel.Version, conn.target.label(), err)
	}
	d.res.Status = HostSucceeded
	return d.res, nil
}

type hostDeploy struct {
	conn *Conn
	l    layout
	spec store.DeploySpec // the new release's steps
	// prevSpec are the steps of the release the host ran before (spec when unknown).
	prevSpec store.DeploySpec
	rel      Release
	ev       HostEvents
	plan     HostPlan
	res      HostResult
	// state is what the host held before this attempt changed anything.
	state HostState
	// held is the probe's session, kept for the stop, switch and start (state.go); nil when
	// there is none.
	held *heldSession
}

func (d *hostDeploy) run(ctx context.Context) error {
	if d.spec.Path == "" {
		return errors.New("deploy.path is not set in .ferry.yml")
	}
	if err := d.rel.Validate(); err != nil {
		return err
	}
	d.ev.step(StepUpload)
	// One command reads what the host holds (and removes what an earlier upload left), for the
	// release to go back to, whether this one is already there, and what to prune after.
	if err := d.probeState(ctx); err != nil { // state.go
		return err
	}
	defer d.held.Close()
	if err := d.findPrevious(); err != nil {
		return err
	}
	if err := d.upload(ctx); err != nil {
		return err
	}
	if err := d.writeExtras(); err != nil { // config.go: rendered config, before anything stops
		return err
	}
	if d.plan.Earlier != nil {
		if handled, err := d.resume(ctx); handled {
			return err
		}
	}
	return d.replace(ctx)
}

// replace stops the previous release, switches to the new one, starts and checks it.
func (d *hostDeploy) replace(ctx context.Context) error {
	if err := d.hookOnce(ctx, HookBeforeStop); err != nil { // hooks.go: nothing stopped yet
		return err
	}
	// stopswitch.go: stop, switch and start in as few commands as the hooks allow
	if switched, err := d.stopSwitchStart(ctx); err != nil {
		return d.recover(ctx, err, switched)
	}
	if err := d.hookOnce(ctx, HookAfterSuccess); err != nil { // hooks.go
		return d.recover(ctx, err, true)
	}
	d.finish(ctx)
	return nil
}

func (d *hostDeploy) finish(ctx context.Context) {
	d.ev.step(StepDone)
	d.prune(ctx)
}

// findPrevious learns which release the host runs before anything is changed, and records it
// (plan.RecordPrevious); a takeover takes it from the earlier attempt's record instead, since
// current may already point at the new release.
func (d *hostDeploy) findPrevious() error {
	if e := d.plan.Earlier; e != nil {
		d.res.Previous = e.Previous
		d.ev.say("taking over an interrupted attempt at step %s: before it, the host ran %s", orNone(e.Step), orNone(e.Previous))
	} else {
		current := d.state.Current
		d.res.Previous = current
		if d.plan.RecordPrevious != nil {
			if err := d.plan.RecordPrevious(current); err != nil {
				return fmt.Errorf("record which release the host runs (%s) before changing anything: %w", orNone(current), err)
			}
		}
	}
	d.prevSpec = d.specOf(d.res.Previous)
	return nil
}

// specOf returns the deploy steps of a release on the host: its own, or the new release's when
// they cannot be had (and the log says so). The deploy path stays the new release's: the
// release was found under it.
func (d *hostDeploy) specOf(version string) store.DeploySpec {
	if version == "" || version == d.rel.Version || d.plan.SpecOf == nil {
		return d.spec
	}
	spec, err := d.plan.SpecOf(version)
	if err != nil {
		d.ev.say("%v: release %s is stopped, and restarted if need be, with the deploy steps of %s", err, version, d.rel.Version)
		return d.spec
	}
	spec.Path = d.spec.Path
	return spec
}

// resume goes on from where an interrupted attempt stopped, when that attempt had switched
// current to the new release or was going back: handled is false when nothing had been switched
// yet, and the usual sequence (stop, switch, start, check) is safe to run again. The new
// release's hooks the interrupted attempt had not begun run now, in their usual places; one it
// had begun is not run again (hookOnce).
func (d *hostDeploy) resume(ctx context.Context) (handled bool, err error) {
	e, version, previous := d.plan.Earlier, d.rel.Version, d.res.Previous
	current := d.state.Current // the upload before did not move it
	switch {
	case e.Step == StepRollback:
		cause := fmt.Errorf("release %s had failed on %s and ferry stopped while going back to release %s", version, d.conn.target.label(), orNone(previous))
		if current != version && previous != "" {
			d.ev.say("current points at %s: stopping and starting it again with its own deploy steps", orNone(current))
			return true, d.restartPrevious(ctx, cause)
		}
		return true, d.recover(ctx, cause, current == version)
	case current != version:
		return false, nil
	case e.Step == StepSwitch || e.Step == HookAfterSwitch:
		d.ev.say("current already points at %s: starting it", version)
		if err := d.hookOnce(ctx, HookAfterSwitch); err != nil {
			return true, d.recover(ctx, err, true)
		}
		if err := d.startHealthy(ctx, version, d.spec); err != nil {
			return true, d.recover(ctx, err, true)
		}
	case stepIndex(e.Step) >= stepIndex(StepStart):
		d.ev.say("current already points at %s, which was started: checking its health again", version)
		if err := d.hookOnce(ctx, HookAfterStart); err != nil {
			return true, d.recover(ctx, err, true)
		}
		d.ev.step(StepHealth)
		if err := d.conn.waitHealthy(ctx, d.l, d.spec.Health, version, d.ev.log); err != nil {
			return true, d.recover(ctx, fmt.Errorf("release %s on %s: %w", version, d.conn.target.label(), err), true)
		}
	default: // connect, upload or stop of the same release deployed again: nothing was switched
		return false, nil
	}
	if err := d.hookOnce(ctx, HookAfterSuccess); err != nil {
		return true, d.recover(ctx, err, true)
	}
	d.finish(ctx)
	return true, nil
}

// restartPrevious stops and starts again the previous release current already points at, when
// a takeover finds a switch back half done; it runs on after ctx ends, like recover.
func (d *hostDeploy) restartPrevious(ctx context.Context, cause error) error {
	previous := d.res.Previous
	if errors.Is(context.Cause(ctx), errLeaseLost) {
		return fmt.Errorf("%w; the host is left as it is: the run that took the deployment over goes on from there", cause)
	}
	d.ev.step(StepRollback)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.recoverTimeout())
	defer cancel()
	d.res.RolledBack = true
	if err := d.conn.stopRelease(ctx, d.l, d.prevSpec.Stop, previous, d.ev.log); err != nil {
		d.ev.say("stopping release %s: %v", previous, err)
	}
	return d.backUp(ctx, cause)
}

func (d *hostDeploy) upload(ctx context.Context) error {
	var err error
	d.res.BytesSent, err = d.conn.upload(ctx, d.l, d.state, d.rel, d.ev.Progress, func(line string) { d.ev.say("%s", line) })
	if err != nil {
		return err
	}
	if d.res.BytesSent == 0 {
		d.ev.say("release %s is already on the host with sha256 %s: nothing to upload", d.rel.Version, d.rel.SHA256)
	} else {
		d.ev.say("uploaded %s (%s) and unpacked it into %s", d.rel.Version, byteCount(d.res.BytesSent), d.l.release(d.rel.Version))
	}
	return nil
}

// startHealthy starts the release current points at and waits for its health check, both as
// spec (that release's own deploy steps) says (restart.go).
func (d *hostDeploy) startHealthy(ctx context.Context, version string, spec store.DeploySpec) error {
	return d.startAndCheck(ctx, version, spec)
}

// recover brings the previous release back after cause made the new one fail: it stops the new
// release (with its own stop section) when current already points at it, switches current back
// and starts and checks the previous one with the previous release's own steps. It runs on
// even when ctx was canceled, so a canceled host is not left without a service.
func (d *hostDeploy) recover(ctx context.Context, cause error, switched bool) error {
	previous := d.res.Previous
	if previous == "" || previous == d.rel.Version {
		return fmt.Errorf("%w; no previous release to go back to", cause)
	}
	if errors.Is(context.Cause(ctx), errLeaseLost) {
		return fmt.Errorf("%w; the host is left as it is: the run that took the deployment over goes on from there", cause)
	}
	d.ev.step(StepRollback)
	d.ev.say("%v; going back to release %s", cause, previous)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.recoverTimeout())
	defer cancel()
	if err := d.switchBack(ctx, switched); err != nil {
		return fmt.Errorf("%w; going back to release %s failed too: %v", cause, previous, err)
	}
	d.res.RolledBack = true
	return d.backUp(ctx, cause)
}

// backUp starts the previous release, which current points at again, with its own steps.
func (d *hostDeploy) backUp(ctx context.Context, cause error) error {
	previous := d.res.Previous
	if err := d.startHealthy(ctx, previous, d.prevSpec); err != nil {
		return fmt.Errorf("%w; switched back to release %s, but it did not come up either: %v", cause, previous, err)
	}
	d.ev.say("release %s is running again and passed its own health check", previous)
	return fmt.Errorf("%w; switched back to release %s, which is running again", cause, previous)
}

func (d *hostDeploy) switchBack(ctx context.Context, switched bool) error {
	if !switched {
		return nil
	}
	if err := d.conn.stopRelease(ctx, d.l, d.spec.Stop, d.rel.Version, d.ev.log); err != nil {
		d.ev.say("stopping the failed release: %v", err)
	}
	if err := d.conn.switchCurrent(ctx, d.l, d.res.Previous, d.ev.log); err != nil {
		return err
	}
	d.ev.say("current -> releases/%s", d.res.Previous)
	return nil
}

// recoverTimeout bounds going back: both releases' grace periods and the previous one's
// health wait, and two minutes for the rest.
func (d *hostDeploy) recoverTimeout() time.Duration {
	grace := func(s store.DeploySpec) time.Duration {
		if g := s.Stop.Grace.D(); g > 0 {
			return g
		}
		return store.DefaultStopGrace
	}
	wait := d.prevSpec.Health.Timeout.D()
	if wait <= 0 {
		wait = store.DefaultHealthWait
	}
	return grace(d.spec) + grace(d.prevSpec) + wait + 2*time.Minute
}

func (d *hostDeploy) prune(ctx context.Context) {
	keep := d.spec.KeepReleases
	if keep <= 0 {
		keep = store.DefaultKeepReleases
	}
	say := func(line string) { d.ev.log(StreamFerry, line) }
	// The release just switched to is the most recently deployed; the others keep their order.
	kept := []KeptRelease{{Version: d.rel.Version}}
	for _, r := range d.state.Releases {
		if r.Version != d.rel.Version {
			kept = append(kept, r)
		}
	}
	left, err := d.conn.prune(ctx, d.l, kept, keep, d.rel.Version, d.res.Previous, say)
	if err != nil {
		d.ev.say("pruning old releases: %v", err)
	}
	d.res.Kept = left
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}
