// Package sshtest starts fake hosts for tests: each is a real OpenSSH sshd with its own host
// key, its own filesystem at the same deploy path and its own network (so every host has the
// same 127.0.0.1:8080), reached over real TCP on a loopback port of the test machine.
//
// A host is a process in new mount, network and pid namespaces (unshare) that holds a
// per-host directory (or a size-limited tmpfs) mounted at the deploy path. sshd runs there as a
// daemon on 127.0.0.1:22 (entered with nsenter); each TCP connection accepted on the host's
// loopback port is forwarded to it. Killing the holder ends every process of the host. It needs
// root, unshare, nsenter, ip, ssh-keygen and /usr/sbin/sshd; a missing piece fails the test.
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// DefaultDeployPath is where every host's own directory appears inside the host.
const DefaultDeployPath = "/srv/ferry-test/app"

// Options shape the hosts of a cluster.
type Options struct {
	// DeployPath defaults to DefaultDeployPath.
	DeployPath string
	// DiskLimit, such as "24m", mounts a tmpfs of that size at the deploy path instead of a
	// directory, so the host's disk fills up.
	DiskLimit string
}

// Cluster is a set of fake hosts sharing one client key.
type Cluster struct {
	tb  testing.TB
	dir string
	// ClientKeyPEM is the private key every host accepts for root.
	ClientKeyPEM []byte
	// ClientKeyFile holds ClientKeyPEM, for the system ssh and scp clients.
	ClientKeyFile  string
	authorizedKeys string

	mu    sync.Mutex
	hosts []*Host
}

// Start starts n hosts named host-1 … host-n. Everything it starts is stopped when the test
// ends, also when it fails.
func Start(tb testing.TB, n int, opts Options) *Cluster {
	tb.Helper()
	requireTools(tb)
	c := &Cluster{tb: tb, dir: tb.TempDir()}
	c.makeClientKey(tb)
	for i := 1; i <= n; i++ {
		c.AddHost(tb, fmt.Sprintf("host-%d", i), opts)
	}
	return c
}

// Hosts returns the hosts in the order they were added.
func (c *Cluster) Hosts() []*Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Host(nil), c.hosts...)
}

func requireTools(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("sshtest needs root to create namespaces for its fake hosts")
	}
	for _, tool := range []string{"unshare", "nsenter", "ip", "ssh-keygen", "/usr/sbin/sshd", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("sshtest needs %s to run fake hosts: %v", tool, err)
		}
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatalf("create sshd's privilege separation directory /run/sshd: %v", err)
	}
}

func (c *Cluster) makeClientKey(tb testing.TB) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("generate the client key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "ferry-test")
	if err != nil {
		tb.Fatalf("encode the client key: %v", err)
	}
	c.ClientKeyPEM = pem.EncodeToMemory(block)
	c.ClientKeyFile = filepath.Join(c.dir, "client_key")
	if err := os.WriteFile(c.ClientKeyFile, c.ClientKeyPEM, 0o600); err != nil {
		tb.Fatalf("write the client key: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatalf("encode the client public key: %v", err)
	}
	c.authorizedKeys = filepath.Join(c.dir, "authorized_keys")
	if err := os.WriteFile(c.authorizedKeys, ssh.MarshalAuthorizedKey(sshPub), 0o600); err != nil {
		tb.Fatalf("write authorized_keys: %v", err)
	}
}

// KnownHostsFile writes a known_hosts file for the system ssh client naming every host's
// loopback address and key, and returns its path.
func (c *Cluster) KnownHostsFile(tb testing.TB) string {
	tb.Helper()
	var b strings.Builder
	for _, h := range c.Hosts() {
		fmt.Fprintf(&b, "[127.0.0.1]:%d %s\n", h.Port(), h.HostKey())
	}
	file := filepath.Join(c.dir, "known_hosts")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		tb.Fatalf("write known_hosts: %v", err)
	}
	return file
}

// NewClientKey returns another private key (PEM) that no host accepts.
func NewClientKey(tb testing.TB) []byte {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("generate a key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "stranger")
	if err != nil {
		tb.Fatalf("encode a key: %v", err)
	}
	return pem.EncodeToMemory(block)
}

const sshdConfig = `HostKey %[1]s/ssh_host_ed25519_key
AuthorizedKeysFile %[2]s
PidFile none
ListenAddress 127.0.0.1:22
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
StrictModes no
UsePAM no
UseDNS no
LogLevel ERROR
Subsystem sftp internal-sftp
`
