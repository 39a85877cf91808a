package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ferry/store"
)

// Hook stages, as named under deploy.hooks in .ferry.yml.
const (
	HookOnce         = "once"
	HookBeforeStop   = "before_stop"
	HookAfterSwitch  = "after_switch"
	HookAfterStart   = "after_start"
	HookAfterSuccess = "after_success"
	HookOnFailure    = "on_failure"
)

// hookTimeout bounds one stage's commands on a host.
const hookTimeout = 30 * time.Minute

// hookCommands returns the commands of a stage.
func hookCommands(h store.Hooks, stage string) []string {
	switch stage {
	case HookOnce:
		return h.Once
	case HookBeforeStop:
		return h.BeforeStop
	case HookAfterSwitch:
		return h.AfterSwitch
	case HookAfterStart:
		return h.AfterStart
	case HookAfterSuccess:
		return h.AfterSuccess
	case HookOnFailure:
		return h.OnFailure
	}
	return nil
}

// hookEnv is a hook's environment: the release's (FERRY_VERSION, FERRY_RELEASE_DIR, ...) and the
// variables of x. Values reach the host as data: Run exports each quoted with store.ShellQuote.
func hookEnv(l layout, version string, x *HostExtras) map[string]string {
	env := releaseEnv(l, version)
	if x != nil {
		for k, v := range x.Env {
			env[k] = v
		}
	}
	return env
}

// runHook runs a stage's commands one after another on the host, in the release directory of
// version, with env; output goes to out. The first command that fails ends the stage with an
// error naming the stage and the command.
func (c *Conn) runHook(ctx context.Context, l layout, version, stage string, cmds []string, env map[string]string, out func(stream, line string)) error {
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	for _, cmd := range cmds {
		out(StreamFerry, fmt.Sprintf("hook %s: %s", stage, cmd))
		script := fmt.Sprintf("cd %s && %s", store.ShellQuote(l.release(version)), cmd)
		if err := c.Run(ctx, script, env, out); err != nil {
			return fmt.Errorf("hook %s (%s) on %s: %w", stage, cmd, c.target.label(), err)
		}
	}
	return nil
}

// hostSteps are the steps a host goes through, hook stages included, in order: a host step
// records the last one begun (a hook stage only when it has commands).
var hostSteps = []string{StepConnect, StepUpload, HookBeforeStop, StepStop, StepSwitch, HookAfterSwitch,
	StepStart, HookAfterStart, StepHealth, HookAfterSuccess, StepDone}

// stepIndex is step's place in hostSteps, -1 for another (rollback).
func stepIndex(step string) int {
	for i, s := range hostSteps {
		if s == step {
			return i
		}
	}
	return -1
}

// hookOnce runs a stage of the new release's hooks on the host, unless the interrupted attempt
// this one takes over had begun it already (hookBegun): each hook runs at most once per switch
// of a host to the release, and a hook cut off half way is not run again.
func (d *hostDeploy) hookOnce(ctx context.Context, stage string) error {
	if len(hookCommands(d.spec.Hooks, stage)) == 0 {
		return nil
	}
	if d.hookBegun(stage) {
		d.ev.say("hook %s: not run again, the interrupted attempt had begun it (it was at step %s)", stage, d.plan.Earlier.Step)
		return nil
	}
	return d.hook(ctx, stage)
}

// hookBegun says whether the interrupted attempt this one takes over had begun stage on the
// host. One that got past the switch while current no longer points at the new release had
// switched back: this attempt switches again, and runs the hooks after the switch again.
func (d *hostDeploy) hookBegun(stage string) bool {
	e := d.plan.Earlier
	if e == nil || stepIndex(e.Step) < stepIndex(stage) { // rollback is -1
		return false
	}
	return stepIndex(e.Step) <= stepIndex(StepSwitch) || d.state.Current == d.rel.Version
}

// hook runs a stage of the new release's hooks on the host, recording the stage as the host's
// step first.
func (d *hostDeploy) hook(ctx context.Context, stage string) error {
	cmds := hookCommands(d.spec.Hooks, stage)
	if len(cmds) == 0 {
		return nil
	}
	d.ev.step(stage)
	return d.conn.runHook(ctx, d.l, d.rel.Version, stage, cmds, hookEnv(d.l, d.rel.Version, d.plan.Extras), d.ev.log)
}

// writeExtras writes the host's rendered config files into the uploaded release, before
// anything is stopped.
func (d *hostDeploy) writeExtras() error {
	if d.plan.Extras == nil {
		return nil
	}
	d.ev.say("variables: %s", d.plan.Extras.Sources)
	return d.conn.writeConfig(d.l, d.rel.Version, d.plan.Extras.Files, d.ev.say)
}

// onFailure runs the on_failure hook after the host failed for cause, even when ctx ended; its
// own failure is only logged.
func (d *hostDeploy) onFailure(ctx context.Context, cause error) {
	cmds := hookCommands(d.spec.Hooks, HookOnFailure)
	if len(cmds) == 0 || errors.Is(context.Cause(ctx), errLeaseLost) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	env := hookEnv(d.l, d.rel.Version, d.plan.Extras)
	env["FERRY_FAILURE"] = cause.Error()
	if err := d.conn.runHook(ctx, d.l, d.rel.Version, HookOnFailure, cmds, env, d.ev.log); err != nil {
		d.ev.say("%v", err)
	}
}

// runOnce runs deploy.hooks.once on the first host of the rollout, before any host is
// deployed: it connects (through the worker's kept connections, so the host's own deployment
// after it goes over the same one), uploads the release, writes that host's config and runs the
// hook in the release directory. When it fails, every host fails with that reason (none is
// touched further). A takeover does not run it again once an earlier attempt got past it (some
// host had started).
func (r *deploymentRun) runOnce(ctx context.Context, first string) {
	if len(r.spec.Hooks.Once) == 0 || first == "" {
		return
	}
	var j *hostJob
	for _, h := range r.hosts {
		if h.result != nil || earlierOf(h.step) != nil {
			r.say("", "hook once: not run again, an earlier attempt of this deployment ran it before starting the hosts")
			return
		}
		if h.step.Host == first {
			j = h
		}
	}
	if j == nil || j.loadErr != nil {
		return
	}
	if err := r.onceOn(ctx, j); err != nil {
		r.config.mu.Lock()
		r.config.err = fmt.Errorf("the once hook failed on %s, so no host was changed: %w", j.step.Host, err)
		r.config.mu.Unlock()
	}
}

func (r *deploymentRun) onceOn(ctx context.Context, j *hostJob) error {
	x, err := r.hostExtras(ctx, j)
	if err != nil {
		return err
	}
	ev := x.masked(r.hostEvents(ctx, j))
	ev.say("hook once: running on %s before the other hosts", j.step.Host)
	conn, err := r.w.dial(ctx, j.target, r.dialOptions(ctx, j)) // kept for the host's own deployment after
	if err != nil {
		return err
	}
	defer r.w.release(conn)
	l := layout{root: r.spec.Path, vars: x.Env}
	if _, err := conn.Upload(ctx, r.spec.Path, r.rel, nil); err != nil {
		return err
	}
	if err := conn.writeConfig(l, r.rel.Version, x.Files, ev.say); err != nil {
		return err
	}
	if err := conn.runHook(ctx, l, r.rel.Version, HookOnce, r.spec.Hooks.Once, hookEnv(l, r.rel.Version, x), ev.log); err != nil {
		ev.say("%v", err)
		return err
	}
	return nil
}
