package handlers_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"

	"ferry/store"
	"ferry/store/storetest"
)

// "Build now" offers the remote's branches and the chosen branch's recent commits (as the
// mirror holds them) and builds the commit picked; a bad ref is answered next to its field.
func TestBrowserBuildNowPicksABranchAndACommit(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	f := newShipFixture(t, db)
	one := f.commit("One devops")
	f.build(one)
	f.build(f.commit("Two devops"))
	f.commit("Three devops")
	c := newChrome(t)
	c.login(f.srv.URL, "root", "password-root")
	c.run("a bad ref", chromedp.Navigate(f.srv.URL+"/projects/orders"), chromedp.WaitVisible(`#build-form`),
		typeText(`#build-ref`, "bad..ref"), chromedp.Click(`#build-form button[type=submit]`),
		waitFor(`(e => e && e.textContent.startsWith('ref: "bad..ref" is not a branch or tag name'))(document.querySelector('#build-form .field-error[data-for="ref"]'))`))
	c.run("choose main and a commit", chromedp.Navigate(f.srv.URL+"/projects/orders"), chromedp.WaitVisible(`#build-form`),
		chromedp.Focus(`#build-ref`), waitFor(`document.getElementById('build-form').dataset.refsLoaded === "true"`),
		waitFor(`Array.from(document.querySelectorAll('#build-refs option')).some(o => o.value === "main")`),
		typeText(`#build-ref`, "main"),
		eval(`(() => { document.getElementById('build-ref').dispatchEvent(new Event('change', {bubbles: true})); return true; })()`),
		waitFor(`document.getElementById('build-form').dataset.commitsFor === "main"`),
		waitFor(`Array.from(document.querySelectorAll('#build-sha option')).filter(o => o.value).map(o => o.textContent.slice(9)).join(",") === "Two devops — Ada Author,One devops — Ada Author"`),
		chromedp.SetValue(`#build-sha`, one), chromedp.Click(`#build-form button[type=submit]`))
	c.run("see the build", chromedp.WaitVisible(`#job-status`),
		waitFor(`["success", "duplicate"].includes(document.getElementById('job-status').dataset.status)`))
	m := regexp.MustCompile(`/builds/(\d+)$`).FindStringSubmatch(c.location())
	if m == nil {
		t.Fatalf("the browser is at %s, not a build page", c.location())
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	b, err := db.GetBuild(context.Background(), id)
	must(t, err)
	if b.SHA != one || b.CommitTitle != "One devops" || b.CommitAuthor != "Ada Author" {
		t.Errorf("the page built %s (%q by %q), want %s, \"One devops\" by Ada Author", b.SHA, b.CommitTitle, b.CommitAuthor, one)
	}
}
