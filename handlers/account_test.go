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

// accountPermRoutes: everyone has an account page; a wrong current password is refused whoever asks.
func accountPermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /account":              {303, 200, 200, 200, 200},
		"PUT /api/v1/user/password": {401, 403, 403, 403, 403},
	}, map[string]string{
		"PUT /api/v1/user/password": `{"current_password":"not-the-password","new_password":"a new long password"}`,
	}, nil)
}

// checkPassword fails the test unless password is (or, with ok false, is not) name's password.
func checkPassword(t *testing.T, db *store.DB, name, password string, ok bool) {
	t.Helper()
	_, err := db.Authenticate(context.Background(), name, password)
	if ok && err != nil {
		t.Fatalf("%s cannot log in with %q: %v", name, password, err)
	}
	if !ok && err == nil {
		t.Fatalf("%s can log in with %q", name, password)
	}
}

func TestChangeOwnPasswordNeedsTheCurrentOne(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		ann := mustUser(t, db, "ann", false)
		asAnn := sessionClient(t, h, db, ann)

		// The attack: a session left open (or a stolen token) tries to set a new password
		// without knowing the current one, to lock its owner out.
		r := asAnn.must(400, "PUT", "/api/v1/user/password", `{"new_password":"taken-over-pw"}`)
		if !strings.Contains(r.body, "current_password: give your current password") {
			t.Errorf("without the current password: %s", r.body)
		}
		r = asAnn.must(403, "PUT", "/api/v1/user/password", `{"current_password":"a guess","new_password":"taken-over-pw"}`)
		if !strings.Contains(r.body, "current_password: this is not your current password") {
			t.Errorf("with a wrong current password: %s", r.body)
		}
		tok := tokenClient(t, h, db, ann)
		tok.must(403, "PUT", "/api/v1/user/password", `{"current_password":"another guess","new_password":"taken-over-pw"}`)
		checkPassword(t, db, "ann", "taken-over-pw", false)
		checkPassword(t, db, "ann", "password-ann", true)

		r = asAnn.must(400, "PUT", "/api/v1/user/password", `{"current_password":"password-ann","new_password":"short"}`)
		if !strings.Contains(r.body, "new_password: must be at least 8 characters") {
			t.Errorf("a short new password: %s", r.body)
		}
		asAnn.must(200, "PUT", "/api/v1/user/password", `{"current_password":"password-ann","new_password":"ann's new password"}`)
		checkPassword(t, db, "ann", "ann's new password", true)
		checkPassword(t, db, "ann", "password-ann", false)
		// A new password ends the user's browser sessions.
		asAnn.must(401, "GET", "/api/v1/user", "")

		// An administrator changing their own password goes the same way, not through the
		// users' API, which asks for no current password.
		boss := mustUser(t, db, "boss", true)
		asBoss := sessionClient(t, h, db, boss)
		r = asBoss.must(400, "PATCH", "/api/v1/users/boss", `{"password":"taken-over-pw"}`)
		if !strings.Contains(r.body, "PUT /api/v1/user/password") {
			t.Errorf("an administrator's own password through the users' API: %s", r.body)
		}
		checkPassword(t, db, "boss", "password-boss", true)
		asBoss.must(200, "PATCH", "/api/v1/users/ann", `{"password":"reset-by-boss"}`) // resetting another's still works
		checkPassword(t, db, "ann", "reset-by-boss", true)
	})
}

func TestChangeOwnPasswordCannotBeUsedToGuess(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		asAnn := sessionClient(t, h, db, mustUser(t, db, "ann", false))
		for i := 0; i < store.DefaultLoginLimits.PerUserAddress; i++ {
			asAnn.must(403, "PUT", "/api/v1/user/password", `{"current_password":"guess","new_password":"taken-over-pw"}`)
		}
		// Even the right password is not checked once the guesses are used up.
		r := asAnn.must(429, "PUT", "/api/v1/user/password", `{"current_password":"password-ann","new_password":"taken-over-pw"}`)
		if !strings.Contains(r.body, "Too many failed logins") {
			t.Errorf("after the limit: %s", r.body)
		}
		checkPassword(t, db, "ann", "password-ann", true)
	})
}

func TestAccountPage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		ann := sessionClient(t, h, db, mustUser(t, db, "ann", false))
		page := ann.must(200, "GET", "/account", "").body
		for _, want := range []string{`id="password-form"`, `name="current_password"`, `name="new_password"`, `href="/account"`} {
			if !strings.Contains(page, want) {
				t.Errorf("the account page lacks %s", want)
			}
		}
		zh := get(t, ann, "/account", map[string]string{"Accept-Language": "zh-CN"}).body
		if !strings.Contains(zh, "修改密码") || !strings.Contains(zh, "当前密码") {
			t.Errorf("the Chinese account page lacks its words")
		}
	})
}

// login logs the tab in as name with password and waits for the dashboard.
func (c *chrome) login(base, name, password string) {
	c.t.Helper()
	c.run("log in as "+name,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`input[name=password]`),
		typeText(`input[name=name]`, name),
		typeText(`input[name=password]`, password),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`#account-link`),
	)
}

func TestBrowserChangeMyPassword(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	mustUser(t, db, "ann", false)
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db}).Handler())
	defer srv.Close()
	c := newChrome(t)
	c.login(srv.URL, "ann", "password-ann")

	c.run("a wrong current password",
		chromedp.Click(`#account-link`),
		chromedp.WaitVisible(`#password-form`),
		typeText(`#current-password`, "a guess"),
		typeText(`#new-password`, "ann's new password"),
		typeText(`#repeat-password`, "ann's new password"),
		chromedp.Click(`#password-submit`),
		waitFor(`(e => e && e.textContent.includes("this is not your current password") && e.previousElementSibling.contains(document.getElementById('current-password')))(document.querySelector('.field-error[data-for="current_password"]'))`),
	)
	c.run("the new password typed twice differently",
		chromedp.SetValue(`#current-password`, "password-ann"),
		chromedp.SetValue(`#repeat-password`, "something else"),
		chromedp.Click(`#password-submit`),
		waitFor(`(e => e && e.textContent === "The two new passwords differ")(document.querySelector('.field-error[data-for="repeat-password"]'))`),
		waitFor(`document.querySelector('.field-error[data-for="current_password"]') === null`),
	)
	checkPassword(t, db, "ann", "password-ann", true)
	c.run("change it",
		chromedp.SetValue(`#repeat-password`, "ann's new password"),
		chromedp.Click(`#password-submit`),
		chromedp.WaitVisible(`input[name=password]`),
	)
	checkPassword(t, db, "ann", "ann's new password", true)
	// The login form (a plain form, for browsers without JavaScript too) says so and keeps the name.
	c.run("the old password no longer works",
		typeText(`input[name=name]`, "ann"),
		typeText(`input[name=password]`, "password-ann"),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
	)
	c.eventually("see the login refused", `(e => !!e && e.textContent.length > 0 && e.nextElementSibling.matches('form[action="/login"]'))(document.querySelector('.card p.error[role=alert]'))
		&& document.querySelector('input[name=name]').value === "ann" && document.querySelector('input[name=password]').value === ""`)
	c.run("log in with the new password",
		typeText(`input[name=password]`, "ann's new password"),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`#password-form`),
	)
}
