// Package build turns a pushed commit into a version: it keeps a git mirror per project, checks
// out the exact commit, runs the project's build script with live output, packs the artifact,
// and talks to GitLab (commit status, tags, webhooks). The worker that takes builds from the
// store's queue composes these parts.
package build

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"ferry/store"
)

// Git runs the git binary on ferry's bare mirrors, one per project, under <DataDir>/repos.
// Calls for the same project must not overlap (the caller serializes them); calls for
// different projects may run at once.
type Git struct {
	// DataDir is ferry's data directory; mirrors live in DataDir/repos/<project>.git.
	DataDir string
}

// Repo names a project's repository: ferry's project name (used for the mirror's directory)
// and the URL it is cloned from.
type Repo struct {
	Project string
	URL     string
	// Credentials is the user info ("oauth2:TOKEN") for an http(s) URL, if it needs any. Git
	// gets it in its environment, never on its command line or in the mirror's config.
	Credentials string
}

// RepoOf returns the repository of project p. Its credentials are the project's clone
// credentials, or else, for an http(s) clone URL on the GitLab server at gitlabURL, the
// project's own GitLab token (as GitLab's user "oauth2"). ferry's global GitLab token is never
// used: whoever edits a project's clone URL could otherwise read any repository it reaches.
func RepoOf(p *store.Project, gitlabURL string) Repo {
	r := Repo{Project: p.Name, URL: p.CloneURL, Credentials: p.CloneCredentials}
	if r.Credentials == "" && p.GitLabToken != "" && gitlabURL != "" && sameHost(p.CloneURL, gitlabURL) {
		r.Credentials = url.UserPassword("oauth2", p.GitLabToken).String()
	}
	return r
}

// sameHost reports whether an http(s) clone URL is on the server of base.
func sameHost(clone, base string) bool {
	c, errC := url.Parse(clone)
	b, errB := url.Parse(base)
	return errC == nil && errB == nil && (c.Scheme == "https" || c.Scheme == "http") &&
		c.Host != "" && strings.EqualFold(c.Host, b.Host)
}

// authEnv returns the environment that hands r's credentials to git: an Authorization header
// through GIT_CONFIG_COUNT/KEY/VALUE, which no other user can read (unlike a command line)
// and which git writes nowhere.
func (r Repo) authEnv() []string {
	if r.Credentials == "" {
		return nil
	}
	user, password := store.CloneUser(r.Credentials)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Basic " + basic}
}

// redact removes r's credentials from text git printed, in every form git might print them.
func (r Repo) redact(text string) string {
	if r.Credentials == "" {
		return text
	}
	user, password := store.CloneUser(r.Credentials)
	secrets := []string{r.Credentials, base64.StdEncoding.EncodeToString([]byte(user + ":" + password)), password}
	if len(user) >= 8 { // a token given as the user name, as GitHub takes it
		secrets = append(secrets, user)
	}
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "xxxxx")
		}
	}
	return text
}

// Commit is what git says about one commit.
type Commit struct {
	SHA         string
	AuthorName  string
	AuthorEmail string
	// Title is the first line of the message.
	Title   string
	Message string
}

// MirrorDir returns the directory of a project's bare mirror.
func (g *Git) MirrorDir(project string) string {
	return filepath.Join(g.DataDir, "repos", project+".git")
}

// Mirror brings the project's mirror up to date: a `git clone --mirror` the first time,
// `git fetch --prune` afterwards. A mirror left half-made by a crash is removed and cloned
// again; a good one is never re-cloned. cloned reports whether a clone was made. An
// unreachable remote fails with "git remote <url> unreachable: <git's reason>".
func (g *Git) Mirror(ctx context.Context, r Repo) (cloned bool, err error) {
	if r, err = r.validate(); err != nil {
		return false, err
	}
	dir := g.MirrorDir(r.Project)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return false, fmt.Errorf("create mirror directory: %w", err)
	}
	unlock, err := lockMirror(ctx, dir)
	if err != nil {
		return false, err
	}
	defer unlock()
	if g.isMirror(ctx, dir) {
		return false, g.fetch(ctx, r, dir)
	}
	return true, g.clone(ctx, r, dir)
}

// validate checks r and returns it with any credentials written into its URL moved to
// Credentials, so that they reach neither git's command line nor the mirror's config.
func (r Repo) validate() (Repo, error) {
	if err := store.ValidateName("project", r.Project); err != nil {
		return r, err
	}
	if r.URL == "" || strings.HasPrefix(r.URL, "-") || strings.ContainsAny(r.URL, "\x00\r\n") {
		return r, store.Errorf(store.EINVALID, "clone URL %q is not a git URL", redactURL(r.URL))
	}
	clean, creds := store.SplitCloneURL(r.URL)
	if r.URL = clean; r.Credentials == "" {
		r.Credentials = creds
	}
	if strings.ContainsAny(r.Credentials, "\x00\r\n") {
		return r, store.Errorf(store.EINVALID, "the clone credentials of %s are not one line", r.Project)
	}
	return r, nil
}

// isMirror reports whether dir holds a complete bare repository. Clones are made under a
// temporary name and renamed into place, so anything else found at dir is the leftover of a
// crash or of someone's hand.
func (g *Git) isMirror(ctx context.Context, dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
		return false
	}
	out, err := runGit(ctx, dir, "rev-parse", "--is-bare-repository")
	return err == nil && strings.TrimSpace(string(out)) == "true"
}

func (g *Git) clone(ctx context.Context, r Repo, dir string) error {
	tmp := dir + ".cloning"
	for _, d := range []string{dir, tmp} {
		if err := removeTree(d); err != nil {
			return fmt.Errorf("remove broken mirror %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("create mirror directory: %w", err)
	}
	if _, err := runGitEnv(ctx, "", r.authEnv(), "clone", "--mirror", "--quiet", "--", r.URL, tmp); err != nil {
		removeTree(tmp)
		return unreachable(r, err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil { // git makes it 0755; it is ferry's alone
		return fmt.Errorf("make mirror private: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move new mirror of %s into place: %w", redactURL(r.URL), err)
	}
	return nil
}

func (g *Git) fetch(ctx context.Context, r Repo, dir string) error {
	removeStaleLocks(dir)
	// The project's clone URL may have been edited since the mirror was made (and a mirror
	// made before ferry kept credentials apart has them in its config: this drops them).
	if _, err := runGit(ctx, dir, "config", "remote.origin.url", r.URL); err != nil {
		return fmt.Errorf("set the mirror's remote URL: %w", err)
	}
	if _, err := runGitEnv(ctx, dir, r.authEnv(), "fetch", "--prune", "--quiet", "origin"); err != nil {
		return unreachable(r, err)
	}
	return nil
}

// removeStaleLocks deletes lock files a git killed mid-fetch left behind; they would make
// every later fetch fail. Safe because Mirror holds the mirror's lock (lockMirror).
func removeStaleLocks(dir string) {
	for _, pattern := range []string{"*.lock", "refs/*.lock", "refs/*/*.lock", "refs/*/*/*.lock"} {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, m := range matches {
			os.Remove(m)
		}
	}
}

// unreachable says why git could not talk to r's remote, without r's credentials. A remote
// that refused the credentials, or asked for some when there were none, is told apart.
func unreachable(r Repo, err error) error {
	if ctxErr := contextError(err); ctxErr != nil {
		return ctxErr
	}
	text := r.redact(err.Error())
	if authRefused(text) {
		if r.Credentials != "" {
			return store.Errorf(store.EINVALID, "git remote %s refused the clone credentials: check the user name and token in the project's clone_credentials, and that the token may read the repository", redactURL(r.URL))
		}
		return store.Errorf(store.EINVALID, "git remote %s wants credentials: set the project's clone_credentials to user:token", redactURL(r.URL))
	}
	return fmt.Errorf("git remote %s unreachable: %s", redactURL(r.URL), text)
}

// authRefused reports whether git's message says the server wanted other credentials.
func authRefused(text string) bool {
	for _, s := range []string{"terminal prompts disabled", "Authentication failed", "returned error: 401", "returned error: 403"} {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// contextError returns the context's error when err came from a git killed by it.
func contextError(err error) error {
	var ge *gitError
	if errors.As(err, &ge) && ge.ctxErr != nil {
		return ge.ctxErr
	}
	return nil
}

// Commit returns the author and message of a commit in the project's mirror. A commit the
// mirror does not hold fails with "commit abc1234 not found in <url> (was it force-pushed
// away?)", an ENOTFOUND *store.Error.
func (g *Git) Commit(ctx context.Context, r Repo, sha string) (*Commit, error) {
	if err := store.CheckCommitID(sha); err != nil {
		return nil, err
	}
	dir := g.MirrorDir(r.Project)
	if _, err := runGit(ctx, dir, "cat-file", "-e", sha+"^{commit}"); err != nil {
		if ctxErr := contextError(err); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, store.Errorf(store.ENOTFOUND, "commit %s not found in %s (was it force-pushed away?)", store.ShortSHA(sha), redactURL(r.URL))
	}
	out, err := runGit(ctx, dir, "show", "-s", "--format=%an%x00%ae%x00%B", sha)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", store.ShortSHA(sha), err)
	}
	parts := strings.SplitN(string(out), "\x00", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("read commit %s: unexpected output of git show", store.ShortSHA(sha))
	}
	msg := strings.TrimRight(parts[2], "\n")
	title, _, _ := strings.Cut(msg, "\n")
	return &Commit{SHA: sha, AuthorName: parts[0], AuthorEmail: parts[1], Title: title, Message: msg}, nil
}

// ReadFile returns the content of the file at name (a path from the repository's top) at a
// commit. A missing file fails with an ENOTFOUND *store.Error "no <name> at commit abc1234".
func (g *Git) ReadFile(ctx context.Context, r Repo, sha, name string) ([]byte, error) {
	if _, err := g.Commit(ctx, r, sha); err != nil {
		return nil, err
	}
	if err := store.CheckRelativePath(name); err != nil {
		return nil, store.Errorf(store.EINVALID, "read file: %v", err)
	}
	dir := g.MirrorDir(r.Project)
	spec := sha + ":" + filepath.ToSlash(filepath.Clean(name))
	if _, err := runGit(ctx, dir, "cat-file", "-e", spec); err != nil {
		if ctxErr := contextError(err); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, store.Errorf(store.ENOTFOUND, "no %s at commit %s", name, store.ShortSHA(sha))
	}
	out, err := runGit(ctx, dir, "cat-file", "blob", spec)
	if err != nil {
		return nil, fmt.Errorf("read %s at commit %s: %w", name, store.ShortSHA(sha), err)
	}
	return out, nil
}

// Pipeline reads and parses the .ferry.yml of a commit. A broken file fails with an error
// that wraps the *store.PipelineError naming the line and the reason.
func (g *Git) Pipeline(ctx context.Context, r Repo, sha string) (*store.Pipeline, error) {
	data, err := g.ReadFile(ctx, r, sha, store.PipelineFile)
	if err != nil {
		return nil, err
	}
	p, err := store.ParsePipeline(data)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", store.ShortSHA(sha), err)
	}
	return p, nil
}

// Checkout puts the files of exactly one commit into dir, which is removed first so nothing
// of an earlier build is left. dir is a git repository borrowing the mirror's objects (so a
// build script may run git describe or git log), with HEAD detached at sha.
func (g *Git) Checkout(ctx context.Context, r Repo, sha, dir string) error {
	if _, err := g.Commit(ctx, r, sha); err != nil {
		return err
	}
	if err := removeTree(dir); err != nil {
		return fmt.Errorf("clean workspace %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("create workspace: %w", err)
	}
	// Faster than git clone --shared, which does the same and more we do not need.
	if _, err := runGit(ctx, "", "init", "--quiet", "--template=", "--", dir); err != nil {
		return fmt.Errorf("check out commit %s: %w", store.ShortSHA(sha), err)
	}
	objects, err := filepath.Abs(filepath.Join(g.MirrorDir(r.Project), "objects"))
	if err != nil {
		return fmt.Errorf("check out commit %s: %w", store.ShortSHA(sha), err)
	}
	alternates := filepath.Join(dir, ".git", "objects", "info", "alternates")
	if err := os.MkdirAll(filepath.Dir(alternates), 0o755); err != nil {
		return fmt.Errorf("check out commit %s: %w", store.ShortSHA(sha), err)
	}
	if err := os.WriteFile(alternates, []byte(objects+"\n"), 0o644); err != nil {
		return fmt.Errorf("check out commit %s: %w", store.ShortSHA(sha), err)
	}
	// sha is checked to be hex, so it cannot be taken for an option.
	if _, err := runGit(ctx, "", "-C", dir, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha); err != nil {
		return fmt.Errorf("check out commit %s: %w", store.ShortSHA(sha), err)
	}
	return nil
}

// gitError is a failed git run, with what git printed on stderr.
type gitError struct {
	args   []string
	stderr string
	err    error
	ctxErr error
}

func (e *gitError) Error() string {
	if e.ctxErr != nil {
		return fmt.Sprintf("git %s: %v", e.args[0], e.ctxErr)
	}
	if e.stderr != "" {
		return e.stderr
	}
	return fmt.Sprintf("git %s: %v", e.args[0], e.err)
}

func (e *gitError) Unwrap() error { return e.err }

// runGit runs git with args (as argv, never through a shell) on the repository at gitDir (or
// none), without user or system configuration and without ever prompting.
func runGit(ctx context.Context, gitDir string, args ...string) ([]byte, error) {
	return runGitEnv(ctx, gitDir, nil, args...)
}

// runGitEnv is runGit with extra environment variables, such as Repo.authEnv's.
func runGitEnv(ctx context.Context, gitDir string, env []string, args ...string) ([]byte, error) {
	if gitDir != "" {
		args = append([]string{"--git-dir=" + gitDir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(gitEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		ge := &gitError{args: args, stderr: lastLines(stderr.String(), 3), err: err, ctxErr: ctx.Err()}
		if gitDir != "" {
			ge.args = args[1:]
		}
		return nil, ge
	}
	return stdout.Bytes(), nil
}

func gitEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "GIT_") && name != "GIT_SSH_COMMAND" && name != "GIT_SSH" {
			continue
		}
		if name == "LC_ALL" || name == "LANGUAGE" || name == "SSH_ASKPASS" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C")
	if os.Getenv("GIT_SSH_COMMAND") == "" && os.Getenv("GIT_SSH") == "" {
		env = append(env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes")
	}
	return env
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(strings.TrimPrefix(l, "fatal: "), "error: ")
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// redactURL hides the credentials in a clone URL such as https://oauth2:TOKEN@host/x.git.
func redactURL(raw string) string { return store.ShownCloneURL(raw) }

// removeTree removes dir and everything below it, also when a build left read-only
// directories behind (as Go's module cache does).
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

var refNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._/+-]*$`)

// ResolveRef asks the project's remote (git ls-remote, not the mirror, so it never races a
// build's fetch) which commit a branch or tag names now. A branch wins over a tag of the same
// name. It fails with EINVALID for a name git would not accept and ENOTFOUND when the remote
// has neither.
func (g *Git) ResolveRef(ctx context.Context, r Repo, ref string) (sha string, isTag bool, err error) {
	if r, err = r.validate(); err != nil {
		return "", false, err
	}
	if len(ref) > 255 || !refNameRE.MatchString(ref) || strings.Contains(ref, "..") || strings.HasSuffix(ref, ".lock") || strings.HasSuffix(ref, "/") {
		return "", false, store.Errorf(store.EINVALID, "ref: %q is not a branch or tag name", truncateText(ref, 80))
	}
	out, err := runGitEnv(ctx, "", r.authEnv(), "ls-remote", "--", r.URL, "refs/heads/"+ref, "refs/tags/"+ref, "refs/tags/"+ref+"^{}")
	if err != nil {
		return "", false, unreachable(r, err)
	}
	found := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		id, name, ok := strings.Cut(line, "\t")
		if ok && store.CheckCommitID(id) == nil {
			found[name] = id
		}
	}
	switch {
	case found["refs/heads/"+ref] != "":
		return found["refs/heads/"+ref], false, nil
	case found["refs/tags/"+ref+"^{}"] != "": // an annotated tag: the commit it points at
		return found["refs/tags/"+ref+"^{}"], true, nil
	case found["refs/tags/"+ref] != "":
		return found["refs/tags/"+ref], true, nil
	}
	return "", false, store.Errorf(store.ENOTFOUND, "ref: %s has no branch or tag named %q", redactURL(r.URL), ref)
}
