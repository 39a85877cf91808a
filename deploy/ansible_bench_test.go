package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// ansiblePeer deploys with Ansible (ansible-core) to the hosts of a peerBench: the copy module
// puts the artifact on every host at once, then the shell module unpacks it and runs the same
// restart as the scp peer, over the system ssh with the cluster's key and pinned host keys.
//
// Ansible's ssh runs with the same options as the scp peer's: without -C (Ansible's default
// compresses, which only costs CPU on data that does not shrink) and without ControlPersist,
// whose daemonized master connection would keep its CPU out of the count (this process only
// counts the children it waited for). A tree is not copied with the copy module: it runs
// four ssh commands per file (a try of 2,000 files to 5 hosts did not end within 10 minutes
// on the loaded benchmark machine).
type ansiblePeer struct {
	p         *peerBench
	inventory string
	env       []string
}

// newAnsiblePeer returns the Ansible peer of p, or nil (and says so) when ansible is not
// installed: it is compared where installed.
func newAnsiblePeer(b *testing.B, p *peerBench) *ansiblePeer {
	if _, err := exec.LookPath("ansible"); err != nil {
		b.Logf("ansible is not installed: the Ansible peer is skipped (apt-get install ansible-core)")
		return nil
	}
	dir := b.TempDir()
	var inv strings.Builder
	for _, h := range p.c.Hosts() {
		// Ansible's temp files go under the deploy path: the hosts' home is a small tmpfs.
		fmt.Fprintf(&inv, "%s ansible_host=127.0.0.1 ansible_port=%d ansible_user=root ansible_ssh_private_key_file=%s ansible_remote_tmp=%s/.ansible-tmp\n",
			h.Name, h.Port(), p.c.ClientKeyFile, sshtest.DefaultDeployPath)
	}
	a := &ansiblePeer{p: p, inventory: filepath.Join(dir, "inventory")}
	if err := os.WriteFile(a.inventory, []byte(inv.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	a.env = append(os.Environ(),
		"ANSIBLE_HOST_KEY_CHECKING=True",
		"ANSIBLE_SSH_ARGS=-o UserKnownHostsFile="+p.knownHosts+" -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes -o ControlMaster=no",
		"ANSIBLE_PIPELINING=True", // as its documentation advises for speed
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"),
		"ANSIBLE_FORKS="+fmt.Sprint(len(p.c.Hosts())),
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
	)
	return a
}

func (a *ansiblePeer) run(b *testing.B, module, args string) {
	b.Helper()
	cmd := exec.Command("ansible", "-i", a.inventory, "all", "-o", "-m", module, "-a", args)
	cmd.Env = a.env
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ansible -m %s: %v: %s", module, err, out)
	}
}

// copyArtifactAndRestart copies the artifact to every host with Ansible's copy module, then
// unpacks it and restarts the service as the scp peer does.
func (a *ansiblePeer) copyArtifactAndRestart(b *testing.B, artifact, dir string) {
	a.run(b, "copy", "src="+artifact+" dest="+sshtest.DefaultDeployPath+"/releases/.peer.tar")
	a.run(b, "shell", restartScript(dir, true))
}

// measurePeers adds Ansible's rows to a BenchmarkDeployPeers round (nothing when Ansible is
// not installed): the artifact of round i sent fresh, and the same again.
func (a *ansiblePeer) measurePeers(b *testing.B, artifact string, i int) {
	if a == nil {
		return
	}
	a.p.cleanDirs(b, fmt.Sprintf("ansible%db", i-1))
	a.p.measure(b, "ansible fresh", func() { a.copyArtifactAndRestart(b, artifact, fmt.Sprintf("ansible%d", i)) })
	a.p.measure(b, "ansible unchanged", func() { a.copyArtifactAndRestart(b, artifact, fmt.Sprintf("ansible%db", i)) })
	a.p.cleanDirs(b, fmt.Sprintf("ansible%d", i))
}

// cleanDirs removes releases/<dir> of every host (one that is not current), so the disk does
// not fill.
func (p *peerBench) cleanDirs(b *testing.B, dirs ...string) {
	ctx := context.Background()
	script := "cd " + sshtest.DefaultDeployPath + "/releases && rm -rf --"
	for _, d := range dirs {
		script += " " + store.ShellQuote(d)
	}
	for _, t := range p.targets {
		conn, err := deploy.Dial(ctx, t, deploy.DialOptions{})
		if err != nil {
			b.Fatal(err)
		}
		_, err = conn.Output(ctx, script, nil)
		conn.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}
