package deploy

import (
	"context"
	"fmt"

	"ferry/store"
)

// RolloutOptions say what a rollout puts where and how.
type RolloutOptions struct {
	Spec    store.DeploySpec
	Release Release
	Dial    DialOptions
	// Events returns the callbacks for one host (by Target.Name); nil means none.
	Events func(host string) HostEvents
	// SpecOf returns the deploy section a release already on a host was deployed with; see
	// HostPlan.SpecOf.
	SpecOf func(version string) (store.DeploySpec, error)
	// Pool, when set, lends connections kept from earlier rollouts and keeps this one's for
	// later ones; nil dials every host and closes the connection after.
	Pool *ConnPool
}

// Rollout deploys opts.Release to targets following opts.Spec.Strategy: per host it connects,
// runs DeployHost and closes the connection. Target names must be unique. It returns one
// result per target, in order; a host that never started has Status skipped or canceled.
func Rollout(ctx context.Context, targets []Target, opts RolloutOptions) []HostResult {
	byName := make(map[string]Target, len(targets))
	names := make([]string, len(targets))
	for i, t := range targets {
		byName[t.Name] = t
		names[i] = t.Name
	}
	if opts.Release.Files == nil {
		opts.Release.Files = NewFileIndex() // read once for every host
	}
	results := make(map[string]HostResult, len(targets))
	resultsLock := make(chan struct{}, 1)
	outcomes := RunPlan(ctx, opts.Spec.Strategy, names, func(ctx context.Context, name string) error {
		res, err := deployTarget(ctx, byName[name], opts)
		resultsLock <- struct{}{}
		results[name] = res
		<-resultsLock
		return err
	})
	out := make([]HostResult, len(outcomes))
	for i, o := range outcomes {
		res, ran := results[o.Host]
		if !ran {
			res = HostResult{Host: o.Host, Version: opts.Release.Version, Status: o.Status}
			if o.Status == HostSkipped {
				res.Reason = "not started: the rollout stopped after a host failed"
			} else {
				res.Reason = "not started: the deployment was canceled"
			}
		}
		out[i] = res
	}
	return out
}

func deployTarget(ctx context.Context, t Target, opts RolloutOptions) (HostResult, error) {
	var ev HostEvents
	if opts.Events != nil {
		ev = opts.Events(t.Name)
	}
	ev.step(StepConnect)
	dial, release := Dial, (*Conn).Close
	if opts.Pool != nil {
		dial = opts.Pool.Get
		release = func(c *Conn) error { opts.Pool.Put(c); return nil }
	}
	conn, err := dial(ctx, t, opts.Dial)
	if err != nil {
		res := HostResult{Host: t.Name, Version: opts.Release.Version, Status: HostFailed, Reason: err.Error()}
		if ctx.Err() != nil {
			res.Status = HostCanceled
		}
		ev.say("%s: %s", res.Status, res.Reason)
		return res, fmt.Errorf("deploy %s to %s: %w", opts.Release.Version, t.label(), err)
	}
	defer release(conn)
	ev.say("connected to %s as %s", t.label(), t.User)
	return DeployHostPlan(ctx, conn, HostPlan{Spec: opts.Spec, Release: opts.Release, Events: ev, SpecOf: opts.SpecOf})
}
