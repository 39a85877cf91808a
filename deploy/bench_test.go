package deploy_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// BenchmarkDeploy100MB compares, in the same run and against the same hosts, ferry deploying
// a 100 MB artifact with a restart against the system scp in parallel plus an ssh restart, and
// measures a rollback to a version already on every host; with 1, 5 and 20 hosts. Every fake
// host runs on this machine's cores, so with many hosts the figure is mostly their added CPU.
// BenchmarkDeployPeers measures the same with CPU and bytes on the wire, and rsync too.
// Run it with: go test -run '^$' -bench Deploy100MB -benchtime 1x ./deploy/
func BenchmarkDeploy100MB(b *testing.B) {
	for _, hosts := range []int{1, 5, 20} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) { benchDeploy100MB(b, hosts) })
	}
}

func benchDeploy100MB(b *testing.B, hosts int) {
	c := sshtest.Start(b, hosts, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	targets := targetsOf(c)
	base := makeRelease(b, "base", artifact{})
	mustRollout(b, targets, spec, base)
	big := makeRelease(b, "big", artifact{padding: 100 << 20})
	knownHosts := c.KnownHostsFile(b)

	var ferry, scp, rollback time.Duration
	for i := 0; b.Loop(); i++ {
		rel := big
		rel.Version = fmt.Sprintf("big-%d", i)
		start := time.Now()
		mustRollout(b, targets, spec, rel)
		ferry += time.Since(start)

		start = time.Now()
		scpAndRestart(b, c, knownHosts, big.Artifact, fmt.Sprintf("scp-%d", i))
		scp += time.Since(start)

		start = time.Now()
		mustRollout(b, targets, spec, base)
		rollback += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(ferry.Seconds()/n, "ferry-s/op")
	b.ReportMetric(scp.Seconds()/n, "scp+ssh-s/op")
	b.ReportMetric(rollback.Seconds()/n, "rollback-s/op")
}

func mustRollout(b *testing.B, targets []deploy.Target, spec store.DeploySpec, rel deploy.Release) {
	b.Helper()
	for _, res := range deploy.Rollout(context.Background(), targets, deploy.RolloutOptions{Spec: spec, Release: rel}) {
		if res.Status != deploy.HostSucceeded {
			b.Fatalf("%s: %s: %s", res.Host, res.Status, res.Reason)
		}
	}
}

// scpAndRestart is what a hand-written script does: scp the artifact to every host at once,
// then over ssh unpack it, stop the old process, switch current, start and wait for health.
func scpAndRestart(b *testing.B, c *sshtest.Cluster, knownHosts, artifact, version string) {
	b.Helper()
	restart := `set -e
cd ` + sshtest.DefaultDeployPath + `
mkdir releases/` + version + `
tar -xzf releases/.scp.tar.gz -C releases/` + version + `
rm releases/.scp.tar.gz
pid=$(cat current/run/app.pid)
kill "$pid"
while kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' /proc/$pid/status; do sleep 0.1; done
ln -sfn releases/` + version + ` current.tmp && mv -T current.tmp current
# The redirections cover the whole list: on the command alone, the subshell running the list
# would keep ssh's output open, and ssh would wait for the service to end.
(cd current && setsid nohup bin/app) >/dev/null 2>&1 </dev/null &
for i in $(seq 100); do curl -sf http://127.0.0.1:8080/health >/dev/null && exit 0; sleep 0.1; done
exit 1`
	var wg sync.WaitGroup
	for _, h := range c.Hosts() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			common := []string{"-i", c.ClientKeyFile, "-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes",
				"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}
			port := strconv.Itoa(h.Port())
			scp := append(append([]string{}, common...), "-q", "-P", port, artifact, "root@127.0.0.1:"+sshtest.DefaultDeployPath+"/releases/.scp.tar.gz")
			if out, err := exec.Command("scp", scp...).CombinedOutput(); err != nil {
				b.Errorf("scp to %s: %v: %s", h.Name, err, out)
				return
			}
			ssh := append(append([]string{}, common...), "-p", port, "root@127.0.0.1", restart)
			if out, err := exec.Command("ssh", ssh...).CombinedOutput(); err != nil {
				b.Errorf("ssh restart on %s: %v: %s", h.Name, err, out)
			}
		}()
	}
	wg.Wait()
}

// BenchmarkRollback20Hosts measures a rollback on 20 hosts at once: deploying a version every
// host still keeps, which moves no artifact bytes and only stops, switches, starts and checks;
// with every connection dialed for the rollout ("dial") and with the connections of the last
// rollout kept in a ConnPool ("pool"). It reports the median and the slowest rollback, and the
// CPU time of the whole machine per rollback (this process and every host: sshd, the commands,
// the services), which a busy machine disturbs less than the wall time.
// Run it with: go test -run '^$' -bench Rollback20Hosts -benchtime 5x ./deploy/
func BenchmarkRollback20Hosts(b *testing.B) {
	c := sshtest.Start(b, 20, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	targets := targetsOf(c)
	v1, v2 := makeRelease(b, "v1", artifact{}), makeRelease(b, "v2", artifact{})
	mustRollout(b, targets, spec, v1)
	mustRollout(b, targets, spec, v2)
	for _, pooled := range []bool{false, true} {
		name := map[bool]string{false: "dial", true: "pool"}[pooled]
		b.Run(name, func(b *testing.B) {
			opts := deploy.RolloutOptions{Spec: spec}
			if pooled {
				opts.Pool = deploy.NewConnPool(0)
				defer opts.Pool.Close()
			}
			var took []time.Duration
			var sent int64
			var cpu time.Duration
			for i := 0; b.Loop(); i++ {
				opts.Release = []deploy.Release{v1, v2}[i%2]
				cpuBefore := machineCPU(b, c)
				start := time.Now()
				for _, res := range deploy.Rollout(context.Background(), targets, opts) {
					if res.Status != deploy.HostSucceeded {
						b.Fatalf("%s: %s: %s", res.Host, res.Status, res.Reason)
					}
					sent += res.BytesSent
				}
				took = append(took, time.Since(start))
				cpu += machineCPU(b, c) - cpuBefore
			}
			slices.Sort(took)
			b.ReportMetric(took[len(took)/2].Seconds(), "median-s")
			b.ReportMetric(took[len(took)-1].Seconds(), "slowest-s")
			b.ReportMetric(cpu.Seconds()/float64(len(took)), "cpu-s/op")
			b.ReportMetric(float64(sent), "artifact-bytes-sent")
		})
	}
}

// machineCPU is the CPU time used so far by this process, its waited-for children and every
// host of c.
func machineCPU(b *testing.B, c *sshtest.Cluster) time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatal(err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, h := range c.Hosts() {
		d, err := h.CPU()
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	return total
}
