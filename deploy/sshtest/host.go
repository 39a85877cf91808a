package sshtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Host is one fake host: a real sshd daemon on port 22 in its own namespaces, reached through a
// forwarder on a loopback TCP port of the test machine.
type Host struct {
	// Name is "host-1" and so on.
	Name string
	// DeployPath is the same on every host; files there are the host's own.
	DeployPath string

	dir      string // the host's sshd config, host key and logs
	listener net.Listener
	holder   *exec.Cmd
	nsPid    int
	cutAfter atomic.Int64
	wire     atomic.Int64 // bytes forwarded both ways, counted as each connection ends
	accepted atomic.Int64 // connections accepted on the loopback port

	mu      sync.Mutex
	hostKey string
	stopped bool
	open    map[net.Conn]bool
	sshd    *exec.Cmd
	wg      sync.WaitGroup
}

// AddHost starts one more host named name.
func (c *Cluster) AddHost(tb testing.TB, name string, opts Options) *Host {
	tb.Helper()
	if opts.DeployPath == "" {
		opts.DeployPath = DefaultDeployPath
	}
	h := &Host{Name: name, DeployPath: opts.DeployPath, dir: filepath.Join(c.dir, name), open: map[net.Conn]bool{}}
	for _, d := range []string{filepath.Join(h.dir, "root"), opts.DeployPath} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatalf("host %s: create %s: %v", name, d, err)
		}
	}
	h.RegenerateHostKey(tb)
	config := fmt.Sprintf(sshdConfig, h.dir, c.authorizedKeys)
	if err := os.WriteFile(filepath.Join(h.dir, "sshd_config"), []byte(config), 0o600); err != nil {
		tb.Fatalf("host %s: write sshd_config: %v", name, err)
	}
	tb.Cleanup(h.shutdown)
	if err := h.startHolder(opts); err != nil {
		tb.Fatalf("host %s: %v", name, err)
	}
	if err := h.startSSHD(); err != nil {
		tb.Fatalf("host %s: %v", name, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("host %s: listen on loopback: %v", name, err)
	}
	h.listener = ln
	h.wg.Add(1)
	go h.accept()
	c.mu.Lock()
	c.hosts = append(c.hosts, h)
	c.mu.Unlock()
	return h
}

// startHolder starts the process whose namespaces are the host: the deploy path mounted from
// the host's own directory (or a tmpfs), lo up, and a fresh /proc for its pid namespace.
func (h *Host) startHolder(opts Options) error {
	mount := `mount --bind "$1" "$2"`
	if opts.DiskLimit != "" {
		mount = `mount -t tmpfs -o size="$3" ferry-test "$2"`
	}
	// The host's root gets a home of its own, empty as on a new machine: the test machine's
	// /root/.bashrc (which bash reads for every ssh command) is no part of the host.
	script := "set -e; " + mount + "; mount -t tmpfs -o size=16m,mode=0700 ferry-home /root; ip link set lo up; echo ready; exec sleep infinity"
	cmd := exec.Command("unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
		"--propagation", "private", "--", "/bin/sh", "-c", script, "sh",
		filepath.Join(h.dir, "root"), opts.DeployPath, opts.DiskLimit)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = h.logFile("holder.log")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("start the namespace holder: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the namespace holder (unshare): %w", err)
	}
	h.holder = cmd
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			return fmt.Errorf("the namespace holder failed; see %s", filepath.Join(h.dir, "holder.log"))
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the namespace holder did not get ready within 10s")
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		return fmt.Errorf("find the namespace holder's child: %w", err)
	}
	h.nsPid, err = strconv.Atoi(strings.TrimSpace(string(children)))
	if err != nil {
		return fmt.Errorf("find the namespace holder's child in %q: %w", children, err)
	}
	return nil
}

func (h *Host) logFile(name string) *os.File {
	f, err := os.OpenFile(filepath.Join(h.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil
	}
	return f
}

// Port returns the loopback port the host's sshd answers on.
func (h *Host) Port() int { return h.listener.Addr().(*net.TCPAddr).Port }

// Addr returns "127.0.0.1".
func (h *Host) Addr() string { return "127.0.0.1" }

// HostKey returns the host's public key as an authorized_keys line.
func (h *Host) HostKey() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hostKey
}

// RegenerateHostKey gives the host a new host key, as a reinstall would; like the restart a
// reinstall ends with, it drops the connections open to the host.
func (h *Host) RegenerateHostKey(tb testing.TB) {
	tb.Helper()
	h.mu.Lock()
	for c := range h.open {
		c.Close()
	}
	h.mu.Unlock()
	key := filepath.Join(h.dir, "ssh_host_ed25519_key")
	os.Remove(key)
	os.Remove(key + ".pub")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h.Name, "-f", key).CombinedOutput()
	if err != nil {
		tb.Fatalf("host %s: ssh-keygen: %v: %s", h.Name, err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		tb.Fatalf("host %s: read the host key: %v", h.Name, err)
	}
	fields := strings.Fields(string(pub))
	h.mu.Lock()
	h.hostKey = fields[0] + " " + fields[1]
	h.mu.Unlock()
}

// CutAfter makes every later connection drop after the client has sent n bytes; 0 stops that.
func (h *Host) CutAfter(n int64) { h.cutAfter.Store(n) }

// Stop makes the host unreachable: its port refuses connections and open connections drop.
// The processes inside keep running.
func (h *Host) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	h.listener.Close()
	for c := range h.open {
		c.Close()
	}
}

// Path returns where rel (relative to the deploy path) is, seen from the test.
func (h *Host) Path(rel string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", h.nsPid), h.DeployPath, rel)
}

func (h *Host) accept() {
	defer h.wg.Done()
	for {
		conn, err := h.listener.Accept()
		if err != nil {
			return
		}
		h.accepted.Add(1)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.forward(conn)
		}()
	}
}

// forward copies one connection to the host's sshd and back; with cutAfter set it drops the
// connection once the client has sent that many bytes.
func (h *Host) forward(conn net.Conn) {
	defer conn.Close()
	h.mu.Lock()
	stopped := h.stopped
	h.mu.Unlock()
	if stopped {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	inside, err := h.DialInside(ctx, "127.0.0.1:22")
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sshtest: host %s: %v\n", h.Name, err)
		return
	}
	defer inside.Close()
	if !h.track(conn, inside) {
		return
	}
	defer h.untrack(conn, inside)
	done := make(chan struct{}, 2)
	go func() {
		var n int64
		if limit := h.cutAfter.Load(); limit > 0 {
			n, _ = io.CopyN(inside, conn, limit)
		} else {
			n, _ = io.Copy(inside, conn)
		}
		h.wire.Add(n)
		done <- struct{}{}
	}()
	go func() { n, _ := io.Copy(conn, inside); h.wire.Add(n); done <- struct{}{} }()
	<-done
}

func (h *Host) track(conns ...net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	for _, c := range conns {
		h.open[c] = true
	}
	return true
}

func (h *Host) untrack(conns ...net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range conns {
		delete(h.open, c)
	}
}

// startSSHD runs sshd as a daemon on port 22 inside the host and waits until it answers.
func (h *Host) startSSHD() error {
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(h.nsPid), "-m", "-n", "-p", "--",
		"/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(h.dir, "sshd_config"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = h.logFile("sshd.log")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	h.sshd = cmd
	go cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := h.DialInside(context.Background(), "127.0.0.1:22")
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd does not answer within 10s (see %s): %w", filepath.Join(h.dir, "sshd.log"), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shutdown stops the host and every process in it.
func (h *Host) shutdown() {
	if h.listener != nil {
		h.Stop()
	}
	if h.nsPid > 0 {
		syscall.Kill(h.nsPid, syscall.SIGKILL) // the pid namespace's init: all inside die with it
	}
	if h.holder != nil && h.holder.Process != nil {
		h.holder.Process.Kill()
		h.holder.Wait()
	}
	h.wg.Wait()
}
