package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/build"
	"ferry/build/gitlabtest"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// gitlabPickPermRoutes adds the permission row of the GitLab project search (see
// permRouteParts); the permission test's server has no GitLab, which an administrator is told
// (400).
func gitlabPickPermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /api/v1/gitlab/projects": {401, 403, 403, 403, 400},
	}, nil, nil)
}

// gitlabServer is a ferry whose FERRY_GITLAB_URL is a fake GitLab holding a few projects.
func gitlabServer(t *testing.T, db *store.DB) (*httptest.Server, *gitlabtest.Server) {
	t.Helper()
	gl := gitlabtest.New(t, "api-token")
	for _, p := range []string{"shop/orders", "shop/orders-api", "tools/linter"} {
		gl.AddProject(p)
	}
	w := build.NewWorker(build.WorkerConfig{DB: db, DataDir: t.TempDir(), Owner: "test",
		GitLab: build.GitLabConfig{BaseURL: gl.URL, Token: "api-token", Backoff: 10 * time.Millisecond}})
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db, GitLab: build.NewFrontend(w)}).Handler())
	t.Cleanup(srv.Close)
	return srv, gl
}

func TestAnAdministratorSearchesGitLabsProjects(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		srv, gl := gitlabServer(t, db)
		h := srv.Config.Handler
		admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
		member := tokenClient(t, h, db, mustUser(t, db, "ann", false))
		var found []store.GitLabProject
		admin.must(http.StatusOK, "GET", "/api/v1/gitlab/projects?search=orders", "").decode(t, &found)
		if len(found) != 2 || found[0].Path != "shop/orders" || found[0].HTTPURL != gl.URL+"/shop/orders.git" || found[1].Path != "shop/orders-api" {
			t.Errorf("searching orders found %+v, want shop/orders and shop/orders-api with their clone URLs", found)
		}
		// Around the right: a user who is no administrator learns nothing of GitLab's projects.
		member.must(http.StatusForbidden, "GET", "/api/v1/gitlab/projects?search=orders", "")
		(&client{t: t, h: h}).must(http.StatusUnauthorized, "GET", "/api/v1/gitlab/projects?search=orders", "")
	})
}

// With FERRY_GITLAB_URL set, the new project form offers GitLab's projects by name and fills
// the path and clone URL; a bad name is answered next to its field.
func TestBrowserCreateAProjectPickedFromGitLab(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	srv, gl := gitlabServer(t, db)
	mustUser(t, db, "root", true)
	c := newChrome(t)
	c.login(srv.URL, "root", "password-root")
	c.run("search GitLab", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#gitlab-search`),
		typeText(`#gitlab-search`, "orders"),
		waitFor(`document.getElementById('gitlab-pick').dataset.results === "2"`),
		chromedp.Click(`#gitlab-results button[data-path="shop/orders"]`),
		waitFor(`document.getElementById('np-path').value === "shop/orders" && document.getElementById('np-clone').value === `+jsString(gl.URL+"/shop/orders.git")+
			` && document.getElementById('np-name').value === "orders"`))
	c.run("a bad name", eval(`(() => { document.getElementById('np-name').value = ''; return true; })()`), typeText(`#np-name`, "Bad Name!"), chromedp.Click(`#np-submit`),
		waitFor(`(e => e && e.textContent.startsWith("name: "))(document.querySelector('#new-project-form .field-error[data-for="name"]'))`))
	c.run("create it", eval(`(() => { document.getElementById('np-name').value = ''; return true; })()`), typeText(`#np-name`, "orders"), chromedp.Click(`#np-submit`),
		chromedp.WaitVisible(`#project-created`))
	p, err := db.GetProject(context.Background(), "orders")
	must(t, err)
	if p.GitLabPath != "shop/orders" || p.CloneURL != gl.URL+"/shop/orders.git" {
		t.Errorf("the project was created with %s and %s", p.GitLabPath, p.CloneURL)
	}
}
