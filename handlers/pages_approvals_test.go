package handlers_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// gatedPages is the page fixture with staging needing one approval and prod frozen now, and a
// deployment to staging that ann asked for.
func gatedPages(t *testing.T, db *store.DB) (*pageFixture, *store.Deployment) {
	t.Helper()
	f := newPageFixture(t, db)
	ctx := context.Background()
	_, err := db.CancelDeployment(ctx, f.deployment.ID)
	must(t, err)
	one := 1
	_, err = db.UpdateEnvironment(ctx, f.project.ID, "staging", store.EnvironmentUpdate{ApprovalsRequired: &one})
	must(t, err)
	now := time.Now().UTC()
	freezes := []store.Freeze{{From: now.Add(-time.Hour).Format(time.RFC3339), Until: now.Add(time.Hour).Format(time.RFC3339), Reason: "year-end close"}}
	_, err = db.UpdateEnvironment(ctx, f.project.ID, "prod", store.EnvironmentUpdate{Freezes: &freezes})
	must(t, err)
	asAnn := store.WithActor(ctx, store.Actor{UserID: f.member.ID, Name: f.member.Name})
	d, err := db.CreateDeployment(asAnn, store.NewDeployment{ProjectID: f.project.ID, EnvironmentID: f.staging.ID,
		VersionID: f.version.ID, TriggeredBy: "api by ann"})
	must(t, err)
	return f, d
}

func TestPagesShowChangeControl(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f, d := gatedPages(t, db)
		h := newServer(t, db)
		ann, root := sessionClient(t, h, db, f.member), sessionClient(t, h, db, f.admin)
		path := fmt.Sprintf("/deployments/%d", d.ID)

		page := root.must(200, "GET", path, "").body
		for _, want := range []string{`id="decide"`, `id="approve"`, `id="reject"`, "awaiting approval", `id="approvers">Who may still decide: root.`} {
			if !strings.Contains(page, want) {
				t.Errorf("the administrator's deployment page lacks %q", want)
			}
		}
		page = ann.must(200, "GET", path, "").body
		if strings.Contains(page, `id="decide"`) || !strings.Contains(page, `id="requested-by">ann<`) {
			t.Errorf("the requester is offered a decision, or the page does not say who asked")
		}
		if dash := root.must(200, "GET", "/", "").body; !strings.Contains(dash, `id="my-approvals"`) || !strings.Contains(dash, path) {
			t.Errorf("the dashboard does not list what waits for the administrator")
		}
		if dash := ann.must(200, "GET", "/", "").body; strings.Contains(dash, `id="my-approvals"`) {
			t.Errorf("the dashboard asks the requester to approve")
		}
		project := ann.must(200, "GET", "/projects/orders", "").body
		if !strings.Contains(project, `class="badge warn frozen">frozen: &#34;year-end close&#34;`) {
			t.Errorf("the project page does not show prod frozen")
		}
		dialog := ann.must(200, "GET", "/projects/orders/deploy", "").body
		for _, want := range []string{"Needs 1 approval(s) by someone other than you before it runs.", "Who may approve: root.",
			`name="when" value="later"`, "Frozen now:"} {
			if !strings.Contains(dialog, want) {
				t.Errorf("the deploy dialog lacks %q", want)
			}
		}
		if strings.Contains(dialog, `name="override_freeze"`) {
			t.Errorf("a member is offered the freeze override")
		}
		if !strings.Contains(root.must(200, "GET", "/projects/orders/deploy", "").body, `name="override_freeze"`) {
			t.Errorf("the administrator is not offered the freeze override")
		}
		settings := root.must(200, "GET", "/projects/orders/settings", "").body
		if !strings.Contains(settings, `name="approvals_required" type="number" min="0" max="10" value="1"`) || !strings.Contains(settings, "year-end close") {
			t.Errorf("the settings page does not show the environments' gates")
		}
		zh := get(t, root, path, map[string]string{"Accept-Language": "zh-CN"}).body
		if !strings.Contains(zh, "批准") || !strings.Contains(zh, "待审批") {
			t.Errorf("the Chinese deployment page lacks the approval words")
		}
	})
}

func TestBrowserApproveOnTheDeploymentPage(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	f, d := gatedPages(t, db)
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db}).Handler())
	defer srv.Close()
	c := newChrome(t)
	c.run("log in",
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(`input[name=password]`),
		typeText(`input[name=name]`, f.admin.Name),
		typeText(`input[name=password]`, "password-"+f.admin.Name),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`#my-approvals`),
	)
	c.run("open what waits for me",
		// Clicked from the page's script: the dashboard's refresh may swap the link between a
		// lookup of its node and a click on it.
		eval(fmt.Sprintf(`(a => !!a && (a.click(), true))(document.querySelector('#my-approvals a[href="/deployments/%d"]'))`, d.ID)),
		chromedp.WaitVisible(`#decide`),
		eval(noReload),
		setField(`#decide-comment`, strings.Repeat("x", 2001)),
		chromedp.Click(`#approve`),
		waitFor(`(e => e && e.textContent === "comment: at most 2000 characters")(document.querySelector('#decide .field-error[data-for="comment"]'))`),
		waitFor(`window.ferryNoReload === true`),
	)
	c.run("approve with a comment",
		setField(`#decide-comment`, "smoke tests passed"),
		chromedp.Click(`#approve`),
	)
	// The page reloads after the decision (its poller does, when the status changes).
	c.run("see the decision", chromedp.WaitVisible(`#approvals tr[data-user="root"]`),
		waitFor(`document.getElementById('job-status').dataset.status === "queued"`),
		waitFor(`document.getElementById('decide') === null`))
	got, err := db.GetDeployment(context.Background(), d.ID)
	must(t, err)
	if got.Status != store.DeploymentQueued || len(got.Approvals) != 1 || got.Approvals[0].Comment != "smoke tests passed" {
		t.Fatalf("after approving on the page: %s %+v", got.Status, *got.Approvals[0])
	}

	// An administrator sets prod's gates in the settings: two approvals, and a weekly freeze.
	gates := `details[data-env="prod"] form`
	c.run("a freeze that is not JSON",
		chromedp.Navigate(srv.URL+"/projects/orders/settings"),
		chromedp.Click(`details[data-env="prod"] summary`),
		eval(noReload),
		setField(gates+` textarea[name=freezes]`, `[{"cron": "0 18 * * 5",`),
		chromedp.Click(gates+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.includes("JSON"))(document.querySelector('`+gates+` .field-error[data-for="freezes"]'))`),
	)
	c.run("a freeze in a time zone that does not exist",
		setField(gates+` textarea[name=freezes]`, `[{"cron": "0 18 * * 5", "duration": "62h", "timezone": "Mars/Olympus"}]`),
		chromedp.Click(gates+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.startsWith("freezes[0].timezone: "))(document.querySelector('`+gates+` .field-error[data-for="freezes"]'))`),
		waitFor(`window.ferryNoReload === true`),
	)
	c.run("set the gates of prod",
		chromedp.SetValue(`details[data-env="prod"] input[name=approvals_required]`, "2"),
		chromedp.SetValue(`details[data-env="prod"] textarea[name=freezes]`, `[{"cron": "0 18 * * 5", "duration": "62h", "timezone": "Asia/Shanghai"}]`),
		chromedp.Click(`details[data-env="prod"] button[type=submit]`),
	)
	c.run("see the gates saved", chromedp.WaitVisible(`tr[data-env="prod"] .badge.approvals`))
	prod, err := db.GetEnvironment(context.Background(), f.project.ID, "prod")
	must(t, err)
	if prod.ApprovalsRequired != 2 || len(prod.Freezes) != 1 || prod.Freezes[0].Timezone != "Asia/Shanghai" {
		t.Fatalf("prod after the settings form: %+v", prod)
	}

	// The dialog answers a bad value next to its field: no host chosen, a batch that is not one.
	c.run("no host chosen",
		chromedp.Navigate(srv.URL+"/projects/orders/deploy?env=staging"),
		chromedp.WaitVisible(`#deploy-form`),
		eval(noReload),
		chromedp.Click(`fieldset[data-for-env="staging"] .all-hosts`),
		chromedp.Click(`#deploy-submit`),
		waitFor(`(e => e && e.textContent.includes("at least one host") && e.previousElementSibling.dataset.forEnv === "staging")(document.querySelector('#deploy-form .field-error[data-for="hosts"]'))`),
	)
	c.run("a bad batch",
		chromedp.Click(`fieldset[data-for-env="staging"] .all-hosts`),
		setField(`#deploy-strategy`, "rolling"),
		setField(`#deploy-form [name="strategy.batch"]`, "lots"),
		chromedp.Click(`#deploy-submit`),
		waitFor(`(e => e && e.textContent.startsWith("strategy.batch: "))(document.querySelector('#deploy-form .field-error[data-for="strategy.batch"]'))`),
		waitFor(`document.querySelector('#deploy-form .field-error[data-for="hosts"]') === null`),
		waitFor(`window.ferryNoReload === true`),
		setField(`#deploy-strategy`, ""),
		setField(`#deploy-form [name="strategy.batch"]`, ""),
	)
	// Deploy at a time two hours ahead, picked in the browser's own time zone.
	c.run("schedule from the dialog",
		chromedp.Click(`input[name=when][value=later]`),
		eval(`(() => { const t = new Date(Date.now() + 2*3600*1000 - new Date().getTimezoneOffset()*60000);
			document.getElementById('deploy-at').value = t.toISOString().slice(0, 16); return true; })()`),
		chromedp.Click(`#deploy-submit`),
		chromedp.WaitVisible(`#scheduled-at`),
	)
	list, err := db.ListDeployments(context.Background(), store.DeploymentFilter{ProjectID: f.project.ID, Limit: 1})
	must(t, err)
	s := list[0]
	if s.ScheduledAt == nil || s.ScheduledAt.Sub(time.Now().Add(2*time.Hour)).Abs() > 2*time.Minute || s.Status != store.DeploymentAwaitingApproval {
		t.Fatalf("the dialog asked for %s at %v, want awaiting approval, two hours ahead", s.Status, s.ScheduledAt)
	}
}
