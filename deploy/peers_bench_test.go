package deploy_test

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// BenchmarkDeployPeers deploys a release tree of many files with a graceful restart to 1, 5
// and 20 real sshd hosts, with ferry and, in the same run and back to back, with what people
// use instead: the system scp sending the same artifact to every host at once plus an ssh
// command that unpacks, stops, switches and starts (as a hand-written script does; once with
// OpenSSH's default cipher, once with the AES-GCM that ferry prefers), and
// rsync of the unpacked tree plus the same ssh restart. "fresh" sends a release the hosts do
// not have (new random content every round, of which nothing is on the hosts); "unchanged"
// deploys the same content again. The tree is benchFiles files of random data (which no
// compression shrinks, so ferry's build packs it as a plain tar) plus the 7 MB service binary. Each run reports, per tool, the
// median and the spread (min-max) of the wall time, the CPU time of the whole deployment on
// this machine (this process, the ssh/scp/rsync clients, and every process of the hosts) and
// the bytes on the wire (both directions, all hosts). Where Ansible is installed, its copy
// module is compared too (ansiblePeer).
// Run it with (-v prints the table rows docs/benchmarks.md shows):
//
//	go test -run '^$' -bench 'DeployPeers/hosts=20/size=100MB' -benchtime 3x -v ./deploy/
func BenchmarkDeployPeers(b *testing.B) {
	for _, hosts := range []int{1, 5, 20} {
		for _, size := range []int64{10 << 20, 100 << 20} {
			b.Run(fmt.Sprintf("hosts=%d/size=%dMB", hosts, size>>20), func(b *testing.B) { benchPeers(b, hosts, size) })
		}
	}
}

// peerBench is the state of one BenchmarkDeployPeers case.
type peerBench struct {
	c          *sshtest.Cluster
	targets    []deploy.Target
	spec       store.DeploySpec
	knownHosts string
	tree       string // the unpacked release, as rsync sends it
	samples    map[string][]sample
}

// sample is what one deployment of one tool cost.
type sample struct {
	wall, cpu time.Duration
	wire      int64
}

// benchFiles is how many files a release tree of the benchmarks holds.
const benchFiles = 2000

func benchPeers(b *testing.B, hosts int, size int64) {
	p := &peerBench{c: sshtest.Start(b, hosts, sshtest.Options{}), spec: testSpec(store.Strategy{Kind: store.StrategyParallel}),
		samples: map[string][]sample{}}
	p.targets = targetsOf(p.c)
	p.knownHosts = p.c.KnownHostsFile(b)
	mustRollout(b, p.targets, p.spec, makeRelease(b, "base", artifact{}))
	ansible := newAnsiblePeer(b, p) // nil when not installed
	// The file indexes of the releases deployed before, kept by the process as the deploy
	// worker keeps them (deploy.Manifests).
	known := deploy.NewManifests()
	for i := 0; b.Loop(); i++ {
		// New content every round: nothing of it is on the hosts yet.
		b.StopTimer()
		p.tree = makeTree(b, benchFiles, size)
		b.StartTimer()
		rel := packTree(b, p.tree, fmt.Sprintf("f%d", i))
		rel.Files = known.Index() // as the deploy worker does: one index per rollout, kept after
		type step struct {
			name string
			run  func()
		}
		tools := [][]step{
			{{"ferry fresh", func() { mustRollout(b, p.targets, p.spec, rel) }},
				{"ferry unchanged", func() { mustRollout(b, p.targets, p.spec, rel) }}},
			{{"scp fresh", func() { p.scpAndRestart(b, rel.Artifact, fmt.Sprintf("scp%d", i)) }},
				{"scp unchanged", func() { p.scpAndRestart(b, rel.Artifact, fmt.Sprintf("scp%db", i)) }}},
			// scp with the cipher ferry prefers, instead of OpenSSH's default chacha20-poly1305.
			{{"scp-aesgcm fresh", func() {
				p.scpAndRestart(b, rel.Artifact, fmt.Sprintf("scp%dc", i), "-c", "aes128-gcm@openssh.com")
			}}},
			{{"rsync fresh", func() { p.rsyncAndRestart(b, fmt.Sprintf("rsync%d", i)) }},
				{"rsync unchanged", func() { p.rsyncAndRestart(b, fmt.Sprintf("rsync%d", i)) }}},
		}
		if ansible != nil { // its own fresh and unchanged rows
			tools = append(tools, []step{{"", func() { ansible.measurePeers(b, rel.Artifact, i) }}})
		}
		// Each round starts with another tool: on a file system without a journal (ext4 as
		// some cloud images make it), creating files within minutes of deleting many costs
		// several times the CPU, and whoever comes first after the last round's clean-up pays.
		for k := range tools {
			for _, s := range tools[(i+k)%len(tools)] {
				if s.name == "" {
					s.run()
					continue
				}
				p.measure(b, s.name, s.run)
			}
		}
		p.cleanPeers(b)
	}
	p.report(b, hosts, size)
}

// measure runs deploy once and keeps what it cost under name.
func (p *peerBench) measure(b *testing.B, name string, deploy func()) {
	b.Helper()
	// Nothing the last tool wrote is left to the kernel to write back while this one runs:
	// with 20 hosts a tool writes gigabytes, and whoever ran next paid for their writeback.
	b.StopTimer()
	syscall.Sync()
	b.StartTimer()
	wire0, cpu0 := p.wire(), p.cpu(b)
	start := time.Now()
	deploy()
	wall := time.Since(start)
	p.settle(b)
	p.samples[name] = append(p.samples[name], sample{wall: wall, cpu: p.cpu(b) - cpu0, wire: p.wire() - wire0})
}

// settle waits until no host holds releases being removed: ferry removes the releases it
// prunes after the deployment, in the background (deploy.Conn.prune). Their removal is part
// of the deployment's CPU-s, not of its wall time, and not of the next tool's.
func (p *peerBench) settle(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, h := range p.c.Hosts() {
		for {
			trash, err := filepath.Glob(h.Path("releases/.ferry-trash-*"))
			if err != nil {
				b.Fatal(err)
			}
			if len(trash) == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s still holds %v two minutes after the deployment", h.Name, trash)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (p *peerBench) wire() int64 {
	var n int64
	for _, h := range p.c.Hosts() {
		n += h.WireBytes()
	}
	return n
}

// cpu is the CPU time used so far by this process, its waited-for children and every host.
func (p *peerBench) cpu(b *testing.B) time.Duration { return machineCPU(b, p.c) }

// report prints one table row per tool and reports ferry's and the peers' medians.
func (p *peerBench) report(b *testing.B, hosts int, size int64) {
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range p.samples {
			if !yield(k) {
				return
			}
		}
	}) {
		s := p.samples[name]
		wall := spread(s, func(x sample) float64 { return x.wall.Seconds() })
		cpu := spread(s, func(x sample) float64 { return x.cpu.Seconds() })
		wire := spread(s, func(x sample) float64 { return float64(x.wire) / (1 << 20) })
		b.Logf("| %d | %d MB | %s | %d | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.1f (%.1f–%.1f) |", hosts, size>>20, name, len(s),
			wall[1], wall[0], wall[2], cpu[1], cpu[0], cpu[2], wire[1], wire[0], wire[2])
		unit := strings.ReplaceAll(name, " ", "-")
		b.ReportMetric(wall[1], unit+"-s")
		b.ReportMetric(cpu[1], unit+"-cpu-s")
		b.ReportMetric(wire[1], unit+"-MiB")
	}
}

// spread returns min, median and max of f over s.
func spread(s []sample, f func(sample) float64) [3]float64 {
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return [3]float64{}
	}
	mid := v[len(v)/2]
	if len(v)%2 == 0 {
		mid = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return [3]float64{v[0], mid, v[len(v)-1]}
}

// makeTree writes a release tree: the test service, its VERSION and files random files (which
// no compression shrinks) of size bytes in all, in 20 directories.
func makeTree(tb testing.TB, files int, size int64) string {
	tb.Helper()
	dir := tb.TempDir()
	write := func(name string, data []byte, mode os.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			tb.Fatal(err)
		}
	}
	write("bin/app", testApp, 0o755)
	write("VERSION", []byte("tree\n"), 0o644)
	each := size / int64(files)
	buf := make([]byte, each)
	for i := range files {
		rand.Read(buf)
		write(fmt.Sprintf("data/%02d/file-%04d.bin", i%20, i), buf, 0o644)
	}
	return dir
}

// packTree packs tree as a plain tar (what ferry's build makes of data that does not shrink)
// for version, with VERSION saying version.
func packTree(tb testing.TB, tree, version string) deploy.Release {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(tree, "VERSION"), []byte(version+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(tb.TempDir(), version+".tar")
	f, err := os.Create(file)
	if err != nil {
		tb.Fatal(err)
	}
	hash := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(f, hash))
	if err := tw.AddFS(os.DirFS(tree)); err != nil {
		tb.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	info, err := os.Stat(file)
	if err != nil {
		tb.Fatal(err)
	}
	return deploy.Release{Version: version, Artifact: file, SHA256: hex.EncodeToString(hash.Sum(nil)), Size: info.Size()}
}

// restartScript is what a hand-written deploy script runs over ssh once the files are on the
// host: unpack (when unpack is set) into releases/<dir>, stop the running service, switch
// current, start the new one and wait for its health check.
func restartScript(dir string, unpack bool) string {
	untar := ""
	if unpack {
		untar = "rm -rf releases/" + dir + " && mkdir releases/" + dir + " && tar -xf releases/.peer.tar -C releases/" + dir + " && rm releases/.peer.tar\n"
	}
	return `set -e
cd ` + sshtest.DefaultDeployPath + `
` + untar + `pid=$(cat current/run/app.pid)
kill "$pid"
while kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' /proc/$pid/status; do sleep 0.1; done
ln -sfn releases/` + dir + ` current.tmp && mv -T current.tmp current
(cd current && setsid nohup bin/app) >/dev/null 2>&1 </dev/null &
for i in $(seq 100); do curl -sf http://127.0.0.1:8080/health >/dev/null && exit 0; sleep 0.1; done
exit 1`
}

func (p *peerBench) sshOptions(h *sshtest.Host) []string {
	return []string{"-i", p.c.ClientKeyFile, "-o", "UserKnownHostsFile=" + p.knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "Port=" + strconv.Itoa(h.Port())}
}

// onEveryHost runs steps for every host at once and fails the benchmark when one fails.
func (p *peerBench) onEveryHost(b *testing.B, steps func(h *sshtest.Host) [][]string) {
	var wg sync.WaitGroup
	for _, h := range p.c.Hosts() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, argv := range steps(h) {
				if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
					b.Errorf("%s on %s: %v: %s", argv[0], h.Name, err, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// scpAndRestart sends the artifact with scp (with extra options, if any) to every host at
// once, then unpacks and restarts over ssh.
func (p *peerBench) scpAndRestart(b *testing.B, artifact, dir string, extra ...string) {
	p.onEveryHost(b, func(h *sshtest.Host) [][]string {
		o := append(p.sshOptions(h), extra...)
		scp := append(append([]string{"scp", "-q"}, o...), artifact, "root@127.0.0.1:"+sshtest.DefaultDeployPath+"/releases/.peer.tar")
		ssh := append(append([]string{"ssh"}, o...), "root@127.0.0.1", restartScript(dir, true))
		return [][]string{scp, ssh}
	})
}

func (p *peerBench) rsyncAndRestart(b *testing.B, dir string) {
	p.onEveryHost(b, func(h *sshtest.Host) [][]string {
		o := p.sshOptions(h)
		rsync := []string{"rsync", "-a", "--delete", "--exclude", "/run/", "-e", "ssh " + strings.Join(o, " "), p.tree + "/",
			"root@127.0.0.1:" + sshtest.DefaultDeployPath + "/releases/" + dir + "/"}
		ssh := append(append([]string{"ssh"}, o...), "root@127.0.0.1", restartScript(dir, false))
		return [][]string{rsync, ssh}
	})
}

// cleanPeers removes what the peers put on the hosts, so the disk does not fill, but for the
// release the hosts run (a peer may have deployed last in the round).
func (p *peerBench) cleanPeers(b *testing.B) {
	ctx := context.Background()
	for _, t := range p.targets {
		conn, err := deploy.Dial(ctx, t, deploy.DialOptions{})
		if err != nil {
			b.Fatal(err)
		}
		_, err = conn.Output(ctx, fmt.Sprintf(`cd %s/releases && cur=$(basename "$(readlink ../current)") && for d in scp* rsync* ansible*; do [ "$d" = "$cur" ] || rm -rf -- "$d"; done`, sshtest.DefaultDeployPath), nil)
		conn.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}
