package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"ferry/store"
)

// switchScript points current at releases/<version> with one rename over the old link, so
// there is never a moment without a current link, and marks the release as just deployed.
func switchScript(l layout, version string) string {
	return fmt.Sprintf("cd %s && touch -c %s && ln -sfn %s .current.tmp && mv -T .current.tmp current",
		store.ShellQuote(l.root), store.ShellQuote("releases/"+version), store.ShellQuote("releases/"+version))
}

// newMarker returns a line only one command prints ("ferry-<what>-<nonce>"): the output before
// it belongs to one step, the output after it to the next.
func newMarker(what string) string {
	nonce := make([]byte, 12)
	rand.Read(nonce)
	return "ferry-" + what + "-" + hex.EncodeToString(nonce)
}

// stopAndSwitch stops the release current points at (previous, with its stop section) and,
// once it stopped, switches current to version, in one command: one round trip less for every
// deployment and rollback. The step is the same as stopRelease then switchCurrent: switched
// is called between the two (for the switch step) and the error says which of them failed;
// either way current still points at previous.
func (c *Conn) stopAndSwitch(ctx context.Context, l layout, spec store.StopSpec, previous, version string, out func(stream, line string), switched func()) error {
	stop, grace := stopScript(l, spec)
	if stop == "" {
		out(StreamFerry, "no stop command or pid file in .ferry.yml: nothing to stop")
		switched()
		return c.switchCurrent(ctx, l, version, out)
	}
	ctx, cancel := context.WithTimeout(ctx, grace+time.Minute)
	defer cancel()
	marker := newMarker("stopped")
	stopped := false
	relay := func(stream, line string) {
		if stream == StreamStdout && line == marker {
			stopped = true
			switched()
			return
		}
		out(stream, line)
	}
	script := "(\n" + stop + "\n) || exit $?\necho " + marker + "\n" + switchScript(l, version)
	err := c.Run(ctx, script, releaseEnv(l, previous), relay)
	switch {
	case err == nil:
		return nil
	case stopped:
		return fmt.Errorf("switch %s to release %s on %s: %w", l.current(), version, c.target.label(), err)
	}
	return fmt.Errorf("stop release %s on %s: %w", previous, c.target.label(), err)
}

// stopSwitchStart replaces the release the host runs (d.res.Previous, "" for none) with the new
// one: stop, switch, start and health check. Without an after_switch hook to run between the
// switch and the start, stop, switch and start are one command on the host, and the health
// check begins while the start is still watched for an early exit (startAndCheck). Each step
// keeps its own step event, log lines and error. switched says whether current was switched
// to the new release, for the way back.
func (d *hostDeploy) stopSwitchStart(ctx context.Context) (switched bool, err error) {
	if len(hookCommands(d.spec.Hooks, HookAfterSwitch)) > 0 {
		if err := d.stopThenSwitch(ctx); err != nil {
			return false, err
		}
		d.ev.say("current -> releases/%s (was %s)", d.rel.Version, orNone(d.res.Previous))
		if err := d.hookOnce(ctx, HookAfterSwitch); err != nil { // hooks.go
			return true, err
		}
		return true, d.startAndCheck(ctx, d.rel.Version, d.spec)
	}
	return d.replaceInOne(ctx)
}

// stopThenSwitch stops the previous release and switches current, in one command.
func (d *hostDeploy) stopThenSwitch(ctx context.Context) error {
	if d.res.Previous == "" {
		d.ev.step(StepSwitch)
		return d.conn.switchCurrent(ctx, d.l, d.rel.Version, d.ev.log)
	}
	d.ev.step(StepStop)
	return d.conn.stopAndSwitch(ctx, d.l, d.prevSpec.Stop, d.res.Previous, d.rel.Version, d.ev.log, func() { d.ev.step(StepSwitch) })
}

// replaceInOne stops the previous release, switches current and starts the new release in one
// command, each part in a subshell with its own release's environment; a line only this
// command prints ends each part, so each step's output, step event and error stay its own.
func (d *hostDeploy) replaceInOne(ctx context.Context) (switched bool, err error) {
	previous, version := d.res.Previous, d.rel.Version
	var script strings.Builder
	grace := time.Duration(0)
	if previous != "" {
		d.ev.step(StepStop)
		stop, g := stopScript(d.l, d.prevSpec.Stop)
		if stop == "" {
			d.ev.say("no stop command or pid file in .ferry.yml: nothing to stop")
		} else if err := inSubshell(&script, stop, releaseEnv(d.l, previous)); err != nil {
			return false, fmt.Errorf("stop release %s on %s: %w", previous, d.conn.target.label(), err)
		}
		grace = g
	}
	stopped, isSwitched := newMarker("stopped"), newMarker("switched")
	fmt.Fprintf(&script, "echo %s\n%s || exit $?\necho %s\n", stopped, switchScript(d.l, version), isSwitched)
	start := d.newStart(ctx, version, d.spec)
	if d.spec.Start != "" {
		if err := inSubshell(&script, startScript(d.l, d.spec.Start, version, start.launched), releaseEnv(d.l, version)); err != nil {
			return false, fmt.Errorf("start release %s on %s: %w", version, d.conn.target.label(), err) // nothing ran yet
		}
	}
	phase := StepStop
	relay := func(stream, line string) {
		switch {
		case stream != StreamStdout:
		case line == stopped:
			phase = StepSwitch
			if previous != "" {
				d.ev.step(StepSwitch)
			}
			return
		case line == isSwitched:
			phase = StepStart
			d.ev.say("current -> releases/%s (was %s)", version, orNone(previous))
			d.ev.step(StepStart)
			if d.spec.Start == "" {
				d.ev.say("no start command in .ferry.yml: nothing to start")
			}
			return
		case start.consumes(line):
			return
		}
		d.ev.log(stream, line)
	}
	if previous == "" {
		d.ev.step(StepSwitch)
	}
	runCtx, cancel := context.WithTimeout(ctx, grace+time.Minute)
	defer cancel()
	run := d.conn.Run
	if d.held != nil { // the probe's session, waiting for this command
		run, d.held = d.held.Run, nil
	}
	err = run(runCtx, script.String(), nil, relay)
	switch {
	case phase == StepStop && err != nil:
		return false, fmt.Errorf("stop release %s on %s: %w", previous, d.conn.target.label(), err)
	case phase == StepSwitch && err != nil:
		return false, fmt.Errorf("switch %s to release %s on %s: %w", d.l.current(), version, d.conn.target.label(), err)
	case phase == StepSwitch:
		return false, fmt.Errorf("switch %s to release %s on %s: the command ended before it said it switched", d.l.current(), version, d.conn.target.label())
	}
	return true, start.finish(ctx, err)
}

// inSubshell appends to b a subshell that exports env and runs part, leaving the script with
// part's status when it fails.
func inSubshell(b *strings.Builder, part string, env map[string]string) error {
	exports, err := exportPrefix(env)
	if err != nil {
		return err
	}
	fmt.Fprintf(b, "(\n%s\n%s\n) || exit $?\n", exports, part)
	return nil
}
