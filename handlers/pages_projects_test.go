package handlers_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// The project forms: only administrators are offered them, and the API refuses members who
// send the requests anyway.
func TestProjectFormsOnlyForAdministrators(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newPageFixture(t, db)
		h := newServer(t, db)
		ann, root := sessionClient(t, h, db, f.member), sessionClient(t, h, db, f.admin)

		dash := root.must(200, "GET", "/", "").body
		for _, want := range []string{`id="new-project-form"`, `data-url="/api/v1/projects"`, `name="gitlab_path"`, `name="clone_url"`, testBaseURL + "/hooks/gitlab"} {
			if !strings.Contains(dash, want) {
				t.Errorf("the administrator's dashboard lacks %s", want)
			}
		}
		settings := root.must(200, "GET", "/projects/orders/settings", "").body
		for _, want := range []string{`id="project-form"`, `name="trigger.keyword" value="devops"`, `name="keep_versions" type="number" min="1" max="10000" value="20"`,
			`id="delete-project-form"`, `data-confirm-text="orders"`} {
			if !strings.Contains(settings, want) {
				t.Errorf("the administrator's settings page lacks %s", want)
			}
		}
		if zh := get(t, root, "/projects/orders/settings", map[string]string{"Accept-Language": "zh-CN"}).body; !strings.Contains(zh, "触发关键字") || !strings.Contains(zh, "删除项目") {
			t.Errorf("the Chinese settings page lacks the project form's words")
		}
		if zh := get(t, root, "/", map[string]string{"Accept-Language": "zh-CN"}).body; !strings.Contains(zh, "新建项目") {
			t.Errorf("the Chinese dashboard lacks the new project form")
		}

		// A member is offered none of them...
		if dash := ann.must(200, "GET", "/", "").body; strings.Contains(dash, `new-project`) {
			t.Errorf("a member is offered the new project form")
		}
		if page := ann.do("GET", "/projects/orders/settings", ""); page.status != 403 || strings.Contains(page.body, `id="project-form"`) || strings.Contains(page.body, `id="delete-project-form"`) {
			t.Errorf("a member gets the settings page: %d", page.status)
		}
		// ...and the API refuses the requests the forms would send.
		ann.must(403, "POST", "/api/v1/projects", `{"name":"mine","gitlab_path":"g/mine","clone_url":"https://x/y.git"}`)
		ann.must(403, "PATCH", "/api/v1/projects/orders", `{"trigger":{"keyword":"","branches":[],"tags":true,"deploy":{"*":"prod"}}}`)
		ann.must(403, "DELETE", "/api/v1/projects/orders", `{}`)
		p, err := db.GetProject(context.Background(), "orders")
		must(t, err)
		if p.Trigger.Keyword != "devops" || len(p.Trigger.Deploy) != 0 {
			t.Errorf("the member's refused change went through: %+v", p.Trigger)
		}
		if _, err := db.GetProject(context.Background(), "mine"); !store.IsNotFound(err) {
			t.Errorf("the member's refused project exists: %v", err)
		}
	})
}

// noReload marks the page, so that a step can check the page was not loaded again.
const noReload = `window.ferryNoReload = true; true`

func TestBrowserCreateEditDeleteProject(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	mustUser(t, db, "root", true)
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db}).Handler())
	defer srv.Close()
	c := newChrome(t)
	c.login(srv.URL, "root", "password-root")

	// An empty ferry opens the form. Fields: 3; clicks: 1 (Create).
	c.run("a bad GitLab path",
		chromedp.WaitVisible(`#new-project-form`),
		eval(noReload),
		typeText(`#np-name`, "orders"),
		typeText(`#np-path`, "not a path"),
		typeText(`#np-clone`, "git@gitlab.example.com:shop/orders.git"),
		chromedp.Click(`#np-submit`),
		waitFor(`(e => e && e.textContent.includes("is not a GitLab path") && e.previousElementSibling.contains(document.getElementById('np-path')))(document.querySelector('.field-error[data-for="gitlab_path"]'))`),
	)
	c.run("create the project",
		chromedp.SetValue(`#np-path`, "shop/orders"),
		chromedp.Click(`#np-submit`),
		chromedp.WaitVisible(`#project-created`),
		waitFor(`document.querySelector('#project-list tr[data-project="orders"]') !== null`),
		waitFor(`window.ferryNoReload === true`),
	)
	p, err := db.GetProject(ctx, "orders")
	must(t, err)
	if p.GitLabPath != "shop/orders" || p.CloneURL != "git@gitlab.example.com:shop/orders.git" || p.WebhookSecret == "" {
		t.Fatalf("the form created %+v", p)
	}
	shown, err := chromedp.Run(c.ctx, chromedp.TextContent(`#np-secret`))
	if err != nil {
		c.fail("read the secret", err)
	}
	hook, err := chromedp.Run(c.ctx, chromedp.TextContent(`#np-hook-url`))
	if err != nil {
		c.fail("read the webhook URL", err)
	}
	if shown != p.WebhookSecret || hook != srv.URL+"/hooks/gitlab" {
		t.Fatalf("the page shows secret %q and hook %q; want the project's secret and %s/hooks/gitlab", shown, hook, srv.URL)
	}

	c.run("a bad branch pattern",
		chromedp.Click(`#np-settings`),
		chromedp.WaitVisible(`#project-form`),
		eval(noReload),
		setField(`#project-form [name="trigger.keyword"]`, ""),
		setField(`#project-form [name="trigger.branches"]`, "main, release/["),
		setField(`#project-form [name="trigger.deploy"]`, "main = staging\nrelease/* = prod"),
		chromedp.Click(`#project-form [name="trigger.tags"]`),
		setField(`#project-form [name=keep_versions]`, "7"),
		setField(`#project-form [name=tag_template]`, "release-{number}"),
		chromedp.Click(`#project-save`),
		waitFor(`(e => e && e.textContent.includes("is not a valid branch pattern"))(document.querySelector('.field-error[data-for="trigger.branches"]'))`),
	)
	c.run("save the project",
		setField(`#project-form [name="trigger.branches"]`, "main\nrelease/*"),
		chromedp.Click(`#project-save`),
		chromedp.WaitVisible(`#project-saved`),
		waitFor(`document.querySelector('#project-form [name=keep_versions]').value === "7"`),
		waitFor(`window.ferryNoReload === true`),
	)
	p, err = db.GetProject(ctx, "orders")
	must(t, err)
	tr := p.Trigger
	if tr.Keyword != "" || strings.Join(tr.Branches, ",") != "main,release/*" || !tr.Tags || len(tr.Deploy) != 2 || tr.Deploy["release/*"] != "prod" ||
		p.KeepVersions != 7 || p.TagTemplate != "release-{number}" {
		t.Fatalf("after the form: %+v keep %d template %q", tr, p.KeepVersions, p.TagTemplate)
	}

	c.run("delete with the wrong name",
		typeText(`#delete-confirm`, "order"),
		chromedp.Click(`#delete-project`),
		waitFor(`(e => e && e.textContent.includes("orders"))(document.querySelector('.field-error[data-for="delete-confirm"]'))`),
	)
	if _, err := db.GetProject(ctx, "orders"); err != nil {
		t.Fatalf("the project went with a wrong confirmation: %v", err)
	}
	c.run("delete",
		typeText(`#delete-confirm`, "s"),
		chromedp.Click(`#delete-project`),
		chromedp.WaitVisible(`#new-project-form`),
		waitFor(`document.querySelector('#project-list tr[data-project="orders"]') === null`),
	)
	if _, err := db.GetProject(ctx, "orders"); !store.IsNotFound(err) {
		t.Fatalf("after deleting on the page: %v", err)
	}
}

// setField sets the value of the field sel finds, as typing would leave it.
func setField(sel, value string) chromedp.Action[chromedp.Void] {
	return eval(`(() => { const e = document.querySelector(` + jsString(sel) + `); e.value = ` + jsString(value) + `; return e.value === ` + jsString(value) + `; })()`)
}
