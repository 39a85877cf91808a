package deploy_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// BenchmarkDeployDelta deploys, to 5 hosts, a new version of a 100 MB tree of 2,000 files in
// which 1 % of the files changed, with ferry (which sends only the files the hosts lack and
// assembles the release there), with rsync of the whole tree into a new release directory
// with --link-dest to the one before (rsync's own way to move only what changed) and, where
// Ansible is installed, with Ansible's copy module of the artifact (see ansiblePeer), each
// with the same graceful restart. Ferry
// runs as its deploy worker does, keeping the file indexes of the versions it deployed
// (deploy.Manifests), so it sends each host only how the new version differs from the one it
// runs. It reports the bytes on the wire as a share of the artifact, and per host.
// Run it with: go test -run '^$' -bench DeployDelta -benchtime 3x -v ./deploy/
func BenchmarkDeployDelta(b *testing.B) {
	const hosts, size = 5, 100 << 20
	p := &peerBench{c: sshtest.Start(b, hosts, sshtest.Options{}), spec: testSpec(store.Strategy{Kind: store.StrategyParallel}),
		samples: map[string][]sample{}}
	p.targets = targetsOf(p.c)
	p.knownHosts = p.c.KnownHostsFile(b)
	p.tree = makeTree(b, benchFiles, size)
	known := deploy.NewManifests()
	rel := packTree(b, p.tree, "d0")
	rel.Files = known.Index()
	mustRollout(b, p.targets, p.spec, rel)
	p.rsyncLinked(b, "rsync0", "")
	ansible := newAnsiblePeer(b, p)
	names := []string{"ferry 1% changed", "rsync 1% changed"}
	if ansible != nil {
		names = append(names, "ansible 1% changed")
	}
	var artifactBytes int64
	for i := 1; b.Loop(); i++ {
		changeFiles(b, p.tree, benchFiles/100, i)
		rel = packTree(b, p.tree, fmt.Sprintf("d%d", i))
		rel.Files = known.Index()
		artifactBytes = rel.Size
		p.measure(b, names[0], func() { mustRollout(b, p.targets, p.spec, rel) })
		p.measure(b, names[1], func() { p.rsyncLinked(b, fmt.Sprintf("rsync%d", i), fmt.Sprintf("rsync%d", i-1)) })
		if ansible != nil {
			// Ansible's copy sends the new artifact whole: its checksum is not the old one's.
			p.measure(b, names[2], func() { ansible.copyArtifactAndRestart(b, rel.Artifact, fmt.Sprintf("ansible%d", i)) })
			p.cleanDirs(b, fmt.Sprintf("ansible%d", i-1))
		}
	}
	for _, name := range names {
		s := p.samples[name]
		wire := spread(s, func(x sample) float64 { return float64(x.wire) })
		unit := strings.ReplaceAll(name, " ", "-")
		b.ReportMetric(100*wire[1]/float64(artifactBytes*hosts), unit+"-wire-%-of-artifact")
		b.ReportMetric(wire[1]/hosts/1024, unit+"-KiB/host")
	}
	p.report(b, hosts, size)
}

// changeFiles rewrites n of the tree's data files with new random content, other ones each round.
func changeFiles(b testing.TB, tree string, n, round int) {
	buf := make([]byte, 0)
	for k := range n {
		i := (round*n + k*97) % benchFiles
		name := filepath.Join(tree, fmt.Sprintf("data/%02d/file-%04d.bin", i%20, i))
		info, err := os.Stat(name)
		if err != nil {
			b.Fatal(err)
		}
		buf = slices.Grow(buf[:0], int(info.Size()))[:info.Size()]
		rand.Read(buf)
		if err := os.WriteFile(name, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// rsyncLinked sends the tree with rsync into releases/<dir>, hard-linking unchanged files from
// releases/<linkDest> (when set), then restarts the service on it as restartScript does.
func (p *peerBench) rsyncLinked(b *testing.B, dir, linkDest string) {
	p.onEveryHost(b, func(h *sshtest.Host) [][]string {
		o := p.sshOptions(h)
		rsync := []string{"rsync", "-a", "--exclude", "/run/", "-e", "ssh " + strings.Join(o, " ")}
		if linkDest != "" {
			rsync = append(rsync, "--link-dest=../"+linkDest)
		}
		rsync = append(rsync, p.tree+"/", "root@127.0.0.1:"+sshtest.DefaultDeployPath+"/releases/"+dir+"/")
		ssh := append(append([]string{"ssh"}, o...), "root@127.0.0.1", restartScript(dir, false))
		return [][]string{rsync, ssh}
	})
}
