package handlers

import (
	"context"
	"fmt"

	"ferry/store"
)

// Where the strategy of a deployment comes from, in the order the deploy worker looks
// (deploy.chooseStrategy): the deployment's own, the environment's, the version's .ferry.yml,
// else serial.
const (
	strategyFromDeployment  = "deployment"
	strategyFromEnvironment = "environment"
	strategyFromPipeline    = "pipeline"
	strategyFromDefault     = "default"
)

// appliedStrategy is the strategy that really applies and where it comes from.
type appliedStrategy struct {
	store.Strategy
	Source string
	// Version names the version whose .ferry.yml it is, for Source "pipeline".
	Version string
}

// KindOrSerial is the strategy's kind, serial when none is set.
func (a appliedStrategy) KindOrSerial() string {
	if a.Kind == "" {
		return store.StrategySerial
	}
	return a.Kind
}

// strategyFor works out the strategy a deployment of v (nil: none yet) to env applies, with
// the deployment's own override (nil for none).
func strategyFor(override *store.Strategy, env *store.Environment, v *store.Version) appliedStrategy {
	switch {
	case override != nil && *override != (store.Strategy{}):
		return appliedStrategy{Strategy: *override, Source: strategyFromDeployment}
	case env != nil && env.Strategy != (store.Strategy{}):
		return appliedStrategy{Strategy: env.Strategy, Source: strategyFromEnvironment}
	case v != nil && v.Pipeline != "":
		if p, err := store.ParsePipeline([]byte(v.Pipeline)); err == nil && p.Deploy.Strategy != (store.Strategy{}) {
			return appliedStrategy{Strategy: p.Deploy.Strategy, Source: strategyFromPipeline, Version: v.Name}
		}
	}
	return appliedStrategy{Source: strategyFromDefault}
}

// newestVersion returns the project's newest kept version, nil when it has none.
func (s *Server) newestVersion(ctx context.Context, projectID int64) (*store.Version, error) {
	versions, err := s.db.ListVersions(ctx, projectID, false)
	if err != nil {
		return nil, err
	}
	var newest *store.Version
	for _, v := range versions {
		if newest == nil || v.ID > newest.ID {
			newest = v
		}
	}
	return newest, nil
}

// fillLiveSteps gives the host cells of an environment with a running deployment that
// deployment's host steps, so the grid shows each host's step, upload and result.
func (s *Server) fillLiveSteps(ctx context.Context, v *envView) error {
	if v.Running == nil {
		return nil
	}
	dep, err := s.db.GetDeployment(ctx, v.Running.ID)
	if err != nil {
		return fmt.Errorf("get the running deployment %d: %w", v.Running.ID, err)
	}
	for i := range v.Hosts {
		for j := range dep.Hosts {
			if dep.Hosts[j].Host == v.Hosts[i].Host {
				v.Hosts[i].Live = dep.Hosts[j]
			}
		}
	}
	return nil
}
