package deploy_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"

	"golang.org/x/crypto/ssh"
)

func dial(t *testing.T, target deploy.Target, opts deploy.DialOptions) *deploy.Conn {
	t.Helper()
	conn, err := deploy.Dial(context.Background(), target, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", target.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestRunStreamsLinesPassesEnvAndReportsExitStatus(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	conn := dial(t, targetOf(c, c.Hosts()[0]), deploy.DialOptions{})
	var lines []string
	hostile := "$(id); rm -rf ~ `id` 'quoted' \"double\"\nsecond line"
	err := conn.Run(context.Background(), `printf '%s\n' "$VALUE"; echo to-stderr >&2; exit 3`,
		map[string]string{"VALUE": hostile}, func(stream, line string) { lines = append(lines, stream+": "+line) })
	if err == nil || err.Error() != "exit status 3" {
		t.Errorf("error %v, want exit status 3", err)
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{"stdout: $(id); rm -rf ~ `id` 'quoted' \"double\"", "stdout: second line", "stderr: to-stderr"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestRunEndsWhenContextIsCanceled(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	conn := dial(t, targetOf(c, c.Hosts()[0]), deploy.DialOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := conn.Run(ctx, "sleep 31337", nil, nil)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("Run returned %v after %s, want a cancel error at once", err, time.Since(start))
	}
	left, err := conn.Output(context.Background(), "pgrep -f '^sleep 31337$' || true", nil)
	if err != nil || strings.TrimSpace(left) != "" {
		t.Errorf("the canceled command still runs on the host: pgrep says %q (%v)", left, err)
	}
}

func TestDialErrorsSayWhatWentWrong(t *testing.T) {
	c := sshtest.Start(t, 3, sshtest.Options{})
	hosts := c.Hosts()
	rel := makeRelease(t, "v1", artifact{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	rollout(t, c, spec, rel, nil, allSucceed(3)...)

	t.Run("unreachable", func(t *testing.T) {
		target := targetOf(c, hosts[0])
		hosts[0].Stop()
		_, err := deploy.Dial(context.Background(), target, deploy.DialOptions{})
		wantError(t, err, "cannot reach host-1 (127.0.0.1:", "connection refused")
		assertServing(t, hosts[0], "v1")
	})
	t.Run("wrong key", func(t *testing.T) {
		target := targetOf(c, hosts[1])
		target.PrivateKey = sshtest.NewClientKey(t)
		_, err := deploy.Dial(context.Background(), target, deploy.DialOptions{})
		wantError(t, err, "ssh authentication failed for root@host-2", "the key is not accepted")
	})
	t.Run("host key changed", func(t *testing.T) {
		target := targetOf(c, hosts[2])
		oldKey := fingerprint(t, hosts[2].HostKey())
		hosts[2].RegenerateHostKey(t)
		newKey := fingerprint(t, hosts[2].HostKey())
		results := deploy.Rollout(context.Background(), []deploy.Target{target}, deploy.RolloutOptions{Spec: spec, Release: makeRelease(t, "v2", artifact{})})
		if results[0].Status != deploy.HostFailed {
			t.Errorf("status %s, want failed", results[0].Status)
		}
		wantError(t, errorOf(results[0].Reason), "host key of host-3", "changed: expected "+oldKey+", got "+newKey, "re-pin its key")
		assertServing(t, hosts[2], "v1")
	})
	t.Run("trust on first use", func(t *testing.T) {
		target := targetOf(c, hosts[2])
		target.HostKey = ""
		var recorded string
		conn := dial(t, target, deploy.DialOptions{OnNewHostKey: func(line string) error { recorded = line; return nil }})
		conn.Close()
		if recorded != hosts[2].HostKey() {
			t.Errorf("recorded host key %q, want %q", recorded, hosts[2].HostKey())
		}
		target.HostKey = recorded
		dial(t, target, deploy.DialOptions{})
	})
	t.Run("not an ssh server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if conn, err := ln.Accept(); err == nil {
				defer conn.Close()
				time.Sleep(3 * time.Second)
			}
		}()
		target := deploy.Target{Name: "mute", Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, User: "root", PrivateKey: c.ClientKeyPEM}
		_, err = deploy.Dial(context.Background(), target, deploy.DialOptions{HandshakeTimeout: 300 * time.Millisecond})
		wantError(t, err, "ssh handshake with mute", "no answer within 300ms")
	})
}

func fingerprint(t *testing.T, line string) string {
	t.Helper()
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(key)
}

type errorOf string

func (e errorOf) Error() string { return string(e) }

func wantError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}
