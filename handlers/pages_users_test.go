package handlers_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"ferry/store"
	"ferry/store/storetest"
)

func TestUserAndMemberFormsOnlyForAdministrators(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newPageFixture(t, db)
		h := newServer(t, db)
		ann, root := sessionClient(t, h, db, f.member), sessionClient(t, h, db, f.admin)

		users := root.must(200, "GET", "/users", "").body
		if !strings.Contains(users, `<details class="card user-edit" data-user="ann">`) || !strings.Contains(users, `data-url="/api/v1/users/ann"`) {
			t.Errorf("the users page lacks ann's edit form")
		}
		// An administrator's own entry has no password or administrator field: those go
		// through the account page, which asks for the current password.
		self := users[strings.Index(users, `<details class="card user-edit" data-user="root">`):]
		self = self[:strings.Index(self, "</details>")]
		if strings.Contains(self, `name="password"`) || strings.Contains(self, `name="admin"`) || !strings.Contains(self, `href="/account"`) {
			t.Errorf("the administrator's own entry offers the password or the administrator right: %s", self)
		}
		settings := root.must(200, "GET", "/projects/orders/settings", "").body
		if !strings.Contains(settings, `data-body='{"user":"ann","production":true}'`) {
			t.Errorf("the settings page does not offer to give ann the production right")
		}

		if r := ann.do("GET", "/users", ""); r.status != 403 || strings.Contains(r.body, "user-edit") {
			t.Errorf("a member gets the users page: %d", r.status)
		}
		ann.must(403, "PATCH", "/api/v1/users/bob", `{"password":"taken-over-pw"}`)
		ann.must(403, "POST", "/api/v1/projects/orders/members", `{"user":"ann","production":true}`)
		checkPassword(t, db, "bob", "password-bob", true)
		m, err := db.ListMembers(context.Background(), f.project.ID)
		must(t, err)
		if len(m) != 1 || m[0].Production {
			t.Errorf("the member's refused production right went through: %+v", m)
		}
	})
}

func TestBrowserEditUserAndMember(t *testing.T) {
	db, f, srv, c := adminInBrowser(t)
	ctx := context.Background()

	form := `details[data-user="bob"] form`
	c.run("a short password",
		chromedp.Navigate(srv.URL+"/users"),
		chromedp.WaitVisible(`#users`),
		eval(noReload),
		chromedp.Click(`details[data-user="bob"] summary`),
		setField(form+` [name=email]`, "robert@example.com"),
		setField(form+` [name=password]`, "short"),
		chromedp.Click(form+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.includes("at least 8 characters"))(document.querySelector('`+form+` .field-error[data-for="password"]'))`),
	)
	c.run("reset bob's password",
		setField(form+` [name=password]`, "bob's new password"),
		chromedp.Click(form+` button[type=submit]`),
		waitFor(`(r => r && r.textContent.includes("robert@example.com"))(document.querySelector('#users tr[data-user="bob"]'))`),
		waitFor(`window.ferryNoReload === true`),
	)
	checkPassword(t, db, "bob", "bob's new password", true)
	bob, err := db.GetUserByName(ctx, "bob")
	must(t, err)
	if bob.Email != "robert@example.com" || bob.Admin {
		t.Fatalf("after the user form: %+v", bob)
	}

	c.run("give ann the production right",
		chromedp.Navigate(srv.URL+"/projects/orders/settings"),
		chromedp.WaitVisible(`#members`),
		eval(noReload),
		chromedp.Click(`#members tr[data-member="ann"] button.secondary`),
		waitFor(`(r => r && r.textContent.includes("Take the production right"))(document.querySelector('#members tr[data-member="ann"]'))`),
		waitFor(`window.ferryNoReload === true`),
	)
	m, err := db.ListMembers(ctx, f.project.ID)
	must(t, err)
	if len(m) != 1 || !m[0].Production {
		t.Fatalf("after the button: %+v", m)
	}
	c.run("a user who does not exist",
		typeText(`#member-form [name=user]`, "nobody"),
		chromedp.Click(`#member-form button[type=submit]`),
		waitFor(`(e => e && e.textContent.includes("no user named"))(document.querySelector('#member-form .field-error[data-for="user"]'))`),
	)
	c.run("add bob with the form",
		setField(`#member-form [name=user]`, "bob"),
		chromedp.Click(`#member-form button[type=submit]`),
		waitFor(`!!document.querySelector('#members tr[data-member="bob"]')`),
		waitFor(`document.querySelector('#member-form .field-error') === null`),
		waitFor(`window.ferryNoReload === true`),
	)
	if _, err := db.GetMember(ctx, f.project.ID, bob.ID); err != nil {
		t.Fatalf("bob is not a member after the form: %v", err)
	}

	// A new user: a bad name is answered next to the field, a good one appears in the list.
	add := `#new-user-form`
	c.run("a new user with a bad name",
		chromedp.Navigate(srv.URL+"/users"),
		chromedp.WaitVisible(`#users`),
		eval(noReload),
		chromedp.Click(`details:has(`+add+`) summary`),
		setField(add+` [name=name]`, "Carl Smith"),
		setField(add+` [name=password]`, "carl's password"),
		chromedp.Click(add+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.startsWith("name: "))(document.querySelector('`+add+` .field-error[data-for="name"]'))`),
	)
	c.run("a new user",
		setField(add+` [name=name]`, "carl"),
		chromedp.Click(add+` button[type=submit]`),
		waitFor(`!!document.querySelector('#users tr[data-user="carl"]')`),
		waitFor(`window.ferryNoReload === true`),
	)
	checkPassword(t, db, "carl", "carl's password", true)
}
