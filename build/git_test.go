package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ferry/store"
)

func TestMirrorClonesOnceThenFetches(t *testing.T) {
	origin := newTestRepo(t)
	first := origin.commit("first", map[string]string{".ferry.yml": pipelineFile, "app.txt": "v1"})
	g := &Git{DataDir: t.TempDir()}
	ctx := context.Background()

	cloned, err := g.Mirror(ctx, origin.repo("demo"))
	if err != nil || !cloned {
		t.Fatalf("first Mirror = %v, %v; want a clone", cloned, err)
	}
	// A file only a re-clone would remove proves the second call fetched into the same mirror.
	marker := filepath.Join(g.MirrorDir("demo"), "ferry-test-marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	second := origin.commit("second", map[string]string{"app.txt": "v2"})
	cloned, err = g.Mirror(ctx, origin.repo("demo"))
	if err != nil || cloned {
		t.Fatalf("second Mirror = %v, %v; want a fetch", cloned, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the mirror was re-created on the second call: %v", err)
	}
	for _, sha := range []string{first, second} {
		if _, err := g.Commit(ctx, origin.repo("demo"), sha); err != nil {
			t.Errorf("commit %s missing after fetch: %v", sha, err)
		}
	}
}

func TestMirrorRecreatesHalfMadeMirror(t *testing.T) {
	origin := newTestRepo(t)
	sha := origin.commit("first", map[string]string{"app.txt": "v1"})
	g := &Git{DataDir: t.TempDir()}
	// What a crash in the middle of the very first clone can leave: a directory, no repository.
	half := g.MirrorDir("demo")
	if err := os.MkdirAll(filepath.Join(half, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(half+".cloning", 0o755); err != nil {
		t.Fatal(err)
	}
	cloned, err := g.Mirror(context.Background(), origin.repo("demo"))
	if err != nil || !cloned {
		t.Fatalf("Mirror over a half-made mirror = %v, %v; want a fresh clone", cloned, err)
	}
	if _, err := g.Commit(context.Background(), origin.repo("demo"), sha); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(half + ".cloning"); !os.IsNotExist(err) {
		t.Errorf("the leftover %s.cloning is still there", half)
	}
}

func TestMirrorSurvivesStaleLock(t *testing.T) {
	origin := newTestRepo(t)
	origin.commit("first", map[string]string{"app.txt": "v1"})
	g := &Git{DataDir: t.TempDir()}
	ctx := context.Background()
	if _, err := g.Mirror(ctx, origin.repo("demo")); err != nil {
		t.Fatal(err)
	}
	// A git killed during fetch leaves lock files behind.
	if err := os.WriteFile(filepath.Join(g.MirrorDir("demo"), "packed-refs.lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sha := origin.commit("second", map[string]string{"app.txt": "v2"})
	origin.git("pack-refs", "--all")
	if _, err := g.Mirror(ctx, origin.repo("demo")); err != nil {
		t.Fatalf("fetch after a crash: %v", err)
	}
	if _, err := g.Commit(ctx, origin.repo("demo"), sha); err != nil {
		t.Fatal(err)
	}
}

func TestMirrorUnreachableRemote(t *testing.T) {
	g := &Git{DataDir: t.TempDir()}
	url := filepath.Join(t.TempDir(), "no-such-repo.git")
	_, err := g.Mirror(context.Background(), Repo{Project: "demo", URL: url})
	if err == nil || !strings.HasPrefix(err.Error(), "git remote "+url+" unreachable: ") {
		t.Fatalf("Mirror of a missing remote: %v; want 'git remote %s unreachable: …'", err, url)
	}
	if _, statErr := os.Stat(g.MirrorDir("demo")); !os.IsNotExist(statErr) {
		t.Errorf("a failed clone left %s behind", g.MirrorDir("demo"))
	}
}

func TestUnreachableHidesToken(t *testing.T) {
	g := &Git{DataDir: t.TempDir()}
	// Port 1 on localhost refuses at once.
	_, err := g.Mirror(context.Background(), Repo{Project: "demo", URL: "http://oauth2:s3cr3t@127.0.0.1:1/g/app.git"})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("error %v: want 'unreachable' without the token", err)
	}
}

func TestCommitNotFound(t *testing.T) {
	origin := newTestRepo(t)
	origin.commit("first", map[string]string{"app.txt": "v1"})
	g := &Git{DataDir: t.TempDir()}
	if _, err := g.Mirror(context.Background(), origin.repo("demo")); err != nil {
		t.Fatal(err)
	}
	missing := strings.Repeat("ab", 20)
	_, err := g.Commit(context.Background(), origin.repo("demo"), missing)
	want := "commit abababab not found in " + origin.Dir + " (was it force-pushed away?)"
	if err == nil || err.Error() != want || !store.IsNotFound(err) {
		t.Fatalf("Commit(missing) = %v; want %q", err, want)
	}
	if _, err := g.Commit(context.Background(), origin.repo("demo"), "HEAD"); store.ErrorCode(err) != store.EINVALID {
		t.Errorf("Commit(HEAD) = %v; want EINVALID (only full ids are taken)", err)
	}
}

func TestCommitInfo(t *testing.T) {
	origin := newTestRepo(t)
	sha := origin.commit("Add login page\n\nLonger text [devops]", map[string]string{"app.txt": "v1"})
	g := &Git{DataDir: t.TempDir()}
	if _, err := g.Mirror(context.Background(), origin.repo("demo")); err != nil {
		t.Fatal(err)
	}
	c, err := g.Commit(context.Background(), origin.repo("demo"), sha)
	if err != nil {
		t.Fatal(err)
	}
	if c.AuthorName != "Ada Dev" || c.AuthorEmail != "ada@example.com" || c.Title != "Add login page" || !strings.Contains(c.Message, "[devops]") {
		t.Errorf("Commit = %+v", c)
	}
}

func TestPipelineErrors(t *testing.T) {
	origin := newTestRepo(t)
	none := origin.commit("no pipeline", map[string]string{"app.txt": "v1"})
	broken := origin.commit("broken pipeline", map[string]string{".ferry.yml": "build:\n  script: [ make ]\n  artifact: out\n  colour: blue\n"})
	good := origin.commit("good pipeline", map[string]string{".ferry.yml": pipelineFile})
	g := &Git{DataDir: t.TempDir()}
	ctx := context.Background()
	if _, err := g.Mirror(ctx, origin.repo("demo")); err != nil {
		t.Fatal(err)
	}
	_, err := g.Pipeline(ctx, origin.repo("demo"), none)
	if err == nil || err.Error() != "no .ferry.yml at commit "+store.ShortSHA(none) {
		t.Errorf("Pipeline without a file: %v", err)
	}
	_, err = g.Pipeline(ctx, origin.repo("demo"), broken)
	var pe *store.PipelineError
	if !errors.As(err, &pe) || pe.Line != 4 || !strings.Contains(err.Error(), `line 4: unknown key "colour"`) {
		t.Errorf("Pipeline of a broken file: %v; want line 4 and the unknown key", err)
	}
	p, err := g.Pipeline(ctx, origin.repo("demo"), good)
	if err != nil || p.Build.Artifact != "dist" {
		t.Errorf("Pipeline of a good file = %+v, %v", p, err)
	}
}

func TestCheckoutExactCommitAfterBranchMoved(t *testing.T) {
	origin := newTestRepo(t)
	old := origin.commit("old", map[string]string{"app.txt": "old", "gone.txt": "x"})
	origin.git("rm", "--quiet", "gone.txt")
	origin.commit("new", map[string]string{"app.txt": "new"})
	g := &Git{DataDir: t.TempDir()}
	ctx := context.Background()
	if _, err := g.Mirror(ctx, origin.repo("demo")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "src")
	// Something of an earlier build that must not survive.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "stale.txt"), []byte("earlier build"), 0o644)

	if err := g.Checkout(ctx, origin.repo("demo"), old, dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "app.txt")); string(got) != "old" {
		t.Errorf("app.txt = %q, want the old commit's content", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "gone.txt")); err != nil {
		t.Errorf("gone.txt of the old commit is missing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale.txt")); !os.IsNotExist(err) {
		t.Errorf("stale.txt of an earlier build survived the checkout")
	}
	head := newTestRepo(t)
	head.Dir = dir
	if got := head.git("rev-parse", "HEAD"); got != old {
		t.Errorf("HEAD in the checkout = %s, want %s", got, old)
	}
}

// TestMirrorTwoBuildsAtOnce has two builds of one project on one machine (two Git values, as
// two processes sharing a data dir would have, or a run that lost its lease while its git was
// still cloning and the run that took over) make the same new mirror at the same moment. The
// CI saw the second wipe the first's half-made clone ("could not lock config file"); with the
// mirror's lock one clones and the other fetches into the finished mirror.
func TestMirrorTwoBuildsAtOnce(t *testing.T) {
	origin := newTestRepo(t)
	sha := origin.commit("first", map[string]string{".ferry.yml": pipelineFile, "app.txt": "v1"})
	dataDir := t.TempDir()
	ctx := context.Background()
	const builds = 4
	errs := make(chan error, builds)
	clones := make(chan bool, builds)
	for range builds {
		go func() {
			g := &Git{DataDir: dataDir}
			cloned, err := g.Mirror(ctx, origin.repo("demo"))
			clones <- cloned
			errs <- err
		}()
	}
	cloned := 0
	for range builds {
		if err := <-errs; err != nil {
			t.Errorf("Mirror beside another build: %v", err)
		}
		if <-clones {
			cloned++
		}
	}
	if cloned != 1 {
		t.Errorf("%d of %d builds cloned; want exactly one clone and the others fetching", cloned, builds)
	}
	g := &Git{DataDir: dataDir}
	if _, err := g.Commit(ctx, origin.repo("demo"), sha); err != nil {
		t.Errorf("the commit is missing from the mirror: %v", err)
	}
}
