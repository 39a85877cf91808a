package handlers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// channelPagePermRoutes: the global channels page is for administrators.
func channelPagePermRoutes() {
	addPermRoutes(map[string][5]int{"GET /channels": {303, 403, 403, 403, 200}}, nil, nil)
}

func TestEveryChannelKindAndEventHasItsWords(t *testing.T) {
	for _, k := range store.ChannelKinds {
		if en, zh := handlers.Message("channel_kind." + k); en == "" || zh == "" {
			t.Errorf("channel kind %s has no words", k)
		}
	}
	for _, e := range store.ChannelEvents {
		if en, zh := handlers.Message("event." + e); en == "" || zh == "" {
			t.Errorf("channel event %s has no words", e)
		}
	}
}

func TestChannelFormsOnlyForAdministrators(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newPageFixture(t, db)
		ctx := context.Background()
		h := newServer(t, db)
		ann, root := sessionClient(t, h, db, f.member), sessionClient(t, h, db, f.admin)
		list, err := db.ListChannels(ctx, f.project.ID)
		must(t, err)
		id := list[0].ID

		settings := root.must(200, "GET", "/projects/orders/settings", "").body
		for _, want := range []string{`id="new-channel-form"`, `data-url="/api/v1/projects/orders/channels"`,
			fmt.Sprintf(`data-url="/api/v1/channels/%d" data-shape="channel"`, id),
			`name="events" value="build.failed" data-list checked`, `name="events" value="deployment.rejected" data-list>`} {
			if !strings.Contains(settings, want) {
				t.Errorf("the administrator's settings page lacks %s", want)
			}
		}
		if strings.Count(settings, `name="events"`) != 2*len(store.ChannelEvents) {
			t.Errorf("the settings page has %d event boxes, want %d", strings.Count(settings, `name="events"`), 2*len(store.ChannelEvents))
		}
		if strings.Contains(settings, fixtureRobotToken) || strings.Contains(settings, fixtureChannelSecret) {
			t.Errorf("the channel form shows the robot's token or the signing secret")
		}
		global := root.must(200, "GET", "/channels", "").body
		if !strings.Contains(global, `data-url="/api/v1/channels" data-shape="channel"`) || !strings.Contains(global, `href="/channels"`) {
			t.Errorf("the global channels page lacks its create form or its link")
		}
		if zh := get(t, root, "/channels", map[string]string{"Accept-Language": "zh-CN"}).body; !strings.Contains(zh, "全局通知渠道") || !strings.Contains(zh, "部署待审批") {
			t.Errorf("the Chinese channels page lacks its words")
		}

		// A member gets neither page nor link, and the API refuses what the forms would send.
		if r := ann.do("GET", "/channels", ""); r.status != 403 || strings.Contains(r.body, "new-channel-form") {
			t.Errorf("a member gets the global channels page: %d", r.status)
		}
		if dash := ann.must(200, "GET", "/", "").body; strings.Contains(dash, `href="/channels"`) {
			t.Errorf("a member is shown the link to the global channels")
		}
		body := `{"kind":"webhook","url":"https://hooks.example.com/x","events":["build.failed"],"enabled":true}`
		ann.must(403, "POST", "/api/v1/projects/orders/channels", body)
		ann.must(403, "POST", "/api/v1/channels", body)
		ann.must(403, "PATCH", fmt.Sprintf("/api/v1/channels/%d", id), `{"url":"https://evil.example.com/"}`)
		ann.must(403, "POST", fmt.Sprintf("/api/v1/channels/%d/test", id), "")
		ch, err := db.GetChannel(ctx, id)
		must(t, err)
		if strings.Contains(ch.URL, "evil") {
			t.Errorf("the member's refused change went through")
		}
		if all, _ := db.ListChannels(ctx, 0); len(all) != 0 {
			t.Errorf("the member's refused global channel exists")
		}
	})
}

func TestBrowserChannels(t *testing.T) {
	db, f, srv, c := adminInBrowser(t)
	ctx := context.Background()

	// A new project channel: a bad URL first, then a good one with two events.
	c.run("a bad URL",
		chromedp.Navigate(srv.URL+"/projects/orders/settings"),
		chromedp.WaitVisible(`#channels`),
		eval(noReload),
		chromedp.Click(`#new-channel summary`),
		setField(`#new-channel-form [name=kind]`, "webhook"),
		setField(`#new-channel-form [name=url]`, "ftp://hooks.example.com/ferry"),
		eval(`(() => { document.querySelectorAll('#new-channel-form [name=events]').forEach(b => { b.checked = b.value === 'build.failed' || b.value === 'deployment.succeeded'; }); return true; })()`),
		chromedp.Click(`#new-channel-submit`),
		waitFor(`(e => e && e.textContent.includes("needs an http(s) URL"))(document.querySelector('#new-channel-form .field-error[data-for="url"]'))`),
	)
	c.run("create it",
		setField(`#new-channel-form [name=url]`, "https://hooks.example.com/ferry?token=hush"),
		setField(`#new-channel-form [name=secret]`, "signing-secret"),
		chromedp.Click(`#new-channel-submit`),
		waitFor(`document.querySelectorAll('#channels tbody tr').length === 2`),
		waitFor(`window.ferryNoReload === true`),
	)
	list, err := db.ListChannels(ctx, f.project.ID)
	must(t, err)
	ch := list[1]
	if ch.Kind != "webhook" || ch.URL != "https://hooks.example.com/ferry?token=hush" || ch.Secret != "signing-secret" ||
		strings.Join(ch.Events, ",") != "build.failed,deployment.succeeded" || !ch.Enabled {
		t.Fatalf("the form created %+v", ch)
	}

	// Edit it: no event is refused next to the events; then one event, off, the URL kept.
	edit := fmt.Sprintf(`details[data-channel="%d"]`, ch.ID)
	c.run("no events",
		chromedp.Click(edit+` summary`),
		eval(`(() => { document.querySelectorAll('`+edit+` [name=events]').forEach(b => { b.checked = false; }); return true; })()`),
		chromedp.Click(edit+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.includes("choose at least one"))(document.querySelector('`+edit+` fieldset.events + .field-error'))`),
	)
	c.run("save the edit",
		chromedp.Click(edit+` [name=events][value="deployment.failed"]`),
		chromedp.Click(edit+` [name=enabled]`),
		chromedp.Click(edit+` button[type=submit]`),
		waitFor(fmt.Sprintf(`(r => r && r.textContent.includes("deployment.failed"))(document.querySelector('#channels tr[data-channel="%d"]'))`, ch.ID)),
		waitFor(`window.ferryNoReload === true`),
	)
	got, err := db.GetChannel(ctx, ch.ID)
	must(t, err)
	if got.URL != ch.URL || got.Secret != "signing-secret" || strings.Join(got.Events, ",") != "deployment.failed" || got.Enabled {
		t.Fatalf("after the edit: %+v", got)
	}

	// A global channel from its own page.
	// The project page has a #new-channel too: wait until the global page has replaced it.
	c.run("open the global channels page", chromedp.Click(`a[href="/channels"]`))
	if !storetest.Eventually(15*time.Second, func() bool {
		loc, err := chromedp.Run(c.ctx, chromedp.Location())
		if err != nil || !strings.HasSuffix(loc, "/channels") {
			return false
		}
		ready, err := chromedp.Run(c.ctx, chromedp.Evaluate[string](`document.readyState`))
		return err == nil && ready == "complete"
	}) {
		c.fail("open the global channels page", fmt.Errorf("the page at /channels did not load"))
	}
	c.run("a global channel",
		chromedp.WaitVisible(`#new-channel`),
		chromedp.Click(`#new-channel summary`),
		eval(noReload),
		setField(`#new-channel-form [name=kind]`, "webhook"),
		setField(`#new-channel-form [name=url]`, "ftp://hooks.example.com/ferry"),
		chromedp.Click(`#new-channel-submit`),
		waitFor(`(e => e && e.textContent.includes("needs an http(s) URL"))(document.querySelector('#new-channel-form .field-error[data-for="url"]'))`),
		setField(`#new-channel-form [name=kind]`, "email"),
		setField(`#new-channel-form [name=url]`, "smtp://ferry:pw@mail.example.com:587"),
		setField(`#new-channel-form [name=recipients]`, "ops@example.com\ndev@example.com"),
		chromedp.Click(`#new-channel-submit`),
		waitFor(`document.querySelectorAll('#channels tbody tr').length === 1`),
		waitFor(`window.ferryNoReload === true`),
	)
	global, err := db.ListChannels(ctx, 0)
	must(t, err)
	if len(global) != 1 || global[0].Kind != "email" || strings.Join(global[0].Recipients, ",") != "ops@example.com,dev@example.com" || len(global[0].Events) != len(store.ChannelEvents) {
		t.Fatalf("the global form created %+v", global)
	}
}
