package handlers_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"ferry/store"
	"ferry/store/storetest"
)

func TestHostAndEnvironmentFormsOnlyForAdministrators(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newPageFixture(t, db)
		ctx := context.Background()
		h := newServer(t, db)
		ann, root := sessionClient(t, h, db, f.member), sessionClient(t, h, db, f.admin)

		web2, err := db.GetHost(ctx, "web-2")
		must(t, err)
		must(t, db.OfferHostKey(ctx, web2.ID, offeredKey))
		hosts := root.must(200, "GET", "/hosts", "").body
		if !strings.Contains(hosts, `data-url="/api/v1/hosts/web-2/accept-key" data-body='{"fingerprint":"`+strings.ReplaceAll(offeredFingerprint, "+", "&#43;")+`"}'`) {
			t.Errorf("the administrator is not offered to accept web-2's key: %s", hosts[strings.Index(hosts, `class="offered"`):][:400])
		}
		for _, want := range []string{`<details class="card host-edit" data-host="web-1">`, `data-method="PATCH" data-url="/api/v1/hosts/web-1"`,
			`name="address" value="10.0.0.1"`, `name="port" type="number" value="22"`} {
			if !strings.Contains(hosts, want) {
				t.Errorf("the administrator's hosts page lacks %s", want)
			}
		}
		if strings.Contains(hosts, "PRIVATE KEY-----\n") || strings.Contains(hosts, f.privateKey) {
			t.Errorf("the hosts page shows a private key")
		}
		settings := root.must(200, "GET", "/projects/orders/settings", "").body
		for _, want := range []string{`<details class="card env-edit" data-edit-env="staging">`, `data-url="/api/v1/projects/orders/environments/staging" data-shape="environment"`,
			`value="web-2" data-list checked>`, `<option value="rolling" selected>`} {
			if !strings.Contains(settings, want) {
				t.Errorf("the administrator's settings page lacks %s", want)
			}
		}
		if zh := get(t, root, "/hosts", map[string]string{"Accept-Language": "zh-CN"}).body; !strings.Contains(zh, "编辑 web-1") {
			t.Errorf("the Chinese hosts page lacks the edit form")
		}

		// A member sees the hosts but gets no form, and the API refuses the edits anyway.
		if page := ann.must(200, "GET", "/hosts", "").body; strings.Contains(page, "host-edit") || strings.Contains(page, `data-method="PATCH"`) || strings.Contains(page, "accept-key") {
			t.Errorf("a member is offered the host form")
		}
		ann.must(403, "PATCH", "/api/v1/hosts/web-1", `{"address":"203.0.113.9"}`)
		ann.must(403, "POST", "/api/v1/hosts/web-2/accept-key", `{"fingerprint":"`+offeredFingerprint+`"}`)
		ann.must(403, "PATCH", "/api/v1/projects/orders/environments/prod", `{"protected":false,"hosts":["web-1"]}`)
		if page := ann.do("GET", "/projects/orders/settings", ""); page.status != 403 || strings.Contains(page.body, "env-edit") {
			t.Errorf("a member gets the environment form: %d", page.status)
		}
		h1, err := db.GetHost(ctx, "web-1")
		must(t, err)
		prod, err := db.GetEnvironment(ctx, f.project.ID, "prod")
		must(t, err)
		if h1.Address != "10.0.0.1" || !prod.Protected || strings.Join(prod.Hosts, ",") != "db-1" {
			t.Errorf("the member's refused edits went through: %s, %v %v", h1.Address, prod.Protected, prod.Hosts)
		}
	})
}

func TestBrowserEditHostAndEnvironment(t *testing.T) {
	db, f, srv, c := adminInBrowser(t)
	ctx := context.Background()

	form := `details[data-host="web-1"] form`
	c.run("a bad user",
		chromedp.Navigate(srv.URL+"/hosts"),
		chromedp.WaitVisible(`#hosts`),
		eval(noReload),
		chromedp.Click(`details[data-host="web-1"] summary`),
		setField(form+` [name=address]`, "10.0.0.11"),
		setField(form+` [name=port]`, "2222"),
		setField(form+` [name=user]`, "not a user!"),
		chromedp.Click(form+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.includes("is not a Unix account name"))(document.querySelector('`+form+` .field-error[data-for="user"]'))`),
	)
	c.run("save the host",
		setField(form+` [name=user]`, "deployer"),
		chromedp.Click(form+` button[type=submit]`),
		waitFor(`(r => r && r.textContent.includes("10.0.0.11:2222") && r.textContent.includes("deployer"))(document.querySelector('#hosts tr[data-host="web-1"]'))`),
		waitFor(`window.ferryNoReload === true`),
	)
	h1, err := db.GetHost(ctx, "web-1")
	must(t, err)
	if h1.Address != "10.0.0.11" || h1.Port != 2222 || h1.User != "deployer" || h1.PrivateKey != f.privateKey {
		t.Fatalf("after the host form: %s:%d %s, key kept %v", h1.Address, h1.Port, h1.User, h1.PrivateKey == f.privateKey)
	}

	web2, err := db.GetHost(ctx, "web-2")
	must(t, err)
	must(t, db.OfferHostKey(ctx, web2.ID, offeredKey))
	c.run("accept the offered key",
		chromedp.Navigate(srv.URL+"/hosts"),
		chromedp.WaitVisible(`#hosts tr[data-host="web-2"] .offered`),
		eval(`window.confirm = () => true; window.ferryNoReload = true; true`),
		chromedp.Click(`#hosts tr[data-host="web-2"] .offered button`),
		waitFor(`(r => r && r.querySelector('.offered') === null && r.textContent.includes(`+jsString(offeredFingerprint)+`))(document.querySelector('#hosts tr[data-host="web-2"]'))`),
		waitFor(`window.ferryNoReload === true`),
	)
	if web2, err = db.GetHost(ctx, "web-2"); err != nil || web2.HostKey != offeredKey {
		t.Fatalf("after accepting on the page: %v %q", err, web2.HostKey)
	}

	env := `details.env-edit[data-edit-env="staging"] form`
	c.run("a bad batch",
		chromedp.Navigate(srv.URL+"/projects/orders/settings"),
		chromedp.WaitVisible(`#environments`),
		eval(noReload),
		chromedp.Click(`details.env-edit[data-edit-env="staging"] summary`),
		chromedp.Click(env+` [name=hosts][value="web-2"]`),
		chromedp.Click(env+` [name=protected]`),
		setField(env+` [name="strategy.kind"]`, "parallel"),
		setField(env+` [name="strategy.batch"]`, "lots"),
		chromedp.Click(env+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.includes("is not a host count or a percentage"))(document.querySelector('`+env+` .field-error[data-for="strategy.batch"]'))`),
	)
	c.run("save the environment",
		setField(env+` [name="strategy.batch"]`, "50%"),
		chromedp.Click(env+` button[type=submit]`),
		waitFor(`(r => r && r.textContent.includes("parallel") && !r.textContent.includes("web-2"))(document.querySelector('#environments tr[data-env="staging"]'))`),
		waitFor(`window.ferryNoReload === true`),
	)
	st, err := db.GetEnvironment(ctx, f.project.ID, "staging")
	must(t, err)
	if strings.Join(st.Hosts, ",") != "web-1" || !st.Protected || st.Strategy.Kind != "parallel" || st.Strategy.Batch != "50%" {
		t.Fatalf("after the environment form: %v protected %v %+v", st.Hosts, st.Protected, st.Strategy)
	}
	c.run("back to serial",
		chromedp.Click(`details.env-edit[data-edit-env="staging"] summary`),
		setField(env+` [name="strategy.kind"]`, ""),
		setField(env+` [name="strategy.batch"]`, ""),
		chromedp.Click(env+` button[type=submit]`),
		waitFor(`(r => r && r.textContent.includes("serial"))(document.querySelector('#environments tr[data-env="staging"]'))`),
	)
	st, err = db.GetEnvironment(ctx, f.project.ID, "staging")
	must(t, err)
	if st.Strategy.Kind != "" && st.Strategy.Kind != "serial" {
		t.Fatalf("after choosing serial: %+v", st.Strategy)
	}
}
