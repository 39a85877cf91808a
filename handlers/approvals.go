package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// registerApprovals adds the four-eyes routes. Approving or rejecting needs the right to deploy
// to the deployment's environment (the production right for a protected one); the store also
// refuses the requester and a second decision by the same person.
func (s *Server) registerApprovals(r gin.IRouter) {
	r.POST("/deployments/:deployment/approve", s.need(projectDeploy), s.decideDeployment(store.DecisionApproved))
	r.POST("/deployments/:deployment/reject", s.need(projectDeploy), s.decideDeployment(store.DecisionRejected))
	r.GET("/approvals", s.need(loggedIn), s.listApprovals)
}

// decisionInput is the body of approve and reject; it may be empty.
type decisionInput struct {
	Comment string `json:"comment"`
}

func (s *Server) decideDeployment(decision string) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in decisionInput
		if c.Request.ContentLength != 0 && !s.bindJSON(c, &in) {
			return
		}
		id := deploymentID(c)
		ctx := c.Request.Context()
		var err error
		if decision == store.DecisionApproved {
			_, err = s.db.ApproveDeployment(ctx, id, in.Comment)
		} else {
			_, err = s.db.RejectDeployment(ctx, id, in.Comment)
		}
		if err != nil {
			s.fail(c, fmt.Errorf("%s deployment %d: %w", decisionVerb(decision), id, err))
			return
		}
		s.wakeDeployer()
		s.renderDeployment(c, http.StatusOK, id)
	}
}

func decisionVerb(decision string) string {
	if decision == store.DecisionApproved {
		return "approve"
	}
	return "reject"
}

// listApprovals lists the deployments, across projects, that wait for the caller's approval.
func (s *Server) listApprovals(c *gin.Context) {
	list, err := s.db.ListApprovals(c.Request.Context(), currentUser(c).ID)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}
