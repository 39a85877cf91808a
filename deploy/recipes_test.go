package deploy_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// The recipe tests follow docs/recipes.md with the files of testdata/recipes: each builds its
// service with the real toolchain (the build script of its .ferry.yml, run as the build worker
// runs it), deploys v1 to two real sshd hosts, deploys v2 with a config rendered per host,
// and goes back to v1, while a client asks every host once every 50 ms. The client must never
// fail (no refused or cut connection); the longest wait between two answers is logged as
// "RECIPE <name>: longest gap ...".

// buildRecipe copies testdata/recipes/<name> into a checkout, runs its build script there with
// /bin/sh -e (as the build worker does), and packs the artifact as a tar.gz.
func buildRecipe(t *testing.T, name, version string) (deploy.Release, string) {
	t.Helper()
	src := filepath.Join("testdata", "recipes", name)
	checkout := filepath.Join(t.TempDir(), "checkout")
	must(t, os.CopyFS(checkout, os.DirFS(src)))
	text, err := os.ReadFile(filepath.Join(src, ".ferry.yml"))
	must(t, err)
	p, err := store.ParsePipeline(text)
	must(t, err)
	for _, line := range p.Build.Script {
		cmd := exec.Command("/bin/sh", "-e", "-c", line)
		cmd.Dir = checkout
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("recipe %s: build step %q: %v\n%s", name, line, err, out)
		}
	}
	file := filepath.Join(t.TempDir(), version+".tar.gz")
	return packDir(t, filepath.Join(checkout, p.Build.Artifact), file, version), string(text)
}

// packDir packs dir's contents (modes kept, symlinks as symlinks) into file.
func packDir(t *testing.T, dir, file, version string) deploy.Release {
	t.Helper()
	f, err := os.Create(file)
	must(t, err)
	hash := sha256.New()
	gz := gzip.NewWriter(io.MultiWriter(f, hash))
	tw := tar.NewWriter(gz)
	must(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if d.Type()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			in, err := os.Open(path)
			if err != nil {
				return err
			}
			defer in.Close()
			_, err = io.Copy(tw, in)
			return err
		}
		return nil
	}))
	for _, c := range []io.Closer{tw, gz, f} {
		must(t, c.Close())
	}
	info, err := os.Stat(file)
	must(t, err)
	return deploy.Release{Version: version, Artifact: file, SHA256: hex.EncodeToString(hash.Sum(nil)), Size: info.Size()}
}

// keepVersion records rel as a kept version of the fixture's project, as a finished build does.
func (f *deployFixture) keepVersion(rel deploy.Release, pipeline string) {
	f.t.Helper()
	ctx := context.Background()
	sha := make([]byte, 20)
	rand.Read(sha)
	b, err := f.db.CreateBuild(ctx, store.NewBuild{ProjectID: f.project.ID, Ref: "main", Branch: "main", SHA: hex.EncodeToString(sha), TriggeredBy: "test"})
	must(f.t, err)
	claimed, err := f.db.ClaimBuild(ctx, "builder", time.Minute)
	must(f.t, err)
	if claimed == nil || claimed.ID != b.ID {
		f.t.Fatalf("claimed build %+v, want build %d", claimed, b.ID)
	}
	_, err = f.db.FinishBuild(ctx, b.ID, "builder", store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
		Name: rel.Version, SHA: b.SHA, Ref: "main", SHA256: rel.SHA256, Size: rel.Size, Path: rel.Artifact, Pipeline: pipeline}})
	must(f.t, err)
}

var (
	frontOnce sync.Once
	frontBin  string
	frontErr  error
)

// frontBinary builds testdata/front once per test binary, into a directory the hosts see.
func frontBinary(t *testing.T) string {
	t.Helper()
	frontOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-front-")
		if err != nil {
			frontErr = err
			return
		}
		frontBin = filepath.Join(dir, "front")
		if out, err := exec.Command("go", "build", "-o", frontBin, "./testdata/front").CombinedOutput(); err != nil {
			frontErr = fmt.Errorf("build the front: %v\n%s", err, out)
		}
	})
	must(t, frontErr)
	return frontBin
}

// runOnHost starts command on h in the background, detached, as a service the host runs besides
// what ferry deploys (a front, a web server).
func runOnHost(t *testing.T, c *sshtest.Cluster, h *sshtest.Host, command string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := deploy.Dial(ctx, targetOf(c, h), deploy.DialOptions{})
	must(t, err)
	defer conn.Close()
	must(t, conn.Run(ctx, "setsid nohup "+command+" >/dev/null 2>&1 </dev/null &", nil, nil))
}

var versionRE = regexp.MustCompile(`\bv\d+\b`)

// asker asks one host's service once every 50 ms (and, with slow, also a request that takes
// 700 ms every 200 ms, so some are in flight whenever the service is stopped), and keeps
// every failure and the longest time between two answers.
type asker struct {
	host     *sshtest.Host
	path     string
	slowPath string
	mu       sync.Mutex
	asked    int
	answers  map[string]int // the version that answered → how many
	failures []string
	last     time.Time
	gap      time.Duration
}

func (a *asker) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return a.host.DialInside(ctx, addr) }}}
}

func (a *asker) ask(c *http.Client, path string) {
	resp, err := c.Get("http://127.0.0.1:8080" + path)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked++
	if err != nil {
		a.failures = append(a.failures, fmt.Sprintf("%s %s: %v", now.Format("15:04:05.000"), path, err))
		return
	}
	if path == a.path {
		if !a.last.IsZero() && now.Sub(a.last) > a.gap {
			a.gap = now.Sub(a.last)
		}
		a.last = now
	}
	a.answers[versionRE.FindString(string(body))]++
}

// run asks until stop is closed.
func (a *asker) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	c := a.client()
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				a.ask(c, a.path)
			}
		}
	})
	if a.slowPath == "" {
		return
	}
	wg.Go(func() {
		var slow sync.WaitGroup
		defer slow.Wait()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				slow.Go(func() { a.ask(c, a.slowPath) })
			}
		}
	})
}

// recipe is one of docs/recipes.md's examples as the test runs it.
type recipe struct {
	name string
	// serve starts what serves the service on a host on 127.0.0.1:8080 (a front, a web server);
	// backendPort is the port the service listens on there.
	serve func(t *testing.T, f *deployFixture, h *sshtest.Host, backendPort string)
	path  string // what the client asks for
	slow  string // a slow request, "" for none
	// check says what host h must answer after version was deployed.
	check func(t *testing.T, h *sshtest.Host, version, greeting string)
}

func frontServe(t *testing.T, f *deployFixture, h *sshtest.Host, backendPort string) {
	runOnHost(t, f.cluster, h, frontBinary(t)+" 127.0.0.1:8080 "+backendPort)
}

func checkAnswer(t *testing.T, h *sshtest.Host, version, greeting string) {
	t.Helper()
	code, body, err := h.Get("http://127.0.0.1:8080/")
	if err != nil || code != 200 || body != version+" "+greeting {
		t.Errorf("%s answers %d %q (%v), want %q", h.Name, code, body, err, version+" "+greeting)
	}
}

func runRecipe(t *testing.T, db *store.DB, r recipe) {
	f := newDeployFixture(t, db, 2, workerOptions{})
	h1, h2 := f.cluster.Hosts()[0], f.cluster.Hosts()[1]
	f.api.must(200, "PUT", "/api/v1/projects/shop/variables", `{"PORT":{"value":"9001"},"API_URL":{"value":"https://api.example.com"}}`)
	f.api.must(200, "PUT", "/api/v1/hosts/host-2/variables", `{"PORT":{"value":"9002"}}`)
	for _, v := range []string{"v1", "v2"} {
		rel, pipeline := buildRecipe(t, r.name, v)
		f.keepVersion(rel, pipeline)
	}
	// The front (or web server) runs on the host before anything is deployed, as nginx would.
	r.serve(t, f, h1, "9001")
	r.serve(t, f, h2, "9002")
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	r.check(t, h1, "v1", "hello")
	r.check(t, h2, "v1", "hello")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	askers := []*asker{{host: h1, path: r.path, slowPath: r.slow, answers: map[string]int{}}, {host: h2, path: r.path, slowPath: r.slow, answers: map[string]int{}}}
	for _, a := range askers {
		a.run(stop, &wg)
	}
	time.Sleep(300 * time.Millisecond)
	// v2 with a greeting rendered for host-2 alone.
	f.api.must(200, "PUT", "/api/v1/hosts/host-2/variables", `{"PORT":{"value":"9002"},"GREETING":{"value":"hello from host-2"}}`)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentSuccess)
	r.check(t, h1, "v2", "hello")
	r.check(t, h2, "v2", "hello from host-2")
	time.Sleep(300 * time.Millisecond)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	r.check(t, h1, "v1", "hello")
	r.check(t, h2, "v1", "hello from host-2")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	for _, a := range askers {
		if len(a.failures) > 0 {
			t.Errorf("recipe %s: the client of %s failed %d of %d times: %s", r.name, a.host.Name, len(a.failures), a.asked, strings.Join(a.failures, "; "))
		}
		if a.answers["v1"] == 0 || a.answers["v2"] == 0 {
			t.Errorf("recipe %s: %s answered %v, want both v1 and v2", r.name, a.host.Name, a.answers)
		}
		t.Logf("RECIPE %s: %s: longest gap between two answers %v (asked every 50 ms; %d requests, %d failed; answers %v)",
			r.name, a.host.Name, a.gap.Round(time.Millisecond), a.asked, len(a.failures), a.answers)
	}
}

// TestRecipeJavaService: a jar built with javac and jar, started with java -jar, its port from a
// variable (9001, 9002 on host-2) in a rendered conf/app.properties; SIGTERM runs its shutdown
// hook, which finishes the requests in flight. Restart in place behind a front that holds
// clients while nothing listens.
func TestRecipeJavaService(t *testing.T) {
	for _, tool := range []string{"java", "javac", "jar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the Java recipe needs %s (Debian: default-jdk-headless): %v", tool, err)
		}
	}
	// The database plays no part here: SQLite only, to keep the test short.
	runRecipe(t, storetest.Open(t, store.SQLite), recipe{name: "java", serve: frontServe, path: "/", slow: "/?ms=700", check: checkAnswer})
}

// TestRecipeNodeService: node server.js with npm ci at build time (no registry needed), its
// port from a rendered config.json; SIGTERM closes the server once the requests in flight end.
func TestRecipeNodeService(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the Node.js recipe needs %s (Debian: nodejs, npm): %v", tool, err)
		}
	}
	runRecipe(t, storetest.Open(t, store.SQLite), recipe{name: "node", serve: frontServe, path: "/", slow: "/?ms=700", check: checkAnswer})
}

// TestRecipeStaticSite: a static site under current, served by a web server that runs all
// along (python3's http.server); switching current is atomic, so nothing restarts.
func TestRecipeStaticSite(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err == nil {
		python, err = filepath.EvalSymlinks(python)
	}
	if err != nil || strings.Contains(python, "/.pyenv/") {
		if python, err = exec.LookPath("/usr/bin/python3"); err != nil {
			t.Fatalf("the static site recipe serves with python3 (Debian: python3): %v", err)
		}
	}
	serve := func(t *testing.T, f *deployFixture, h *sshtest.Host, _ string) {
		runOnHost(t, f.cluster, h, python+" -m http.server 8080 --bind 127.0.0.1 --directory "+sshtest.DefaultDeployPath+"/current")
	}
	check := func(t *testing.T, h *sshtest.Host, version, greeting string) {
		t.Helper()
		var code int
		var body string
		storetest.WaitFor(t, 20*time.Second, h.Name+" serving the site", func() bool {
			code, body, err = h.Get("http://127.0.0.1:8080/config.js")
			return err == nil && code == 200
		})
		want := `window.SITE = {version: "` + version + `", api: "https://api.example.com", greeting: "` + greeting + `"};`
		if !strings.Contains(body, want) {
			t.Errorf("%s serves config.js %q, want %q", h.Name, body, want)
		}
	}
	runRecipe(t, storetest.Open(t, store.SQLite), recipe{name: "static", serve: serve, path: "/config.js", check: check})
}

// TestRecipesDocShowsTheTestedFiles keeps docs/recipes.md in step with the files the recipe
// tests deploy: each is shown there whole.
func TestRecipesDocShowsTheTestedFiles(t *testing.T) {
	doc, err := os.ReadFile("../docs/recipes.md")
	must(t, err)
	for _, name := range []string{"java/.ferry.yml", "java/deploy/app.properties.tmpl", "java/src/App.java",
		"node/.ferry.yml", "node/deploy/config.json.tmpl", "node/server.js", "static/.ferry.yml", "static/deploy/config.js.tmpl"} {
		data, err := os.ReadFile(filepath.Join("testdata", "recipes", name))
		must(t, err)
		var indented []string
		for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
			if line != "" {
				line = "    " + line
			}
			indented = append(indented, line)
		}
		if !strings.Contains(string(doc), strings.Join(indented, "\n")) {
			t.Errorf("docs/recipes.md does not show testdata/recipes/%s as it is", name)
		}
	}
}
