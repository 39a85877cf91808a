package deploy_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/deploy/sshtest"
	"ferry/store"
)

// BenchmarkPeakRSSDeploying1GB measures the peak resident memory of this process while it
// deploys a 1 GB artifact to a host: the artifact is streamed, never held in memory. The peak
// (VmHWM) is reset through /proc/self/clear_refs before the deployment, so what the test did
// before does not count.
// Run it with: go test -run '^$' -bench PeakRSS -benchtime 1x ./deploy/
func BenchmarkPeakRSSDeploying1GB(b *testing.B) {
	c := sshtest.Start(b, 1, sshtest.Options{})
	spec := testSpec(store.Strategy{})
	targets := targetsOf(c)
	mustRollout(b, targets, spec, makeRelease(b, "base", artifact{}))
	big := makeRelease(b, "big", artifact{padding: 1 << 30})
	var peak int64
	for i := 0; b.Loop(); i++ {
		rel := big
		rel.Version = "big-" + strconv.Itoa(i)
		resetPeakRSS(b)
		mustRollout(b, targets, spec, rel)
		peak = max(peak, peakRSS(b))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(big.Size)/(1<<20), "artifact-MiB")
}

func resetPeakRSS(tb testing.TB) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		tb.Fatalf("reset the peak RSS: %v", err)
	}
}

// peakRSS returns VmHWM of this process in bytes.
func peakRSS(tb testing.TB) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// BenchmarkFerryOnly100MBTo10Hosts is ferry's half of BenchmarkDeploy100MB with 10 hosts, with the
// rollback to a version already on every host, for when the scp baseline cannot run.
// Run it with: go test -run '^$' -bench FerryOnly -benchtime 1x ./deploy/
func BenchmarkFerryOnly100MBTo10Hosts(b *testing.B) {
	c := sshtest.Start(b, 10, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	targets := targetsOf(c)
	base := makeRelease(b, "base", artifact{})
	mustRollout(b, targets, spec, base)
	big := makeRelease(b, "big", artifact{padding: 100 << 20})
	var deployed, rollback time.Duration
	for i := 0; b.Loop(); i++ {
		rel := big
		rel.Version = "big-" + strconv.Itoa(i)
		start := time.Now()
		mustRollout(b, targets, spec, rel)
		deployed += time.Since(start)
		start = time.Now()
		mustRollout(b, targets, spec, base)
		rollback += time.Since(start)
	}
	b.ReportMetric(deployed.Seconds()/float64(b.N), "ferry-s/op")
	b.ReportMetric(rollback.Seconds()/float64(b.N), "rollback-s/op")
}
