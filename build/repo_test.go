package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testRepo is a real git repository made by a test, standing in for the GitLab project.
type testRepo struct {
	tb  testing.TB
	Dir string
}

func newTestRepo(tb testing.TB) *testRepo {
	tb.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		tb.Fatalf("these tests need the git binary on PATH: %v", err)
	}
	r := &testRepo{tb: tb, Dir: filepath.Join(tb.TempDir(), "origin")}
	r.git("init", "--quiet", "--initial-branch=main", r.Dir)
	return r
}

func (r *testRepo) git(args ...string) string {
	r.tb.Helper()
	cmd := exec.Command("git", args...)
	if len(args) > 0 && args[0] != "init" {
		cmd.Dir = r.Dir
	}
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Ada Dev", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada Dev", "GIT_COMMITTER_EMAIL=ada@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (name → content; a name ending in "*" is made executable) and commits
// them on the current branch, returning the commit id.
func (r *testRepo) commit(msg string, files map[string]string) string {
	r.tb.Helper()
	for name, content := range files {
		mode := os.FileMode(0o644)
		if n, ok := strings.CutSuffix(name, "*"); ok {
			name, mode = n, 0o755
		}
		p := filepath.Join(r.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			r.tb.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "--quiet", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func (r *testRepo) repo(project string) Repo {
	return Repo{Project: project, URL: r.Dir}
}

// pipelineFile is a .ferry.yml whose script builds a small directory artifact with sh.
const pipelineFile = `build:
  script:
    - mkdir -p dist/bin
    - cp app.txt dist/
    - printf '#!/bin/sh\necho started\n' > dist/bin/start.sh
    - chmod +x dist/bin/start.sh
    - echo "built $FERRY_VERSION"
  artifact: dist
  timeout: 1m
deploy:
  path: /opt/apps/demo
`
