package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// pagePermRoutes adds the permission rows of these routes (see permRouteParts).
func pagePermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /lang/:lang":                 {303, 303, 303, 303, 303},
		"GET /projects/:project/deploy":   {303, 404, 200, 200, 200},
		"GET /projects/:project/settings": {303, 404, 403, 403, 200},
		"GET /builds/:build":              {303, 404, 200, 200, 200},
		"GET /deployments/:deployment":    {303, 404, 200, 200, 200},
		"GET /hosts":                      {303, 200, 200, 200, 200},
		"GET /users":                      {303, 403, 403, 403, 200},
		"GET /tokens":                     {303, 200, 200, 200, 200},
		"GET /audit":                      {303, 403, 403, 403, 200},
	}, nil, pagesPermFixture)
}

// pagesPermFixture names a language, and a build and a deployment of the fixture's project
// when the builds and deployments tests have not named theirs.
func pagesPermFixture(t *testing.T, db *store.DB, fx *permFixture) {
	fx.params["lang"] = "zh"
	if fx.params["build"] != "" && fx.params["deployment"] != "" {
		return
	}
	ctx := context.Background()
	p, err := db.GetProject(ctx, fx.project)
	must(t, err)
	var v *store.Version
	if id, err := strconv.ParseInt(fx.params["version"], 10, 64); err == nil {
		v, err = db.GetVersion(ctx, id)
		must(t, err)
	} else {
		var b *store.Build
		b, v = mustVersion(t, db, p.ID, "main")
		fx.params["version"] = strconv.FormatInt(v.ID, 10)
		if fx.params["build"] == "" {
			fx.params["build"] = strconv.FormatInt(b.ID, 10)
		}
	}
	if fx.params["deployment"] == "" {
		env, err := db.GetEnvironment(ctx, p.ID, "unprot")
		must(t, err)
		d, err := db.CreateDeployment(ctx, store.NewDeployment{ProjectID: p.ID, EnvironmentID: env.ID, VersionID: v.ID, TriggeredBy: "test"})
		must(t, err)
		fx.params["deployment"] = strconv.FormatInt(d.ID, 10)
	}
}

var shaCounter int

// mustVersion makes a successful build of a new commit on branch of a project, with its
// version. Builds of other projects that a claim takes first are finished as canceled.
func mustVersion(t testing.TB, db *store.DB, projectID int64, branch string) (*store.Build, *store.Version) {
	t.Helper()
	ctx := context.Background()
	shaCounter++
	sha := fmt.Sprintf("%040x", 0xabc0000+shaCounter)
	b, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: projectID, Ref: branch, Branch: branch, SHA: sha,
		CommitTitle: "Add the order export\n\nlong body", CommitAuthor: "Ann Author", TriggeredBy: "push by ann"})
	must(t, err)
	for {
		got, err := db.ClaimBuild(ctx, "pages-test", time.Minute)
		must(t, err)
		if got == nil {
			t.Fatalf("build %d could not be claimed", b.ID)
		}
		if got.ID != b.ID {
			_, err := db.FinishBuild(ctx, got.ID, "pages-test", store.BuildResult{Status: store.BuildCanceled, Error: "test"})
			must(t, err)
			continue
		}
		name := fmt.Sprintf("20260101%06d-%s-%s", shaCounter, branch, sha[:8])
		_, err = db.FinishBuild(ctx, b.ID, "pages-test", store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
			Name: name, SHA: sha, Ref: branch, SHA256: strings.Repeat("ab", 32), Size: 123456, Path: "/nonexistent/" + name + ".tar.gz",
			Pipeline: "build:\n  script: [\"true\"]\n  artifact: out\ndeploy:\n  path: /opt/app\n  start: bin/start\n"}})
		must(t, err)
		v, err := db.GetVersionByName(ctx, projectID, name)
		must(t, err)
		b, err = db.GetBuild(ctx, b.ID)
		must(t, err)
		return b, v
	}
}

// Secrets of the page fixture, which no page may show (the webhook secret only on the
// settings page, to its administrators).
const (
	fixtureHookSecret    = "hook-secret-Zq81x"
	fixtureGitLabToken   = "glpat-SECRETSECRET"
	fixtureChannelSecret = "SECdingtalk-signing-secret"
	fixtureRobotToken    = "robot-access-token-9f8e7d"
)

// pageFixture is a project with builds, a version, environments, a running deployment,
// instances, webhook events, a channel and a failed-looking log, as the pages show them.
type pageFixture struct {
	admin, member, outsider *store.User
	project                 *store.Project
	build                   *store.Build
	version                 *store.Version
	deployment              *store.Deployment
	privateKey              string
	staging, prod           *store.Environment
	web1, web2              *store.Host
}

func newPageFixture(t *testing.T, db *store.DB) *pageFixture {
	t.Helper()
	ctx := context.Background()
	f := &pageFixture{admin: mustUser(t, db, "root", true), member: mustUser(t, db, "ann", false), outsider: mustUser(t, db, "bob", false)}
	f.privateKey, _ = testKeys(t)
	f.project = &store.Project{Name: "orders", GitLabPath: "shop/orders", CloneURL: "https://gitlab.example.com/shop/orders.git",
		WebhookSecret: fixtureHookSecret, GitLabToken: fixtureGitLabToken, Trigger: store.DefaultTrigger(), KeepVersions: 20}
	must(t, db.CreateProject(ctx, f.project))
	_, err := db.SetMember(ctx, f.project.ID, "ann", false)
	must(t, err)
	f.web1 = &store.Host{Name: "web-1", Address: "10.0.0.1", Port: 22, User: "deploy", PrivateKey: f.privateKey}
	f.web2 = &store.Host{Name: "web-2", Address: "10.0.0.2", Port: 22, User: "deploy", PrivateKey: f.privateKey}
	must(t, db.CreateHost(ctx, f.web1))
	must(t, db.CreateHost(ctx, f.web2))
	f.staging = &store.Environment{ProjectID: f.project.ID, Name: "staging", Hosts: []string{"web-1", "web-2"}, Strategy: store.Strategy{Kind: "rolling", Batch: "1"}}
	// A host of a protected environment may not also be in an unprotected one.
	must(t, db.CreateHost(ctx, &store.Host{Name: "db-1", Address: "10.0.0.3", Port: 22, User: "deploy", PrivateKey: f.privateKey}))
	f.prod = &store.Environment{ProjectID: f.project.ID, Name: "prod", Hosts: []string{"db-1"}, Protected: true}
	must(t, db.CreateEnvironment(ctx, f.staging))
	must(t, db.CreateEnvironment(ctx, f.prod))
	f.build, f.version = mustVersion(t, db, f.project.ID, "main")
	w, err := db.OpenLog(ctx, store.JobBuild, f.build.ID)
	must(t, err)
	w.Write("stdout", "", "compiling <orders> & friends")
	w.Write("stderr", "", "warning: deprecated API")
	must(t, w.Close())
	f.deployment, err = db.CreateDeployment(ctx, store.NewDeployment{ProjectID: f.project.ID, EnvironmentID: f.staging.ID,
		VersionID: f.version.ID, TriggeredBy: "api by ann"})
	must(t, err)
	must(t, db.SetInstance(ctx, store.Instance{ProjectID: f.project.ID, HostID: f.web1.ID, EnvironmentID: &f.staging.ID,
		Version: f.version.Name, Status: "running"}))
	key := "delivery-1"
	_, _, _, err = db.RecordEvent(ctx, &store.Event{ProjectID: &f.project.ID, DeliveryKey: &key, Kind: "push", Ref: "refs/heads/feature",
		SHA: strings.Repeat("c", 40), Author: "Carl", Message: "WIP on the cart", Decision: store.EventSkip,
		Reason: "branch feature does not match the trigger's branches"}, nil)
	must(t, err)
	must(t, db.CreateChannel(ctx, &store.Channel{ProjectID: &f.project.ID, Kind: store.ChannelDingTalk,
		URL: "https://oapi.dingtalk.com/robot/send?access_token=" + fixtureRobotToken, Secret: fixtureChannelSecret,
		Events: []string{"build.failed"}, Enabled: true}))
	return f
}

// get fetches a page as c with extra headers and returns it.
func get(t *testing.T, c *client, path string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest("GET", path, nil)
	must(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return c.send(req)
}

func TestPagesShowWhatRunsWhere(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		f := newPageFixture(t, db)
		member := sessionClient(t, h, db, f.member)
		outsider := sessionClient(t, h, db, f.outsider)
		build := "/builds/" + strconv.FormatInt(f.build.ID, 10)
		deployment := "/deployments/" + strconv.FormatInt(f.deployment.ID, 10)
		pages := []struct {
			name, path string
			want       []string
		}{
			{"dashboard", "/", []string{`href="/projects/orders"`, `href="` + build + `"`, `href="` + deployment + `"`, "Recent builds", "staging"}},
			{"project", "/projects/orders", []string{
				"https://gitlab.example.com/shop/orders/-/commit/" + f.build.SHA, // commit linked to GitLab
				"Ann Author", "Add the order export", f.version.Name, `data-host="web-1"`, `data-version="` + f.version.Name + `"`,
				"nothing deployed", "protected", "branch feature does not match", "not built", "Deploy…",
				`href="/projects/orders/deploy?version=` + f.version.Name + `"`, "usually takes about"}},
			{"build", build, []string{"Build #1", "compiling &lt;orders&gt; &amp; friends", "warning: deprecated API",
				`data-stream="/api/v1/builds/` + strconv.FormatInt(f.build.ID, 10) + `/log/stream"`, "success", f.version.Name}},
			{"deployment", deployment, []string{"Deployment #", "queued", `data-host="web-1"`, `data-host="web-2"`, `id="cancel"`,
				`data-poll="/api/v1/deployments/` + strconv.FormatInt(f.deployment.ID, 10) + `"`, "<progress"}},
			{"deploy dialog", "/projects/orders/deploy?version=" + f.version.Name, []string{`name="environment"`, `value="staging"`,
				`value="` + f.version.Name + `" selected`, `name="hosts" value="web-2"`, "needs the production right", "runs on web-1", "rolling"}},
			{"hosts", "/hosts", []string{"web-1", "10.0.0.2:22", "recorded on first connection"}},
			{"tokens", "/tokens", []string{"Create token"}},
		}
		for _, pg := range pages {
			r := member.must(http.StatusOK, "GET", pg.path, "")
			for _, w := range pg.want {
				if !strings.Contains(r.body, w) {
					t.Errorf("%s page lacks %q", pg.name, w)
				}
			}
			if strings.Contains(r.body, "[") && regexp.MustCompile(`\[[a-z_]+\.[a-z_.]+\]`).MatchString(r.body) {
				t.Errorf("%s page has an untranslated key: %s", pg.name, regexp.MustCompile(`\[[a-z_]+\.[a-z_.]+\]`).FindString(r.body))
			}
			if pg.path != "/" && pg.path != "/hosts" && pg.path != "/tokens" {
				r := outsider.must(http.StatusNotFound, "GET", pg.path, "")
				if strings.Contains(r.body, "Ann Author") || strings.Contains(r.body, "runs on") || strings.Contains(r.body, "staging") {
					t.Errorf("%s: a non-member sees the project's data", pg.name)
				}
			}
		}
		if r := outsider.must(http.StatusOK, "GET", "/", ""); strings.Contains(r.body, "orders") {
			t.Error("the dashboard shows a non-member the project")
		}
		member.must(http.StatusNotFound, "GET", "/builds/999999", "")
		member.must(http.StatusNotFound, "GET", "/deployments/nope", "")
		member.must(http.StatusForbidden, "GET", "/projects/orders/settings", "")

		admin := sessionClient(t, h, db, f.admin)
		for path, want := range map[string][]string{
			"/projects/orders/settings": {testBaseURL + "/hooks/gitlab", "Register webhook in GitLab", "dingtalk", "build.failed",
				"Send a test message", "ann", "staging"},
			"/users": {"ann", "bob", "New user"},
			"/audit": {"project/orders", "Audit log"},
		} {
			r := admin.must(http.StatusOK, "GET", path, "")
			for _, w := range want {
				if !strings.Contains(r.body, w) {
					t.Errorf("%s lacks %q", path, w)
				}
			}
		}
	})
}

func TestPagesSpeakChinese(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		f := newPageFixture(t, db)
		member := sessionClient(t, h, db, f.member)
		zh := map[string]string{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
		r := get(t, member, "/projects/orders", zh)
		for _, w := range []string{`lang="zh-CN"`, "构建", "环境", "部署…", "未部署", "通常需要约", "English"} {
			if !strings.Contains(r.body, w) {
				t.Errorf("Chinese project page lacks %q", w)
			}
		}
		if strings.Contains(r.body, "Recent builds") || strings.Contains(r.body, ">Versions<") {
			t.Error("the Chinese page has English headings")
		}
		r = get(t, member, "/builds/"+strconv.FormatInt(f.build.ID, 10), zh)
		if !strings.Contains(r.body, "构建 #1") || !strings.Contains(r.body, "成功") {
			t.Errorf("Chinese build page: %.400s", r.body)
		}
		if r := get(t, member, "/", map[string]string{"Accept-Language": "fr-FR,en;q=0.5"}); !strings.Contains(r.body, `lang="en"`) {
			t.Error("a French browser does not get English")
		}
		// The switch: a cookie that wins over Accept-Language.
		r = get(t, member, "/lang/zh?next=/projects/orders", nil)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/projects/orders" {
			t.Fatalf("language switch: %d %s", r.status, r.header.Get("Location"))
		}
		cookie := r.header.Get("Set-Cookie")
		if !strings.Contains(cookie, "ferry_lang=zh") {
			t.Fatalf("language switch set no cookie: %q", cookie)
		}
		r = get(t, member, "/", map[string]string{"Accept-Language": "en", "Cookie": "ferry_lang=zh; ferry_session=" + member.session})
		if !strings.Contains(r.body, "最近的构建") {
			t.Error("the language cookie does not win over Accept-Language")
		}
		if r := get(t, member, "/lang/zh?next=//evil.example.com", nil); r.header.Get("Location") != "/" {
			t.Errorf("the language switch redirects off the site: %s", r.header.Get("Location"))
		}
		// The login page too.
		anon := &client{t: t, h: h}
		if r := get(t, anon, "/login", zh); !strings.Contains(r.body, "登录 ferry") {
			t.Error("the login page is not in Chinese")
		}
	})
}

func TestPagesShowNoSecrets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		f := newPageFixture(t, db)
		admin := sessionClient(t, h, db, f.admin)
		_, tokenSecret, err := db.CreateToken(context.Background(), f.admin.ID, "ci")
		must(t, err)
		u, err := db.GetUserByName(context.Background(), "ann")
		must(t, err)
		secrets := map[string]string{
			"private key":        f.privateKey,
			"private key body":   strings.Split(f.privateKey, "\n")[1],
			"GitLab token":       fixtureGitLabToken,
			"channel secret":     fixtureChannelSecret,
			"robot access token": fixtureRobotToken,
			"API token":          tokenSecret,
			"password hash":      u.PasswordHash,
			"session cookie":     admin.session,
			"webhook secret":     "hook-secret",
		}
		paths := []string{"/", "/projects/orders", "/projects/orders/deploy", "/projects/orders/settings", "/hosts", "/users",
			"/tokens", "/audit", "/builds/" + strconv.FormatInt(f.build.ID, 10), "/deployments/" + strconv.FormatInt(f.deployment.ID, 10)}
		for _, path := range paths {
			r := admin.must(http.StatusOK, "GET", path, "")
			for what, secret := range secrets {
				if what == "webhook secret" && path == "/projects/orders/settings" {
					continue // shown to administrators to paste into GitLab
				}
				if strings.Contains(r.body, secret) {
					t.Errorf("%s shows the %s", path, what)
				}
			}
		}
		r := admin.must(http.StatusOK, "GET", "/projects/orders/settings", "")
		if !strings.Contains(r.body, `type="password" readonly id="hook-secret"`) {
			t.Error("the settings page does not offer the webhook secret to copy, masked")
		}
	})
}

func TestEveryMessageHasBothLanguages(t *testing.T) {
	verbs := regexp.MustCompile(`%[a-z]`)
	for _, key := range handlers.MessageKeys() {
		en, zh := handlers.Message(key)
		if strings.TrimSpace(en) == "" || strings.TrimSpace(zh) == "" {
			t.Errorf("message %q lacks a language: en %q, zh %q", key, en, zh)
		}
		if fmt.Sprint(verbs.FindAllString(en, -1)) != fmt.Sprint(verbs.FindAllString(zh, -1)) {
			t.Errorf("message %q: the languages take different arguments: %q vs %q", key, en, zh)
		}
	}
	files, err := filepath.Glob("../templates/*.html")
	must(t, err)
	used := regexp.MustCompile(`\.T "([^"]+)"`)
	known := map[string]bool{}
	for _, k := range handlers.MessageKeys() {
		known[k] = true
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		must(t, err)
		for _, m := range used.FindAllStringSubmatch(string(data), -1) {
			if !known[m[1]] {
				t.Errorf("%s uses message %q, which is not in the table", filepath.Base(name), m[1])
			}
		}
	}
}

func TestPageHelpers(t *testing.T) {
	for _, tc := range []struct{ name, clone, sha, want string }{
		{"https", "https://gitlab.example.com/shop/orders.git", "abcdef1234", "https://gitlab.example.com/shop/orders/-/commit/abcdef1234"},
		{"credentials dropped", "https://oauth2:tok@gitlab.example.com/shop/orders.git", "abcdef1234", "https://gitlab.example.com/shop/orders/-/commit/abcdef1234"},
		{"scp-like", "git@gitlab.example.com:shop/orders.git", "abcdef1234", "https://gitlab.example.com/shop/orders/-/commit/abcdef1234"},
		{"local path", "/srv/git/orders.git", "abcdef1234", ""},
		{"not a sha", "https://gitlab.example.com/shop/orders.git", "x;rm -rf ~", ""},
	} {
		if got := handlers.CommitURL(tc.clone, tc.sha); got != tc.want {
			t.Errorf("%s: commit URL %q, want %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct{ header, want string }{
		{"zh-CN,zh;q=0.9,en;q=0.8", "zh"}, {"en-US,en;q=0.9,zh;q=0.8", "en"}, {"fr;q=1, zh-TW;q=0.5", "zh"},
		{"", "en"}, {"de", "en"}, {"en;q=0.2, zh;q=0.7", "zh"}, {"zh;q=0", "en"},
	} {
		if got := handlers.LangFromAccept(tc.header); got != tc.want {
			t.Errorf("Accept-Language %q: %s, want %s", tc.header, got, tc.want)
		}
	}
	s := time.Second
	for _, tc := range []struct {
		runs []time.Duration
		want time.Duration
	}{{nil, 0}, {[]time.Duration{5 * s}, 5 * s}, {[]time.Duration{9 * s, 1 * s, 5 * s}, 5 * s}, {[]time.Duration{4 * s, 1 * s, 100 * s, 2 * s}, 3 * s}} {
		if got := handlers.Median(tc.runs); got != tc.want {
			t.Errorf("median of %v: %v, want %v", tc.runs, got, tc.want)
		}
	}
}
