package deploy

import (
	"slices"
	"testing"
)

// TestHookBegunFollowsTheRecordedStep: which hooks a takeover does not run again, by the step
// the interrupted attempt recorded and where current points now.
func TestHookBegunFollowsTheRecordedStep(t *testing.T) {
	all := []string{HookBeforeStop, HookAfterSwitch, HookAfterStart, HookAfterSuccess}
	for _, c := range []struct {
		step, current string
		begun         []string // of all, the ones not run again
	}{
		{"", "v1", nil}, // a first attempt
		{StepUpload, "v1", nil},
		{HookBeforeStop, "v1", []string{HookBeforeStop}},
		{StepStop, "v1", []string{HookBeforeStop}},
		{StepSwitch, "v1", []string{HookBeforeStop}}, // not switched yet
		{StepSwitch, "v2", []string{HookBeforeStop}},
		{HookAfterSwitch, "v2", []string{HookBeforeStop, HookAfterSwitch}},
		{StepStart, "v2", []string{HookBeforeStop, HookAfterSwitch}},
		{HookAfterStart, "v2", []string{HookBeforeStop, HookAfterSwitch, HookAfterStart}},
		{StepHealth, "v2", []string{HookBeforeStop, HookAfterSwitch, HookAfterStart}},
		{StepDone, "v2", all},
		{StepHealth, "v1", nil}, // switched back: the new release is deployed again, hooks and all
		{StepRollback, "v2", nil},
	} {
		d := &hostDeploy{rel: Release{Version: "v2"}, state: HostState{Current: c.current}}
		if c.step != "" {
			d.plan.Earlier = &Earlier{Previous: "v1", Step: c.step}
		}
		var got []string
		for _, stage := range all {
			if d.hookBegun(stage) {
				got = append(got, stage)
			}
		}
		if !slices.Equal(got, c.begun) {
			t.Errorf("interrupted at %q with current at %s: not run again %v, want %v", c.step, c.current, got, c.begun)
		}
	}
}
