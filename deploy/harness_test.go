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
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// testApp is the test service binary, built once in TestMain.
var testApp []byte

func TestMain(m *testing.M) {
	if url := os.Getenv(workerProcessEnv); url != "" {
		os.Exit(runWorkerProcess(url))
	}
	if url := os.Getenv(jobRunnerProcessEnv); url != "" {
		os.Exit(runJobRunnerProcess(url))
	}
	dir, err := os.MkdirTemp("", "ferry-testapp-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create a temp dir:", err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "app")
	out, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, "./testdata/testapp").CombinedOutput()
	if err == nil {
		testApp, err = os.ReadFile(bin)
	}
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "build the test service: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// artifact says what a test release holds besides the service and its VERSION.
type artifact struct {
	ignoreTerm bool  // the service ignores SIGTERM
	unhealthy  bool  // /health answers 500
	padding    int64 // bytes of random data, which gzip cannot shrink
	// members are more files, by name, added after the rest (in name order).
	members map[string]string
}

// makeRelease packs the test service as a tar.gz artifact for version.
func makeRelease(tb testing.TB, version string, a artifact) deploy.Release {
	tb.Helper()
	file := filepath.Join(tb.TempDir(), version+".tar.gz")
	f, err := os.Create(file)
	if err != nil {
		tb.Fatal(err)
	}
	hash := sha256.New()
	// Stored, not compressed: the padding is random anyway, and deflate under -race is slow.
	gz, err := gzip.NewWriterLevel(io.MultiWriter(f, hash), gzip.NoCompression)
	if err != nil {
		tb.Fatal(err)
	}
	tw := tar.NewWriter(gz)
	add := func(name string, mode int64, size int64, r io.Reader) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, ModTime: time.Now()}); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.CopyN(tw, r, size); err != nil {
			tb.Fatal(err)
		}
	}
	add("bin/app", 0o755, int64(len(testApp)), strings.NewReader(string(testApp)))
	add("VERSION", 0o644, int64(len(version)+1), strings.NewReader(version+"\n"))
	if a.ignoreTerm {
		add("ignore-term", 0o644, 0, strings.NewReader(""))
	}
	if a.unhealthy {
		add("unhealthy", 0o644, 0, strings.NewReader(""))
	}
	if a.padding > 0 {
		add("padding.bin", 0o644, a.padding, rand.Reader)
	}
	for _, name := range slices.Sorted(maps.Keys(a.members)) {
		add(name, 0o644, int64(len(a.members[name])), strings.NewReader(a.members[name]))
	}
	for _, c := range []io.Closer{tw, gz, f} {
		if err := c.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	info, err := os.Stat(file)
	if err != nil {
		tb.Fatal(err)
	}
	return deploy.Release{Version: version, Artifact: file, SHA256: hex.EncodeToString(hash.Sum(nil)), Size: info.Size()}
}

// testSpec is the deploy section of the test service's .ferry.yml.
func testSpec(strategy store.Strategy) store.DeploySpec {
	return store.DeploySpec{
		Path:         sshtest.DefaultDeployPath,
		KeepReleases: 3,
		Stop:         store.StopSpec{PidFile: "run/app.pid", Grace: store.Duration(2 * time.Second)},
		Start:        "bin/app",
		Health:       store.HealthSpec{HTTP: "http://127.0.0.1:8080/health", Timeout: store.Duration(5 * time.Second)},
		Strategy:     strategy,
	}
}

// targetOf is how ferry would know h: its address, root with the cluster's key, the pinned key.
func targetOf(c *sshtest.Cluster, h *sshtest.Host) deploy.Target {
	return deploy.Target{Name: h.Name, Address: h.Addr(), Port: h.Port(), User: "root", PrivateKey: c.ClientKeyPEM, HostKey: h.HostKey()}
}

func targetsOf(c *sshtest.Cluster) []deploy.Target {
	var ts []deploy.Target
	for _, h := range c.Hosts() {
		ts = append(ts, targetOf(c, h))
	}
	return ts
}

// recorder keeps every step and log line of a rollout, per host.
type recorder struct {
	mu    sync.Mutex
	steps map[string][]stepAt
	logs  map[string][]string
}

type stepAt struct {
	step string
	at   time.Time
}

func newRecorder() *recorder {
	return &recorder{steps: map[string][]stepAt{}, logs: map[string][]string{}}
}

func (r *recorder) events(host string) deploy.HostEvents {
	return deploy.HostEvents{
		Step: func(step string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.steps[host] = append(r.steps[host], stepAt{step, time.Now()})
		},
		Log: func(stream, line string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.logs[host] = append(r.logs[host], stream+": "+line)
		},
	}
}

func (r *recorder) stepNames(host string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, s := range r.steps[host] {
		names = append(names, s.step)
	}
	return names
}

func (r *recorder) stepTime(host, step string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.steps[host] {
		if s.step == step {
			return s.at
		}
	}
	return time.Time{}
}

func (r *recorder) log(host string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.logs[host], "\n")
}

// rollout deploys rel to every host of c and fails the test unless each host ends as want.
func rollout(t *testing.T, c *sshtest.Cluster, spec store.DeploySpec, rel deploy.Release, rec *recorder, want ...string) []deploy.HostResult {
	t.Helper()
	opts := deploy.RolloutOptions{Spec: spec, Release: rel}
	if rec != nil {
		opts.Events = rec.events
	}
	results := deploy.Rollout(context.Background(), targetsOf(c), opts)
	for i, res := range results {
		if i < len(want) && res.Status != want[i] {
			t.Errorf("%s: status %s, want %s (reason: %s)", res.Host, res.Status, want[i], res.Reason)
		}
	}
	return results
}

func allSucceed(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = deploy.HostSucceeded
	}
	return out
}

// assertServing fails unless h's service answers version at /version and current points at it.
func assertServing(t *testing.T, h *sshtest.Host, version string) {
	t.Helper()
	code, body, err := h.Get("http://127.0.0.1:8080/version")
	if err != nil || code != 200 || body != version {
		t.Errorf("%s: /version answered %d %q (%v), want %q", h.Name, code, body, err, version)
	}
	assertCurrent(t, h, version)
}

// assertCurrent fails unless current is a link to releases/<version> that resolves.
func assertCurrent(t *testing.T, h *sshtest.Host, version string) {
	t.Helper()
	link, err := os.Readlink(h.Path("current"))
	if err != nil || link != "releases/"+version {
		t.Errorf("%s: current -> %q (%v), want releases/%s", h.Name, link, err, version)
	}
	if _, err := os.Stat(h.Path("current/VERSION")); err != nil {
		t.Errorf("%s: current is dangling: %v", h.Name, err)
	}
}

// releaseEntries lists what is in a host's releases directory once the removal of pruned
// releases ended: a rollout returns when they are out of the releases' namespace, in a trash
// directory whose removal goes on in the background (see TestPrunedReleasesAreRemovedAfterTheRollout);
// the listing waits up to 10 s for it, as a user would look again, and shows a trash directory
// still there.
func releaseEntries(t *testing.T, h *sshtest.Host) []string {
	t.Helper()
	names := settledReleaseFiles(t, h)
	// The recorded sha256 of a release (.<version>.sha256), its manifest (.<version>.files) and
	// the stat of its files (.<version>.stat) belong to it; one without its release is listed,
	// like any leftover.
	return slices.DeleteFunc(names, func(name string) bool {
		var v string
		ok := false
		for _, suffix := range []string{".sha256", ".files", ".stat"} {
			if v, ok = strings.CutSuffix(strings.TrimPrefix(name, "."), suffix); ok {
				break
			}
		}
		return ok && strings.HasPrefix(name, ".") && slices.Contains(names, v)
	})
}

// releaseFiles lists every name in a host's releases directory, sorted.
func releaseFiles(t *testing.T, h *sshtest.Host) []string {
	t.Helper()
	entries, err := os.ReadDir(h.Path("releases"))
	if err != nil {
		t.Fatalf("%s: list releases: %v", h.Name, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// settledReleaseFiles is releaseFiles once no trash directory (.ferry-trash-*) is left, or after
// 10 s.
func settledReleaseFiles(t *testing.T, h *sshtest.Host) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		names := releaseFiles(t, h)
		trash := slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, ".ferry-trash-") })
		if !trash || time.Now().After(deadline) {
			return names
		}
		time.Sleep(50 * time.Millisecond)
	}
}
