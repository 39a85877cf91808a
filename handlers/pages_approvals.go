package handlers

import (
	"context"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The change-control parts of the pages: who may approve, what waits for the user, and
// which environments are frozen.

// approvalData fills in who may still decide on a deployment awaiting approval, and whether
// the user is one of them.
func (s *Server) approvalData(c *gin.Context, d *deploymentData) error {
	dep := d.Deployment
	if dep.Status != store.DeploymentAwaitingApproval {
		return nil
	}
	var requester int64
	if dep.RequestedByID != nil {
		requester = *dep.RequestedByID
	}
	users, err := s.db.ListApprovers(c.Request.Context(), dep.EnvironmentID, dep.ID, requester)
	if err != nil {
		return err
	}
	me := currentUser(c)
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = u.Name
		if u.ID == me.ID {
			d.MayDecide = true
		}
	}
	d.Approvers = strings.Join(names, ", ")
	return nil
}

// deployGates is what the deploy dialog says about an environment's gates to the user: who may
// approve and the freeze in force now.
type deployGates struct {
	Approvers string // names, comma-separated
	Frozen    *store.FreezeWindow
}

func (s *Server) gatesFor(ctx context.Context, e *store.Environment, u *store.User) (deployGates, error) {
	g := deployGates{Frozen: store.FrozenAt(e.Freezes, time.Now())}
	if e.ApprovalsRequired == 0 {
		return g, nil
	}
	users, err := s.db.ListApprovers(ctx, e.ID, 0, u.ID)
	if err != nil {
		return g, err
	}
	names := make([]string, len(users))
	for i, a := range users {
		names[i] = a.Name
	}
	g.Approvers = strings.Join(names, ", ")
	return g, nil
}
