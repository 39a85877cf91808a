package deploy

import (
	"context"
	"fmt"
	"strings"

	"ferry/store"
)

// This file holds how a worker knows the release a host ran before a deployment: recorded in
// the host step before anything is stopped, and deployed with its own .ferry.yml.

// earlierOf returns what an interrupted attempt recorded for a host step, nil when no attempt
// recorded anything (nothing was stopped there yet).
func earlierOf(step *store.HostStep) *Earlier {
	if !step.PreviousRecorded || step.Status == store.HostSucceeded {
		return nil
	}
	return &Earlier{Previous: step.PreviousRelease, Step: step.Step}
}

// recordPrevious records in the host step the release the host runs, and its version when
// ferry knows it, before the engine stops anything there.
func (r *deploymentRun) recordPrevious(ctx context.Context, j *hostJob) func(release string) error {
	return func(release string) error {
		var versionID *int64
		if release != "" {
			v, err := r.w.db.ReleaseVersion(ctx, r.d.ProjectID, release)
			switch {
			case err == nil:
				versionID = &v.ID
			case !store.IsNotFound(err):
				return err
			}
		}
		if err := r.w.db.RecordHostPrevious(ctx, r.d.ID, j.step.HostID, r.lease, release, versionID); err != nil {
			return err
		}
		j.step.PreviousRecorded, j.step.PreviousRelease, j.step.PreviousVersionID = true, release, versionID
		return nil
	}
}

// specOf returns the deploy section of the .ferry.yml a release on the host was deployed with:
// the one of its version. Its error says why there is none (the engine then uses the new
// release's steps, and logs that); the worker's log says it too.
func (r *deploymentRun) specOf(ctx context.Context, j *hostJob) func(version string) (store.DeploySpec, error) {
	return func(version string) (store.DeploySpec, error) {
		spec, err := r.releaseSpec(ctx, j, version)
		if err != nil {
			r.w.log.Warn("a release on a host has no deploy steps ferry knows; using the new version's",
				"deployment", r.d.ID, "host", j.step.Host, "release", version, "version", r.rel.Version, "err", err)
		}
		return spec, err
	}
}

func (r *deploymentRun) releaseSpec(ctx context.Context, j *hostJob, version string) (store.DeploySpec, error) {
	var v *store.Version
	var err error
	if id := j.step.PreviousVersionID; id != nil && j.step.PreviousRelease == version {
		v, err = r.w.db.GetVersion(ctx, *id)
	} else {
		v, err = r.w.db.ReleaseVersion(ctx, r.d.ProjectID, version)
	}
	switch {
	case store.IsNotFound(err):
		return store.DeploySpec{}, fmt.Errorf("release %s on %s is not a version of %s that ferry knows", version, j.step.Host, r.d.Project)
	case err != nil:
		return store.DeploySpec{}, fmt.Errorf("load version %s: %w", version, err)
	case strings.TrimSpace(v.Pipeline) == "":
		return store.DeploySpec{}, fmt.Errorf("version %s has no .ferry.yml", version)
	}
	p, err := store.ParsePipeline([]byte(v.Pipeline))
	if err != nil {
		return store.DeploySpec{}, fmt.Errorf("the .ferry.yml of version %s: %w", version, err)
	}
	return p.Deploy, nil
}
