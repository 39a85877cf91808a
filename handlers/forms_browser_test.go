package handlers_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"ferry/store"
)

// The forms added for the first run and for host keys answer a bad value next to its field
// with the API's words, and show their effect in place, without a reload.
func TestBrowserNewHostEnvironmentTokenAndRepinFormsUpdateInPlace(t *testing.T) {
	db, f, srv, c := adminInBrowser(t)
	ctx := context.Background()

	form := `#new-host-form`
	c.run("a bad user", chromedp.Navigate(srv.URL+"/hosts"), chromedp.Click(`#new-host summary`), chromedp.WaitVisible(form), eval(noReload),
		setField(form+` [name=name]`, "web-9"), setField(form+` [name=address]`, "10.0.0.9"),
		setField(form+` [name=user]`, "not a user!"),
		chromedp.Click(`#nh-generate`), chromedp.Click(form+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.startsWith("user: ") && e.textContent.includes("is not a Unix account name"))(document.querySelector('`+form+` .field-error[data-for="user"]'))`))
	c.run("a generated key", setField(form+` [name=user]`, "deploy"), chromedp.Click(form+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.startsWith("ssh-ed25519 "))(document.querySelector('tr[data-host="web-9"] .pubkey-line'))`),
		waitFor(`window.ferryNoReload === true`))
	h9, err := db.GetHost(ctx, "web-9")
	must(t, err)
	if !strings.Contains(h9.PrivateKey, "OPENSSH PRIVATE KEY") {
		t.Errorf("the generated key was not kept: %q", h9.PrivateKey[:min(40, len(h9.PrivateKey))])
	}

	// Re-pin: the page shows the pinned and the offered fingerprint, and replaces one by the other.
	_, pinned := testKeys(t)
	_, offered := testKeys(t)
	_, err = db.UpdateHost(ctx, "web-2", store.HostUpdate{HostKey: &pinned})
	must(t, err)
	_, err = db.RecordOfferedHostKey(ctx, "web-2", offered)
	must(t, err)
	oldFP, newFP := fingerprintOf(t, pinned), fingerprintOf(t, offered)
	c.run("re-pin a changed key", chromedp.Navigate(srv.URL+"/hosts"), chromedp.WaitVisible(`#hosts`), eval(noReload),
		waitFor(`(e => e && e.textContent.includes(`+jsString(oldFP)+`) && e.textContent.includes(`+jsString(newFP)+`))(document.querySelector('tr[data-host="web-2"] .repin'))`),
		eval(`(() => { window.confirm = () => true; return true; })()`),
		chromedp.Click(`tr[data-host="web-2"] .repin-key`),
		waitFor(`!document.querySelector('tr[data-host="web-2"] .repin') && document.querySelector('tr[data-host="web-2"]').textContent.includes(`+jsString(newFP)+`)`),
		waitFor(`window.ferryNoReload === true`))
	web2, err := db.GetHost(ctx, "web-2")
	must(t, err)
	if fingerprintOf(t, web2.HostKey) != newFP {
		t.Errorf("after the re-pin web-2 has %s pinned, want %s", fingerprintOf(t, web2.HostKey), newFP)
	}

	env := `form[data-method="POST"][data-url="/api/v1/projects/orders/environments"]`
	c.run("a bad environment name", chromedp.Navigate(srv.URL+"/projects/orders/settings"), chromedp.WaitVisible(`#environments`), eval(noReload),
		chromedp.Click(`#new-env summary`), setField(env+` [name=name]`, "Bad Name"), chromedp.Click(env+` button[type=submit]`),
		waitFor(`(e => e && e.textContent.startsWith("name: "))(document.querySelector('`+env+` .field-error[data-for="name"]'))`))
	c.run("a new environment", setField(env+` [name=name]`, "qa"), chromedp.Click(env+` input[value="web-9"]`), chromedp.Click(env+` button[type=submit]`),
		waitFor(`(r => r && r.textContent.includes("web-9"))(document.querySelector('#environments tr[data-env="qa"]'))`),
		waitFor(`!!document.querySelector('#environments details[data-edit-env="qa"]')`),
		waitFor(`window.ferryNoReload === true`))

	c.run("a token name too long", chromedp.Navigate(srv.URL+"/tokens"), eval(noReload),
		setField(`form[data-url="/api/v1/user/tokens"] input[name=name]`, strings.Repeat("t", 101)),
		chromedp.Click(`form[data-url="/api/v1/user/tokens"] button[type=submit]`),
		waitFor(`(e => e && e.textContent === "name: one line of at most 100 characters")(document.querySelector('form[data-url="/api/v1/user/tokens"] .field-error[data-for="name"]'))`),
		setField(`form[data-url="/api/v1/user/tokens"] input[name=name]`, ""))
	c.run("a token made and removed in place",
		typeText(`form[data-url="/api/v1/user/tokens"] input[name=name]`, "ci"),
		chromedp.Click(`form[data-url="/api/v1/user/tokens"] button[type=submit]`),
		waitFor(`(l => l && l.textContent.includes("ci"))(document.getElementById('token-list'))`),
		eval(`(() => { window.confirm = () => true; return true; })()`),
		chromedp.Click(`#token-list button[data-method="DELETE"]`),
		waitFor(`!!document.querySelector('#token-list .empty')`),
		waitFor(`window.ferryNoReload === true`))
	_ = f
}
