package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testBuild does what the worker does for one build: mirror, read .ferry.yml, check out, run,
// pack. It returns the artifact and the output.
func testBuild(tb testing.TB, g *Git, r Repo, sha, branch string) (*Artifact, string, error) {
	tb.Helper()
	ctx := context.Background()
	if _, err := g.Mirror(ctx, r); err != nil {
		return nil, "", err
	}
	p, err := g.Pipeline(ctx, r, sha)
	if err != nil {
		return nil, "", err
	}
	ws := Workspace{Root: filepath.Join(g.DataDir, "workspaces", r.Project)}
	if err := ws.Reset(); err != nil {
		return nil, "", err
	}
	if err := g.Checkout(ctx, r, sha, ws.Src()); err != nil {
		return nil, "", err
	}
	version := VersionName(time.Now(), branch, sha, "")
	s := &Script{
		Lines: p.Build.Script, Dir: ws.Src(), Home: ws.Home(), Tmp: ws.Tmp(), Env: p.Build.Env,
		Timeout: p.Build.Timeout.D(), Vars: Vars{Project: r.Project, Version: version, Commit: sha, Branch: branch},
	}
	var out strings.Builder
	if err := s.Run(ctx, func(_, line string) { out.WriteString(line + "\n") }); err != nil {
		return nil, out.String(), err
	}
	a, err := Pack(ws.Src(), p.Build.Artifact, ArtifactPath(g.DataDir, r.Project, version))
	return a, out.String(), err
}

func TestBuildExactCommitWhenBranchMovedOn(t *testing.T) {
	origin := newTestRepo(t)
	first := origin.commit("v1 [devops]", map[string]string{".ferry.yml": pipelineFile, "app.txt": "one"})
	origin.commit("v2", map[string]string{"app.txt": "two"})
	g := &Git{DataDir: t.TempDir()}

	a, out, err := testBuild(t, g, origin.repo("demo"), first, "main")
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	files := readArchive(t, a.Path)
	if files["app.txt"].content != "one" {
		t.Errorf("app.txt = %q; the build did not use the commit it was asked for", files["app.txt"].content)
	}
	if e := files["bin/start.sh"]; e.mode.Perm()&0o100 == 0 {
		t.Errorf("bin/start.sh lost its exec bit: %v", e.mode)
	}
	if !strings.Contains(out, "built ") {
		t.Errorf("output:\n%s", out)
	}
}

func TestBuildBranchNamesNeverRunAsCommands(t *testing.T) {
	origin := newTestRepo(t)
	sha := origin.commit("build", map[string]string{".ferry.yml": pipelineFile, "app.txt": "one"})
	g := &Git{DataDir: t.TempDir()}
	home := t.TempDir()
	for _, branch := range []string{"x;touch " + home + "/pwned", "$(touch " + home + "/pwned)", "x;rm -rf ~", "$(id)"} {
		a, out, err := testBuild(t, g, origin.repo("demo"), sha, branch)
		if err != nil {
			t.Fatalf("branch %q: %v\n%s", branch, err, out)
		}
		if _, err := os.Stat(filepath.Join(home, "pwned")); err == nil {
			t.Fatalf("branch name %q was executed", branch)
		}
		if strings.ContainsAny(filepath.Base(a.Path), "$;() ~") {
			t.Errorf("artifact name %q holds shell characters", a.Path)
		}
	}
}

func TestBuildBrokenPipelineNamesLine(t *testing.T) {
	origin := newTestRepo(t)
	sha := origin.commit("broken", map[string]string{".ferry.yml": "build:\n  script: [ make ]\n  artifact: out\n  timeout: soon\n"})
	_, _, err := testBuild(t, &Git{DataDir: t.TempDir()}, origin.repo("demo"), sha, "main")
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("build of a broken .ferry.yml: %v; want line 4 and the reason", err)
	}
}

// BenchmarkSecondBuild measures ferry's overhead for a second build of a cached repository
// (fetch, checkout, run, pack) against running the same script by hand in a checkout.
func BenchmarkSecondBuild(b *testing.B) {
	origin := newTestRepo(b)
	files := map[string]string{".ferry.yml": pipelineFile, "app.txt": "one"}
	for i := range 200 { // a small project: 200 source files
		files[filepath.Join("src", "pkg", "file"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+".txt")] = strings.Repeat("code\n", 200)
	}
	sha := origin.commit("build", files)
	g := &Git{DataDir: b.TempDir()}
	if _, _, err := testBuild(b, g, origin.repo("demo"), sha, "main"); err != nil {
		b.Fatal(err)
	}
	byHand := strings.Join([]string{"set -e", "rm -rf dist", "mkdir -p dist/bin", "cp app.txt dist/",
		`printf '#!/bin/sh\necho started\n' > dist/bin/start.sh`, "chmod +x dist/bin/start.sh", `echo "built $FERRY_VERSION"`}, "\n")
	src := filepath.Join(g.DataDir, "workspaces", "demo", "src")

	b.Run("ferry", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := testBuild(b, g, origin.repo("demo"), sha, "main"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("by-hand", func(b *testing.B) {
		for b.Loop() {
			cmd := exec.Command("/bin/sh", "-c", byHand)
			cmd.Dir = src
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}
