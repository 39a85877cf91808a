package deploy_test

import (
	"context"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// Rollouts that share a ConnPool reuse the connection to each host instead of a new SSH
// handshake; a host whose connection dropped meanwhile gets a new one.
func TestRolloutsShareConnectionsThroughAPool(t *testing.T) {
	c := sshtest.Start(t, 2, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	pool := deploy.NewConnPool(0)
	defer pool.Close()
	v1, v2 := makeRelease(t, "v1", artifact{}), makeRelease(t, "v2", artifact{})
	for _, rel := range []deploy.Release{v1, v2, v1} {
		for _, res := range deploy.Rollout(context.Background(), targetsOf(c), deploy.RolloutOptions{Spec: spec, Release: rel, Pool: pool}) {
			if res.Status != deploy.HostSucceeded {
				t.Fatalf("%s: %s: %s", res.Host, res.Status, res.Reason)
			}
		}
	}
	for _, h := range c.Hosts() {
		assertServing(t, h, "v1")
		if n := h.Connections(); n != 1 {
			t.Errorf("%s accepted %d connections for three rollouts through one pool, want 1", h.Name, n)
		}
	}

	h := c.Hosts()[0]
	h.Stop() // drops the pooled connection and refuses new ones
	res := deploy.Rollout(context.Background(), targetsOf(c)[:1], deploy.RolloutOptions{Spec: spec, Release: v2, Pool: pool})
	if res[0].Status != deploy.HostFailed {
		t.Errorf("%s after its connection dropped and the port closed: %s (%s), want failed", h.Name, res[0].Status, res[0].Reason)
	}
	assertServing(t, h, "v1")
}
