package handlers_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// versionPagePermRoutes adds the permission row of the version page (see permRouteParts); the
// pages' fixture names the version by id, which the page takes as well as a name.
func versionPagePermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /projects/:project/versions/:version": {303, 404, 200, 200, 200},
	}, nil, nil)
}

// The version page shows a version at a glance: its commit, build, size and date, where it runs
// now, the changes since the version before, and a button to deploy it (or roll back to it);
// in English and in Chinese, and to members only.
func TestVersionPageShowsWhereItRuns(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		f := newPageFixture(t, db)
		_, newer := mustVersion(t, db, f.project.ID, "main")
		member := sessionClient(t, h, db, f.member)
		page := "/projects/orders/versions/" + f.version.Name

		r := member.must(http.StatusOK, "GET", page, "")
		for _, w := range []string{"Version " + f.version.Name, "https://gitlab.example.com/shop/orders/-/commit/" + f.version.SHA,
			"Add the order export", "Ann Author", `href="/builds/` + strconv.FormatInt(f.build.ID, 10) + `"`, f.version.SHA256,
			"Where it runs now", `<tr data-env="staging" data-host="web-1">`, "Changes since the version before",
			`id="version-changes"`, `data-version="` + f.version.Name + `" data-url="/api/v1/projects/orders/changes"`,
			`id="version-deploy" href="/projects/orders/deploy?version=` + f.version.Name + `"`, "Deploy or roll back to this version"} {
			if !strings.Contains(r.body, w) {
				t.Errorf("the version page lacks %q", w)
			}
		}
		if strings.Contains(r.body, "long body") || strings.Contains(r.body, `data-host="web-2"`) {
			t.Error("the version page shows the commit's body or a host that does not run the version")
		}
		r = member.must(http.StatusOK, "GET", "/projects/orders/versions/"+newer.Name, "")
		for _, w := range []string{"This version runs on no host now.", "Deploy this version…"} {
			if !strings.Contains(r.body, w) {
				t.Errorf("the newest version's page lacks %q", w)
			}
		}
		// By id too (as the API names versions), and the project page links each version here.
		member.must(http.StatusOK, "GET", "/projects/orders/versions/"+strconv.FormatInt(f.version.ID, 10), "")
		for _, from := range []string{"/projects/orders", "/builds/" + strconv.FormatInt(f.build.ID, 10), "/deployments/" + strconv.FormatInt(f.deployment.ID, 10)} {
			if r := member.must(http.StatusOK, "GET", from, ""); !strings.Contains(r.body, `href="`+page+`"`) {
				t.Errorf("%s does not link the version to its page", from)
			}
		}

		zh := get(t, member, page, map[string]string{"Accept-Language": "zh-CN,zh;q=0.9"})
		for _, w := range []string{`lang="zh-CN"`, "版本 " + f.version.Name, "当前运行位置", "相对上一个版本的变更", "部署或回滚到此版本", "构建 #", "保存时间"} {
			if !strings.Contains(zh.body, w) {
				t.Errorf("the Chinese version page lacks %q", w)
			}
		}
		if strings.Contains(zh.body, "Where it runs now") {
			t.Error("the Chinese version page has English headings")
		}

		// Around the right: a non-member learns nothing, not even through another project.
		outsider := sessionClient(t, h, db, f.outsider)
		if r := outsider.must(http.StatusNotFound, "GET", page, ""); strings.Contains(r.body, "Ann Author") || strings.Contains(r.body, "web-1") {
			t.Error("a non-member sees the version page's data")
		}
		other := &store.Project{Name: "other", GitLabPath: "g/other", CloneURL: "https://gitlab.example.com/g/other.git", Trigger: store.DefaultTrigger()}
		must(t, db.CreateProject(context.Background(), other))
		_, err := db.SetMember(context.Background(), other.ID, "bob", true)
		must(t, err)
		for _, path := range []string{"/projects/other/versions/" + f.version.Name, "/projects/other/versions/" + strconv.FormatInt(f.version.ID, 10)} {
			if r := outsider.must(http.StatusNotFound, "GET", path, ""); strings.Contains(r.body, "Ann Author") {
				t.Errorf("%s shows another project's version", path)
			}
		}
		member.must(http.StatusNotFound, "GET", "/projects/orders/versions/nope", "")
	})
}
