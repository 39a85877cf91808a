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
}

// DeployHost runs the whole sequence on one host over conn: upload, stop, switch, start,
// health check, and prune; when stop, start or the health check fails it switches back to the
// previous release and starts it. It reports each step and log line through ev. The error is
// nil only when the host succeeded; HostResult says the same in Status and Reason.
func DeployHost(ctx context.Context, conn *Conn, spec store.DeploySpec, rel Release, ev HostEvents) (HostResult, error) {
	d := &hostDeploy{conn: conn, l: layout{spec.Path}, spec: spec, rel: rel, ev: ev}
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
		ev.say("%s: %s", d.res.Status, d.res.Reason)
		return d.res, fmt.Errorf("deploy %s to %s: %w", rel.Version, conn.target.label(), err)
	}
	d.res.Status = HostSucceeded
	return d.res, nil
}

type hostDeploy struct {
	conn *Conn
	l    layout
	spec store.DeploySpec
	rel  Release
	ev   HostEvents
	res  HostResult
}

func (d *hostDeploy) run(ctx context.Context) error {
	if d.spec.Path == "" {
		return errors.New("deploy.path is not set in .ferry.yml")
	}
	if err := d.upload(ctx); err != nil {
		return err
	}
	previous := d.res.Previous
	if previous != "" {
		d.ev.step(StepStop)
		if err := d.conn.stopRelease(ctx, d.l, d.spec.Stop, previous, d.ev.log); err != nil {
			return d.recover(ctx, err, false)
		}
	}
	d.ev.step(StepSwitch)
	if err := d.conn.switchCurrent(ctx, d.l, d.rel.Version, d.ev.log); err != nil {
		return d.recover(ctx, err, false)
	}
	d.ev.say("current -> releases/%s (was %s)", d.rel.Version, orNone(previous))
	if err := d.startHealthy(ctx, d.rel.Version); err != nil {
		return d.recover(ctx, err, true)
	}
	d.ev.step(StepDone)
	d.prune(ctx)
	return nil
}

func (d *hostDeploy) upload(ctx context.Context) error {
	d.ev.step(StepUpload)
	var err error
	d.res.Previous, err = d.conn.currentVersion(d.l)
	if err != nil {
		return err
	}
	d.res.BytesSent, err = d.conn.Upload(ctx, d.spec.Path, d.rel, d.ev.Progress)
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

// startHealthy starts the release current points at and waits for its health check.
func (d *hostDeploy) startHealthy(ctx context.Context, version string) error {
	d.ev.step(StepStart)
	if err := d.conn.startRelease(ctx, d.l, d.spec.Start, version, d.ev.log); err != nil {
		return err
	}
	d.ev.step(StepHealth)
	if err := d.conn.waitHealthy(ctx, d.l, d.spec.Health, version, d.ev.log); err != nil {
		return fmt.Errorf("release %s on %s: %w", version, d.conn.target.label(), err)
	}
	return nil
}

// recover brings the previous release back after cause made the new one fail: it stops the new
// release when current already points at it, switches current back and starts the previous one.
// It runs on even when ctx was canceled, so a canceled host is not left without a service.
func (d *hostDeploy) recover(ctx context.Context, cause error, switched bool) error {
	previous := d.res.Previous
	if previous == "" || previous == d.rel.Version {
		return fmt.Errorf("%w; no previous release to go back to", cause)
	}
	d.ev.step(StepRollback)
	d.ev.say("%v; going back to release %s", cause, previous)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.recoverTimeout())
	defer cancel()
	if err := d.switchBack(ctx, switched); err != nil {
		return fmt.Errorf("%w; going back to release %s failed too: %v", cause, previous, err)
	}
	d.res.RolledBack = true
	if err := d.startHealthy(ctx, previous); err != nil {
		return fmt.Errorf("%w; switched back to release %s, but it did not come up either: %v", cause, previous, err)
	}
	d.ev.say("release %s is serving again", previous)
	return fmt.Errorf("%w; switched back to release %s", cause, previous)
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

func (d *hostDeploy) recoverTimeout() time.Duration {
	grace, wait := d.spec.Stop.Grace.D(), d.spec.Health.Timeout.D()
	if grace <= 0 {
		grace = store.DefaultStopGrace
	}
	if wait <= 0 {
		wait = store.DefaultHealthWait
	}
	return grace + wait + 2*time.Minute
}

func (d *hostDeploy) prune(ctx context.Context) {
	keep := d.spec.KeepReleases
	if keep <= 0 {
		keep = store.DefaultKeepReleases
	}
	say := func(line string) { d.ev.log(StreamFerry, line) }
	if err := d.conn.prune(ctx, d.l, keep, d.rel.Version, d.res.Previous, say); err != nil {
		d.ev.say("pruning old releases: %v", err)
	}
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}
