package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// The fixture's deployment is queued on the protected environment: deciding on it needs the
// production right, and once the rights are checked it is refused as not awaiting approval.
// approvalPermRoutes adds the permission rows of these routes (see permRouteParts).
func approvalPermRoutes() {
	addPermRoutes(map[string][5]int{
		"POST /api/v1/deployments/:deployment/approve": {401, 404, 403, 409, 409},
		"POST /api/v1/deployments/:deployment/reject":  {401, 404, 403, 409, 409},
		"GET /api/v1/approvals":                        {401, 200, 200, 200, 200},
	}, map[string]string{
		"POST /api/v1/deployments/:deployment/approve": `{"comment":"ok"}`,
		"POST /api/v1/deployments/:deployment/reject":  `{"comment":"no"}`,
	}, nil)
}

func TestApprovalThroughTheAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := newDeployAPI(t, db)
		r := a.admin.must(http.StatusBadRequest, "PATCH", "/api/v1/projects/shop/environments/prod",
			`{"freezes":[{"cron":"0 18 * * 5","duration":"62h","timezone":"Mars/Base"}]}`)
		if !strings.Contains(r.errorText(t), "freezes[0].timezone") {
			t.Errorf("a bad zone is refused with %q", r.errorText(t))
		}
		var env store.Environment
		a.admin.must(http.StatusOK, "PATCH", "/api/v1/projects/shop/environments/prod", `{"approvals_required":1}`).decode(t, &env)
		if env.ApprovalsRequired != 1 || env.Freezes == nil {
			t.Fatalf("environment %+v", env)
		}

		var d store.Deployment
		a.ops.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments", `{"environment":"prod","version":"v1"}`).decode(t, &d)
		if d.Status != store.DeploymentAwaitingApproval || d.RequestedBy != "ops" || d.ApprovalsRequired != 1 || d.Approvals == nil {
			t.Fatalf("created %+v", d)
		}
		path := fmt.Sprintf("/api/v1/deployments/%d", d.ID)
		r = a.ops.must(http.StatusForbidden, "POST", path+"/approve", `{"comment":"mine"}`)
		if !strings.Contains(r.errorText(t), "someone else must approve") {
			t.Errorf("the requester's approval is refused with %q", r.errorText(t))
		}
		r = a.member.must(http.StatusForbidden, "POST", path+"/approve", `{}`)
		if !strings.Contains(r.errorText(t), "production right") {
			t.Errorf("a member's approval is refused with %q", r.errorText(t))
		}
		var waiting []store.Deployment
		a.admin.must(http.StatusOK, "GET", "/api/v1/approvals", "").decode(t, &waiting)
		if len(waiting) != 1 || waiting[0].ID != d.ID {
			t.Errorf("the administrator's approvals: %+v", waiting)
		}
		a.ops.must(http.StatusOK, "GET", "/api/v1/approvals", "").decode(t, &waiting)
		if len(waiting) != 0 {
			t.Errorf("the requester is asked to approve: %+v", waiting)
		}

		a.admin.must(http.StatusOK, "POST", path+"/approve", `{"comment":"release notes read"}`).decode(t, &d)
		if d.Status != store.DeploymentQueued || len(d.Approvals) != 1 || d.Approvals[0].User != "boss" ||
			d.Approvals[0].Comment != "release notes read" || d.Approvals[0].Decision != "approved" {
			t.Fatalf("approved %+v %+v", d, d.Approvals)
		}
		a.admin.must(http.StatusConflict, "POST", path+"/approve", "")
		a.admin.must(http.StatusConflict, "POST", path+"/reject", `{"comment":"changed my mind"}`)

		a.ops.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments", `{"environment":"prod","version":"v1"}`).decode(t, &d)
		a.admin.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/deployments/%d/reject", d.ID), `{"comment":"not on a Friday"}`).decode(t, &d)
		if d.Status != store.DeploymentRejected || !strings.Contains(d.Error, "not on a Friday") {
			t.Fatalf("rejected %+v", d)
		}
	})
}

func TestFreezeAndScheduleThroughTheAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := newDeployAPI(t, db)
		now := time.Now().UTC()
		from, until := now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)
		a.admin.must(http.StatusOK, "PATCH", "/api/v1/projects/shop/environments/staging",
			`{"freezes":[{"from":"`+from+`","until":"`+until+`","reason":"quarter close"}]}`)

		r := a.member.must(http.StatusConflict, "POST", "/api/v1/projects/shop/deployments", `{"environment":"staging","version":"v1"}`)
		if msg := r.errorText(t); !strings.Contains(msg, `"quarter close"`) || !strings.Contains(msg, "it ends at "+until) {
			t.Errorf("the freeze refusal says %q", msg)
		}
		r = a.member.must(http.StatusForbidden, "POST", "/api/v1/projects/shop/deployments",
			`{"environment":"staging","version":"v1","override_freeze":true,"reason":"urgent"}`)
		if !strings.Contains(r.errorText(t), "only an administrator") {
			t.Errorf("a member's override is refused with %q", r.errorText(t))
		}
		var d store.Deployment
		a.admin.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments",
			`{"environment":"staging","version":"v1","override_freeze":true,"reason":"security fix"}`).decode(t, &d)
		if d.Status != store.DeploymentQueued || d.OverrideReason != "security fix" {
			t.Fatalf("overridden %+v", d)
		}
		var audit []store.AuditEntry
		a.admin.must(http.StatusOK, "GET", "/api/v1/audit", "").decode(t, &audit)
		if len(audit) == 0 || !strings.Contains(fmt.Sprint(audit), "deployment.override_freeze") {
			t.Errorf("audit lacks the override: %+v", audit)
		}

		r = a.member.must(http.StatusBadRequest, "POST", "/api/v1/projects/shop/deployments",
			`{"environment":"staging","version":"v1","scheduled_at":"tonight at ten"}`)
		if !strings.Contains(r.errorText(t), "scheduled_at") {
			t.Errorf("a bad time is refused with %q", r.errorText(t))
		}
		a.member.must(http.StatusBadRequest, "POST", "/api/v1/projects/shop/deployments",
			`{"environment":"staging","version":"v1","scheduled_at":"`+now.Add(-time.Minute).Format(time.RFC3339)+`"}`)
		later := now.Add(3 * time.Hour).Format(time.RFC3339)
		a.member.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments",
			`{"environment":"staging","version":"v1","scheduled_at":"`+later+`"}`).decode(t, &d)
		if d.Status != store.DeploymentScheduled || d.ScheduledAt == nil || d.ScheduledAt.Format(time.RFC3339) != later {
			t.Fatalf("scheduled %+v", d)
		}
		a.member.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/deployments/%d/cancel", d.ID), "").decode(t, &d)
		if d.Status != store.DeploymentCanceled {
			t.Fatalf("after cancel: %s", d.Status)
		}
	})
}
