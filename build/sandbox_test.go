package build

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// yamlScript returns a .ferry.yml whose build runs lines (each single-quoted for YAML) and
// keeps artifact.
func yamlScript(artifact string, lines ...string) string {
	var b strings.Builder
	b.WriteString("build:\n  script:\n")
	for _, l := range lines {
		b.WriteString("    - '" + strings.ReplaceAll(l, "'", "''") + "'\n")
	}
	b.WriteString("  artifact: " + artifact + "\n  timeout: 2m\n")
	return b.String()
}

// fakeFerry starts a process standing for a running ferry: its environment in /proc holds the
// secrets ferry is started with. The script of a build must not find them.
func fakeFerry(t *testing.T, env ...string) int {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.Env = env
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// TestSandboxKeepsFerrysSecretsFromBuilds is the attack of issue 11: a pushed build script
// tries every read that would give it ferry's secrets, and prints what it finds. None of the
// secrets may reach the build's log; the build still does what builds do.
func TestSandboxKeepsFerrysSecretsFromBuilds(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		secrets := map[string]string{
			"secret key file":         "keyfile-" + store.RandomSecret(12),
			"database file":           "dbfile-" + store.RandomSecret(12),
			"other project workspace": "otherws-" + store.RandomSecret(12),
			"FERRY_SECRET_KEY":        "envkey-" + store.RandomSecret(12),
			"FERRY_GITLAB_TOKEN":      "envtoken-" + store.RandomSecret(12),
		}
		writeFiles(t, e.dataDir, map[string]string{
			"secret.key":                          secrets["secret key file"] + "\n",
			"ferry.db":                            "SQLite format 3\x00" + secrets["database file"],
			"workspaces/other/7-1/src/deploy.key": secrets["other project workspace"],
			"workspaces/other/7-1/home/.netrc":    secrets["other project workspace"],
			"repos/other.git/config":              "[remote] url = https://oauth2:" + secrets["other project workspace"] + "@x/y.git",
			"artifacts/other/v1.tar.gz":           secrets["other project workspace"],
			"caches/other/token":                  secrets["other project workspace"],
		})
		ferryPID := fakeFerry(t, "FERRY_SECRET_KEY="+secrets["FERRY_SECRET_KEY"], "FERRY_GITLAB_TOKEN="+secrets["FERRY_GITLAB_TOKEN"])
		t.Setenv("FERRY_SECRET_KEY", secrets["FERRY_SECRET_KEY"])
		t.Setenv("FERRY_GITLAB_TOKEN", secrets["FERRY_GITLAB_TOKEN"])
		data := e.dataDir
		netToken := "net-ok-" + store.RandomSecret(8)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(netToken + "\n"))
				c.Close()
			}
		}()
		tries := []string{
			"cat " + data + "/secret.key || true",
			"cat " + data + "/ferry.db || true",
			"ls -laR " + data + " || true",
			"cat " + data + "/workspaces/other/7-1/src/deploy.key " + data + "/workspaces/other/7-1/home/.netrc || true",
			"cat " + data + "/repos/other.git/config " + data + "/artifacts/other/v1.tar.gz " + data + "/caches/other/token || true",
			"cat ../../other/7-1/src/deploy.key ../../../caches/other/token || true",
			`for f in /proc/[0-9]*/environ; do echo "== $f"; tr "\000" "\n" < "$f" || true; done`,
			"tr '\\000' '\\n' < /proc/" + strconv.Itoa(ferryPID) + "/environ || true",
			"tr '\\000' '\\n' < /proc/" + strconv.Itoa(os.Getpid()) + "/environ || true",
			"ls /proc; cat /proc/1/cmdline || true",
			"env",
			"find / -xdev -name secret.key 2>/dev/null || true",
		}
		does := []string{
			"echo from-the-checkout > written.txt && mkdir out && cp written.txt out/",
			`echo at-home > "$HOME/h" && cat "$HOME/h"`,
			`echo "$(cat "$FERRY_CACHE_DIR/count" 2>/dev/null)x" > "$FERRY_CACHE_DIR/count"; echo "cache=$(cat "$FERRY_CACHE_DIR/count")"`,
			`echo temp > "$TMPDIR/t" && echo "tmp=$(cat "$TMPDIR/t")"`,
			"git --version && git log -1 --format=commit=%H",
			"ls /usr/bin/git /usr/bin/sh > /dev/null && echo toolchain-ok",
			"socat -u TCP:" + ln.Addr().String() + " -",
			`echo vartmp > /var/tmp/v && cat /var/tmp/v`,
		}
		sha := e.origin.commit("attack", map[string]string{".ferry.yml": yamlScript("out", append(tries, does...)...)})
		e.start(e.config("w1"))

		b := e.waitEnd(e.queue(sha, "main").ID)
		log := e.log(b.ID)
		for what, secret := range secrets {
			if strings.Contains(log, secret) {
				t.Errorf("the build read the %s: its log holds %q", what, secret)
			}
		}
		if b.Status != store.BuildSuccess {
			t.Fatalf("build = %s %q, want success; log:\n%s", b.Status, b.Error, log)
		}
		for _, want := range []string{"at-home", "cache=x", "tmp=temp", "vartmp", "commit=" + sha, "toolchain-ok", netToken, "in the build sandbox"} {
			if !strings.Contains(log, want) {
				t.Errorf("the build log lacks %q; log:\n%s", want, log)
			}
		}
		v, err := db.GetVersionByName(context.Background(), e.project.ID, b.Version)
		must(t, err)
		if got := readArchive(t, v.Path); got["written.txt"].content != "from-the-checkout\n" {
			t.Errorf("artifact = %v, want written.txt made by the script", got)
		}

		// The cache persists between builds of this project, and only of this project.
		other := &store.Project{Name: "other", GitLabPath: "group/other", CloneURL: e.origin.Dir, Trigger: store.DefaultTrigger(), KeepVersions: 5, WebhookSecret: "hook-secret"}
		must(t, db.CreateProject(context.Background(), other))
		next := e.origin.commit("again", nil)
		if b := e.waitEnd(e.queue(next, "main").ID); !strings.Contains(e.log(b.ID), "cache=xx") {
			t.Errorf("the second build of app did not find its cache; log:\n%s", e.log(b.ID))
		}
		ob, err := db.CreateBuild(context.Background(), store.NewBuild{ProjectID: other.ID, Ref: "main", Branch: "main", SHA: next, TriggeredBy: "test"})
		must(t, err)
		if b := e.waitEnd(ob.ID); !strings.Contains(e.log(b.ID), "cache=x\n") || strings.Contains(e.log(b.ID), secrets["other project workspace"]) {
			t.Errorf("a build of another project saw app's cache (want cache=x); log:\n%s", e.log(b.ID))
		}
	})
}

// TestSandboxMissingBwrapFailsBuildsInWords: with the sandbox on and no bwrap, a build does not
// run unsandboxed; it fails saying what to install or set.
func TestSandboxMissingBwrapFailsBuildsInWords(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		marker := filepath.Join(t.TempDir(), "ran")
		sha := e.origin.commit("x", map[string]string{".ferry.yml": yamlScript("out", "touch "+marker, "mkdir out")})
		cfg := e.config("w1")
		cfg.Bwrap = "/nonexistent/bin/bwrap"
		e.start(cfg)
		b := e.waitEnd(e.queue(sha, "main").ID)
		if b.Status != store.BuildFailed {
			t.Fatalf("build = %s, want failed; log:\n%s", b.Status, e.log(b.ID))
		}
		for _, want := range []string{"bubblewrap", "/nonexistent/bin/bwrap", "FERRY_BUILD_SANDBOX=off"} {
			if !strings.Contains(b.Error, want) || !strings.Contains(e.log(b.ID), want) {
				t.Errorf("the build's error %q (or its log) does not say %q; log:\n%s", b.Error, want, e.log(b.ID))
			}
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("the script ran although the sandbox is missing")
		}
	})
}

// TestSandboxOffIsSaidInTheBuildLog: turning the sandbox off is explicit and each build says so.
func TestSandboxOffIsSaidInTheBuildLog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		sha := e.origin.commit("x", map[string]string{".ferry.yml": yamlScript("out", "mkdir out", "id -u")})
		cfg := e.config("w1")
		cfg.NoSandbox = true
		e.start(cfg)
		b := e.waitEnd(e.queue(sha, "main").ID)
		if b.Status != store.BuildSuccess || !strings.Contains(e.log(b.ID), "WITHOUT the build sandbox (FERRY_BUILD_SANDBOX=off)") {
			t.Errorf("build = %s; its log does not warn that the sandbox is off:\n%s", b.Status, e.log(b.ID))
		}
	})
}

// sandboxScript is newScript run in the sandbox.
func sandboxScript(t *testing.T, lines ...string) *Script {
	t.Helper()
	sb, err := NewSandbox("")
	if err != nil {
		t.Fatal(err)
	}
	s := newScript(t, lines...)
	s.Sandbox = sb
	return s
}

// findProcess returns the pids of processes whose command line is exactly argv.
func findProcess(argv ...string) []int {
	want := strings.Join(argv, "\x00") + "\x00"
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && string(cmdline) == want && running(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestSandboxCancelEndsProcessTreeGracefully: a canceled sandboxed script gets SIGTERM first
// (its trap runs), and nothing of it outlives the cancel, not even a process that left with setsid.
func TestSandboxCancelEndsProcessTreeGracefully(t *testing.T) {
	tag := strconv.Itoa(int(time.Now().UnixNano()%100000) + 100000)
	s := sandboxScript(t,
		`trap "echo got-TERM; exit 5" TERM`,
		`setsid sleep `+tag+` &`,
		`sleep 300 & wait`)
	ctx, cancel := context.WithCancel(context.Background())
	var log lineLog
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, log.add) }()
	for deadline := time.Now().Add(10 * time.Second); len(findProcess("sleep", tag)) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the script's daemon never started; output:\n%s", log.text())
		}
	}
	cancel()
	select {
	case err := <-done:
		if Outcome(err) != OutcomeCanceled {
			t.Errorf("Run after cancel = %v, want canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	if !strings.Contains(log.text(), "got-TERM") {
		t.Errorf("the script was not given SIGTERM before SIGKILL; output:\n%s", log.text())
	}
	if left := findProcess("sleep", tag); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Errorf("processes %v outlived the canceled sandboxed script", left)
	}
}

// TestSandboxDaemonEndsWithScript: what a sandboxed script leaves running ends with it.
func TestSandboxDaemonEndsWithScript(t *testing.T) {
	tag := strconv.Itoa(int(time.Now().UnixNano()%100000) + 200000)
	s := sandboxScript(t, `setsid sleep `+tag+` > /dev/null 2>&1 &`, "echo done")
	var log lineLog
	start := time.Now()
	if err := s.Run(context.Background(), log.add); err != nil {
		t.Fatalf("Run: %v\n%s", err, log.text())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a left daemon held the build for %s", d)
	}
	if left := findProcess("sleep", tag); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Errorf("the daemon %v outlived its sandboxed script", left)
	}
}

// TestSweepEndsWhatADeadFerryLeft: an unsandboxed script's children are not reached by
// Pdeathsig; the record of the run lets the next ferry end them and remove the workspace,
// while a record of a live ferry is left alone.
func TestSweepEndsWhatADeadFerryLeft(t *testing.T) {
	root := t.TempDir()
	records, work := filepath.Join(root, "running"), filepath.Join(root, "workspaces")
	dead := exec.Command("true")
	must(t, dead.Run())
	deadStat, _ := readProcStat(os.Getpid()) // any start time: the dead pid no longer runs

	cookie := newCookie()
	orphan := exec.Command("setsid", "sleep", "600")
	orphan.Env = []string{cookieVar + "=" + cookie}
	must(t, orphan.Start())
	t.Cleanup(func() { orphan.Process.Kill(); orphan.Wait() })
	leftWS := filepath.Join(work, "app", "9-1")
	liveWS := filepath.Join(work, "app", "10-1")
	writeFiles(t, leftWS, map[string]string{"src/x": "x"})
	writeFiles(t, liveWS, map[string]string{"src/x": "x"})

	_, err := writeRunRecord(records, "10-1", runRecord{Workspace: liveWS}) // this process: alive
	must(t, err)
	data := `{"ferry_pid":` + strconv.Itoa(dead.Process.Pid) + `,"ferry_start":` + strconv.FormatUint(deadStat.startTime, 10) +
		`,"cookie":"` + cookie + `","workspace":"` + leftWS + `"}`
	must(t, os.WriteFile(filepath.Join(records, "9-1.json"), []byte(data), 0o600))

	swept, err := sweepRunRecords(records, work, time.Second)
	must(t, err)
	if len(swept) != 1 || swept[0].Workspace != leftWS {
		t.Errorf("swept %+v, want the dead ferry's record alone", swept)
	}
	eventually(func() bool { return !running(orphan.Process.Pid) })
	if running(orphan.Process.Pid) {
		t.Errorf("the dead ferry's orphan %d still runs", orphan.Process.Pid)
	}
	if _, err := os.Stat(leftWS); !os.IsNotExist(err) {
		t.Errorf("the dead ferry's workspace is still there (%v)", err)
	}
	if _, err := os.Stat(liveWS); err != nil {
		t.Errorf("the workspace of a live ferry was removed: %v", err)
	}
}

// The attack on the sandbox's door: build.env comes from the pushed .ferry.yml, and bwrap was
// started with the script's environment, so LD_PRELOAD named a library that the dynamic
// loader put into bwrap itself, running as ferry outside the sandbox, before any namespace.
// Here the library lies outside the sandbox (as the checkout does, at its path in the data
// dir); loaded, it leaves a mark. The script must still get the variable.
func TestBuildEnvCannotLoadCodeIntoBwrap(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "escaped")
	src := filepath.Join(dir, "evil.c")
	lib := filepath.Join(dir, "evil.so")
	must(t, os.WriteFile(src, []byte(`#include <stdio.h>
__attribute__((constructor)) static void escape(void) {
	FILE *f = fopen("`+mark+`", "a");
	if (f) { fputs("ran outside the sandbox\n", f); fclose(f); }
}
`), 0o600))
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	for _, name := range []string{"LD_PRELOAD", "LD_AUDIT"} {
		s := sandboxScript(t, `echo "seen: $`+name+`"`)
		s.Env = map[string]string{name: lib}
		var log lineLog
		if err := s.Run(context.Background(), log.add); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, log.text())
		}
		if data, err := os.ReadFile(mark); err == nil {
			t.Fatalf("build.env %s=%s ran code outside the sandbox: %s", name, lib, data)
		}
		if !strings.Contains(log.text(), "seen: "+lib) {
			t.Errorf("the script did not get %s from build.env:\n%s", name, log.text())
		}
	}
}
