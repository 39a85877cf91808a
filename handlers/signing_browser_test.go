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

// The settings page sets and removes the webhook signing token: Generate fills in a new
// whsec_ token, Save stores it (write-only: the page then says only that it is set).
func TestBrowserSettingsSigningToken(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	newPageFixture(t, db)
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db}).Handler())
	defer srv.Close()
	c := newChrome(t)
	c.run("log in",
		chromedp.Navigate(srv.URL+"/projects/orders/settings"),
		chromedp.WaitVisible(`input[name=password]`),
		typeText(`input[name=name]`, "root"),
		typeText(`input[name=password]`, "password-root"),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`#signing-form`),
	)
	c.run("a token that is not one",
		eval(`(() => { window.beforeSave = true; return true; })()`),
		setField(`#signing-token`, "whsec_short"),
		chromedp.Click(`#signing-form button[type=submit]`),
		waitFor(`(e => e && e.textContent.startsWith("webhook_signing_token: must be whsec_"))(document.querySelector('#signing-form .field-error[data-for="webhook_signing_token"]'))`),
		waitFor(`window.beforeSave === true`),
	)
	c.run("generate a signing token",
		chromedp.Click(`[data-generate-token="#signing-token"]`),
		waitFor(`document.getElementById('signing-token').value.startsWith('whsec_')`),
	)
	token, err := chromedp.Run(c.ctx, chromedp.Value(`#signing-token`))
	if err != nil {
		c.fail("read the generated token", err)
	}
	c.run("save it",
		eval(`(() => { window.beforeSave = true; return true; })()`),
		chromedp.Click(`#signing-form button[type=submit]`),
	)
	// The page says the token is set in place, without a reload and without showing it.
	c.eventually("see it set", `window.beforeSave === true && document.querySelector('#signing-state button[data-method="PATCH"]') !== null && document.getElementById('signing-token').value === ""`)
	p := waitProject(t, db, func(p *store.Project) bool { return p.WebhookSigningToken != "" })
	if p.WebhookSigningToken != token || store.ValidateSigningToken(token) != nil {
		t.Fatalf("stored signing token %q, the page generated %q", p.WebhookSigningToken, token)
	}
	html, err := chromedp.Run(c.ctx, chromedp.OuterHTML(`body`))
	if err != nil {
		c.fail("read the page", err)
	}
	if strings.Contains(html, strings.TrimPrefix(token, "whsec_")) {
		t.Error("the settings page shows the saved signing token")
	}
	c.run("remove it",
		eval(`(() => { window.confirm = () => true; return true; })()`),
		chromedp.Click(`#signing-state button[data-method="PATCH"]`),
	)
	waitProject(t, db, func(p *store.Project) bool { return p.WebhookSigningToken == "" })
	c.eventually("see it gone", `window.beforeSave === true && document.querySelector('#signing-state button[data-method="PATCH"]') === null`)
}

// waitProject waits until the project orders satisfies ok, and returns it.
func waitProject(t *testing.T, db *store.DB, ok func(*store.Project) bool) *store.Project {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, err := db.GetProject(context.Background(), "orders")
		must(t, err)
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("project orders did not change as expected; signing token set: %v", p.WebhookSigningToken != "")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventually polls a JavaScript expression until it is true, across the page's own reloads
// (which end a single poll with an error).
func (c *chrome) eventually(step, expr string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			c.fail(step, fmt.Errorf("%s is still not true (last error: %v)", expr, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
