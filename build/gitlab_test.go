package build

import (
	"context"
	"strings"
	"testing"
	"time"

	"ferry/build/gitlabtest"
)

const (
	testToken = "glpat-test-token"
	testSHA   = "0123456789abcdef0123456789abcdef01234567"
)

func newFakeGitLab(t *testing.T) (*gitlabtest.Server, *GitLab) {
	t.Helper()
	fake := gitlabtest.New(t, testToken)
	fake.AddProject("group/sub/app")
	gl, err := NewGitLab(GitLabConfig{BaseURL: fake.URL, Token: testToken, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return fake, gl
}

func TestSetCommitStatus(t *testing.T) {
	fake, gl := newFakeGitLab(t)
	ctx := context.Background()
	if err := gl.SetCommitStatus(ctx, "group/sub/app", testSHA, StateRunning, "https://ferry.example.com/builds/7", "building"); err != nil {
		t.Fatal(err)
	}
	// Setting the same state twice is refused by GitLab and must not be an error here.
	if err := gl.SetCommitStatus(ctx, "group/sub/app", testSHA, StateRunning, "", ""); err != nil {
		t.Errorf("repeating a state: %v", err)
	}
	if err := gl.SetCommitStatus(ctx, "group/sub/app", testSHA, StateSuccess, "https://ferry.example.com/builds/7", "version v1"); err != nil {
		t.Fatal(err)
	}
	got := fake.Statuses("group/sub/app")
	want := []gitlabtest.Status{
		{SHA: testSHA, State: "running", Name: "ferry", TargetURL: "https://ferry.example.com/builds/7", Description: "building"},
		{SHA: testSHA, State: "success", Name: "ferry", TargetURL: "https://ferry.example.com/builds/7", Description: "version v1"},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("statuses = %+v, want %+v", got, want)
	}
	if p := fake.Calls()[0].Path; p != "/api/v4/projects/group%2Fsub%2Fapp/statuses/"+testSHA {
		t.Errorf("path = %s; want the project path URL-encoded", p)
	}
	if err := gl.SetCommitStatus(ctx, "group/sub/app", testSHA, "timeout", "", ""); err == nil {
		t.Error("a state GitLab does not know was sent")
	}
}

func TestGitLabRetriesServerErrors(t *testing.T) {
	fake, gl := newFakeGitLab(t)
	fake.FailNext(2)
	if err := gl.SetCommitStatus(context.Background(), "group/sub/app", testSHA, StatePending, "", ""); err != nil {
		t.Fatalf("after two 500s: %v", err)
	}
	if n := len(fake.Calls()); n != 3 {
		t.Errorf("%d calls, want 3 (two failures, one success)", n)
	}
	fake.FailNext(100)
	err := gl.SetCommitStatus(context.Background(), "group/sub/app", testSHA, StateRunning, "", "")
	if err == nil || !strings.Contains(err.Error(), "GitLab answered 500 after 4 tries") {
		t.Errorf("with GitLab down: %v", err)
	}
	if n := len(fake.Calls()); n != 7 {
		t.Errorf("%d calls, want 3 + 4 tries", n)
	}
}

func TestGitLabErrorsInWords(t *testing.T) {
	fake := gitlabtest.New(t, testToken)
	fake.AddProject("group/app")
	wrong, _ := NewGitLab(GitLabConfig{BaseURL: fake.URL, Token: "wrong", Backoff: time.Millisecond})
	err := wrong.SetCommitStatus(context.Background(), "group/app", testSHA, StateRunning, "", "")
	if err == nil || !strings.Contains(err.Error(), "GitLab refused the API token (401 Unauthorized)") {
		t.Errorf("wrong token: %v", err)
	}
	if c := fake.Calls(); len(c) != 1 || c[0].Status != 401 {
		t.Errorf("calls = %+v; want one 401 and no retry", c)
	}
	right, _ := NewGitLab(GitLabConfig{BaseURL: fake.URL, Token: testToken, Backoff: time.Millisecond})
	err = right.CreateTag(context.Background(), "group/missing", "v1", testSHA, "")
	if err == nil || !strings.Contains(err.Error(), "create tag v1 on commit 01234567 in group/missing: GitLab says not found") {
		t.Errorf("missing project: %v", err)
	}
	down, _ := NewGitLab(GitLabConfig{BaseURL: "http://127.0.0.1:1", Token: testToken, Tries: 2, Backoff: time.Millisecond})
	err = down.SetCommitStatus(context.Background(), "group/app", testSHA, StateRunning, "", "")
	if err == nil || !strings.Contains(err.Error(), "GitLab at http://127.0.0.1:1 unreachable") {
		t.Errorf("GitLab down: %v", err)
	}
	if _, err := NewGitLab(GitLabConfig{BaseURL: "gitlab.example.com"}); err == nil {
		t.Error("a base URL without scheme was accepted")
	}
}

func TestCreateTag(t *testing.T) {
	fake, gl := newFakeGitLab(t)
	ctx := context.Background()
	if err := gl.CreateTag(ctx, "group/sub/app", "ferry-20240101-main", testSHA, "built by ferry"); err != nil {
		t.Fatal(err)
	}
	if err := gl.CreateTag(ctx, "group/sub/app", "ferry-20240101-main", testSHA, "built by ferry"); err != nil {
		t.Errorf("the same tag on the same commit again: %v", err)
	}
	other := strings.Repeat("f", 40)
	err := gl.CreateTag(ctx, "group/sub/app", "ferry-20240101-main", other, "")
	if err == nil || !strings.Contains(err.Error(), "the tag already exists on commit 01234567, not on ffffffff") {
		t.Errorf("the tag on another commit: %v", err)
	}
	tags := fake.Tags("group/sub/app")
	if len(tags) != 1 || tags[0] != (gitlabtest.Tag{Name: "ferry-20240101-main", SHA: testSHA, Message: "built by ferry"}) {
		t.Errorf("tags = %+v", tags)
	}
}

func TestRegisterHook(t *testing.T) {
	fake, gl := newFakeGitLab(t)
	ctx := context.Background()
	fake.AddHook("group/sub/app", gitlabtest.Hook{URL: "https://ci.example.com/hook", PushEvents: true})
	id, err := gl.RegisterHook(ctx, "group/sub/app", "https://ferry.example.com/hooks/gitlab", "s1", "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := gl.RegisterHook(ctx, "group/sub/app", "https://ferry.example.com/hooks/gitlab", "s2", "whsec_"+strings.Repeat("QUJD", 8))
	if err != nil || again != id {
		t.Fatalf("second RegisterHook = %d, %v; want the same hook %d", again, err, id)
	}
	hooks := fake.Hooks("group/sub/app")
	if len(hooks) != 2 {
		t.Fatalf("hooks = %+v; want the foreign one and one of ferry", hooks)
	}
	want := gitlabtest.Hook{ID: id, URL: "https://ferry.example.com/hooks/gitlab", Token: "s2", PushEvents: true, TagPushEvents: true, EnableSSLVerification: true,
		SigningToken: "whsec_" + strings.Repeat("QUJD", 8)}
	if hooks[1] != want {
		t.Errorf("ferry's hook = %+v, want %+v", hooks[1], want)
	}
}
