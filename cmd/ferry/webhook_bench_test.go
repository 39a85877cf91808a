package main

// The webhook figure of issue 13, measured on the real binary as a separate process:
//
//	go test -run '^$' -bench WebhookAck -benchtime 1x ./cmd/ferry
//
// docs/benchmarks.md ("Webhook acknowledgement at 200 pushes a second") has the figures and how to read them.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

const (
	hookRate     = 200              // pushes a second, all to one project
	hookDuration = 20 * time.Second // measured
	hookWarmUp   = time.Second      // sent at the same rate before, not counted in the latencies
	hookSecret   = "bench-hook-secret"
)

// BenchmarkWebhookAck offers GitLab push webhooks for one project to `ferry serve` at 200 a
// second for 20 seconds, open loop: each push is sent at its scheduled time whether or not
// earlier ones have been answered, and its latency counts from that time, so a server that
// falls behind is charged for the wait. Every push is a new delivery of a new commit that
// builds. The server runs no build workers, so the builds stay queued and nothing else loads
// the machine. Afterwards it reads the database: every acknowledged delivery must be stored
// as one event with one build, and the builds' numbers must be distinct (gaps are reported).
// It also reports the CPU time ferry (and PostgreSQL's backends) spent per push, which the
// load of the rest of the machine sways less than the latencies.
// With -benchtime Nx it runs N rounds on one server and reports the latencies of all of them.
func BenchmarkWebhookAck(b *testing.B) {
	ferryBinary(b)
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			in := newInstance(b, d)
			in.env = append(in.env, "FERRY_BUILD_WORKERS=0")
			srv := startServer(b, in.env)
			defer srv.stop()
			res := runFerry(b, in.env, "", "token", "add", "admin")
			if res.code != 0 {
				b.Fatalf("ferry token add: %s", res.stderr)
			}
			api := newClient(b, srv.URL, strings.TrimSpace(res.stdout))
			api.api(201, "POST", "/api/v1/projects", map[string]any{
				"name": "app", "gitlab_path": "bench/app", "clone_url": "https://gitlab.example.com/bench/app.git",
				"webhook_secret": hookSecret, "trigger": map[string]any{"keyword": "devops", "branches": []string{"main"}},
			}, nil)
			push := newPushes(b)
			var all []time.Duration
			acked, failed := 0, 0
			var cpuServer, cpuDatabase time.Duration
			var pg pgCounters
			for round := range b.N {
				warm := push.offer(srv.URL, hookRate, hookWarmUp)
				before := cpuOf(b, in, d, srv)
				pgBefore := countersOf(b, in, d)
				floor := probeCommits(b, in, d)
				r := push.offer(srv.URL, hookRate, hookDuration)
				commits := floor()
				pg = pg.add(countersOf(b, in, d).sub(pgBefore))
				after := cpuOf(b, in, d, srv)
				cpuServer += after.server - before.server
				cpuDatabase += after.database - before.database
				acked += warm.acked() + r.acked()
				failed += len(warm.errs) + len(r.errs)
				lat := r.latencies()
				all = append(all, lat...)
				b.Logf("round %d: %s; sender late p99 %.1f ms; %d failed %v", round+1, quantiles(lat), ms(quantile(r.late, 0.99)), len(r.errs), firstErrs(r.errs))
				if len(commits) > 0 {
					b.Logf("round %d: a lone INSERT committed meanwhile: %s", round+1, quantiles(commits))
				}
			}
			b.StopTimer()
			if len(all) == 0 {
				b.Fatalf("no webhook was acknowledged (%d failed)", failed)
			}
			slices.Sort(all)
			b.ReportMetric(ms(quantile(all, 0.50)), "p50-ms")
			b.ReportMetric(ms(quantile(all, 0.90)), "p90-ms")
			b.ReportMetric(ms(quantile(all, 0.99)), "p99-ms")
			b.ReportMetric(ms(quantile(all, 1)), "max-ms")
			b.ReportMetric(float64(failed), "errors")
			pushed := float64(b.N) * hookDuration.Seconds() * hookRate
			b.ReportMetric(float64(cpuServer.Microseconds())/pushed, "ferry-CPU-µs/push")
			if d == store.Postgres {
				b.ReportMetric(float64(cpuDatabase.Microseconds())/pushed, "postgres-CPU-µs/push")
				b.ReportMetric(float64(pg.sessions), "pg-connections-opened")
				b.ReportMetric(float64(pg.walSyncs)/pushed, "wal-flushes/push")
			}
			stored := countStored(b, in, d)
			b.ReportMetric(float64(stored.events), "events-stored")
			// A push the sender gave up on may still have been stored; an acknowledged one must be.
			if stored.events < acked || stored.builds != stored.events || stored.distinct != stored.builds {
				b.Errorf("%d webhooks acknowledged, but %d events and %d builds (%d distinct numbers) stored", acked, stored.events, stored.builds, stored.distinct)
			}
			if gaps := stored.last - stored.builds; gaps != 0 {
				b.Logf("build numbers 1..%d have %d gaps", stored.last, gaps)
			}
		})
	}
}

// pushes sends push webhooks, each a new delivery of a new commit.
type pushes struct {
	template map[string]any
	client   *http.Client
	sent     int
}

func newPushes(tb testing.TB) *pushes {
	raw, err := os.ReadFile("../../testdata/gitlab/push.json")
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		tb.Fatal(err)
	}
	m["ref"] = "refs/heads/main"
	m["project"].(map[string]any)["path_with_namespace"] = "bench/app"
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true},
	}
	tb.Cleanup(client.CloseIdleConnections)
	return &pushes{template: m, client: client}
}

// body returns the n-th push: a new commit whose message holds the trigger's keyword.
func (p *pushes) body(n int) []byte {
	sha := fmt.Sprintf("%040x", n+1)
	p.template["after"], p.template["checkout_sha"] = sha, sha
	commits := p.template["commits"].([]any)
	head := commits[len(commits)-1].(map[string]any)
	head["id"], head["message"], head["title"] = sha, fmt.Sprintf("change %d devops", n), fmt.Sprintf("change %d devops", n)
	out, _ := json.Marshal(p.template)
	return out
}

// offerResult is what one paced run saw: per push, its latency from when it was due (valid
// where ok), how late the sender started it, and the failures.
type offerResult struct {
	lat  []time.Duration
	ok   []bool
	late []time.Duration
	errs []string
}

func (r *offerResult) acked() int {
	n := 0
	for _, ok := range r.ok {
		if ok {
			n++
		}
	}
	return n
}

func (r *offerResult) latencies() []time.Duration {
	var out []time.Duration
	for i, l := range r.lat {
		if r.ok[i] {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// offer sends pushes at rate per second for d, open loop. The bodies are made before the clock
// starts, so the sender does little more than start requests.
func (p *pushes) offer(base string, rate int, d time.Duration) *offerResult {
	n := int(d.Seconds() * float64(rate))
	bodies := make([][]byte, n)
	for i := range n {
		bodies[i] = p.body(p.sent + i)
	}
	first := p.sent
	p.sent += n
	r := &offerResult{lat: make([]time.Duration, n), ok: make([]bool, n), late: make([]time.Duration, n)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		r.late[i] = time.Since(due)
		wg.Go(func() {
			err := p.send(base, fmt.Sprintf("bench-delivery-%d", first+i), bodies[i])
			r.lat[i] = time.Since(due)
			r.ok[i] = err == nil
			if err != nil {
				mu.Lock()
				r.errs = append(r.errs, err.Error())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(r.late)
	return r
}

// send delivers one push as GitLab does and checks that ferry queued a build for it.
func (p *pushes) send(base, delivery string, body []byte) error {
	req, _ := http.NewRequest("POST", base+"/hooks/gitlab", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", hookSecret)
	req.Header.Set("X-Gitlab-Event-UUID", delivery)
	req.Header.Set("Idempotency-Key", delivery)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var a struct {
		Build     int64 `json:"build"`
		Duplicate bool  `json:"duplicate"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(answer, &a) != nil || a.Build == 0 || a.Duplicate {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, answer)
	}
	return nil
}

// storedCounts is what the database holds after a run.
type storedCounts struct {
	events, builds, distinct, last int
}

// openDatabase opens the database of an instance beside its server.
func openDatabase(tb testing.TB, in instance, d store.Dialect) *sqlx.DB {
	tb.Helper()
	driver, dsn := "sqlite", "file:"+filepath.Join(in.dataDir, "ferry.db")+"?_pragma=busy_timeout(10000)"
	if d == store.Postgres {
		driver = "postgres"
		for _, kv := range in.env {
			if u, ok := strings.CutPrefix(kv, "FERRY_DATABASE_URL="); ok {
				dsn = u
			}
		}
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// countStored reads the events and builds of the benchmark's project straight from the database.
func countStored(tb testing.TB, in instance, d store.Dialect) storedCounts {
	tb.Helper()
	db := openDatabase(tb, in, d)
	defer db.Close()
	var c storedCounts
	err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM events e JOIN projects p ON p.id = e.project_id WHERE p.name = 'app'),
		COUNT(*), COUNT(DISTINCT b.number), COALESCE(MAX(b.number), 0) FROM builds b JOIN projects p ON p.id = b.project_id WHERE p.name = 'app'`).
		Scan(&c.events, &c.builds, &c.distinct, &c.last)
	if err != nil {
		tb.Fatalf("count stored events and builds: %v", err)
	}
	return c
}

// cpuTimes is the CPU time used so far by the ferry process and by the PostgreSQL backends
// serving its database.
type cpuTimes struct {
	server, database time.Duration
}

func cpuOf(tb testing.TB, in instance, d store.Dialect, srv *server) cpuTimes {
	tb.Helper()
	t := cpuTimes{server: processCPU(tb, srv.cmd.Process.Pid)}
	if d != store.Postgres {
		return t
	}
	db := openDatabase(tb, in, d)
	defer db.Close()
	var pids []int
	if err := db.Select(&pids, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		tb.Fatalf("list PostgreSQL backends: %v", err)
	}
	for _, pid := range pids {
		t.database += processCPU(tb, pid)
	}
	return t
}

// processCPU reads the user and system CPU time of a process from /proc (0 once it is gone).
func processCPU(tb testing.TB, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	var user, system int64
	if _, err := fmt.Sscan(fields[11]+" "+fields[12], &user, &system); err != nil {
		tb.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(user+system) * tick
}

// pgCounters are PostgreSQL's counts of the connections opened to the benchmark's database and
// of the WAL flushes of the whole server (pg_stat_wal counts them for every database, so other
// work on the server adds to them: read them on a quiet one). Fewer flushes than pushes means
// that commits shared flushes.
type pgCounters struct {
	sessions, walSyncs int64
}

func (c pgCounters) sub(o pgCounters) pgCounters {
	return pgCounters{c.sessions - o.sessions, c.walSyncs - o.walSyncs}
}

func (c pgCounters) add(o pgCounters) pgCounters {
	return pgCounters{c.sessions + o.sessions, c.walSyncs + o.walSyncs}
}

// countersOf reads pgCounters on PostgreSQL (zero on SQLite). They are as exact as
// PostgreSQL's statistics, which backends report within a second or so; the difference of two
// reads also counts the connections of the commit probe and of the second read.
func countersOf(tb testing.TB, in instance, d store.Dialect) pgCounters {
	tb.Helper()
	if d != store.Postgres {
		return pgCounters{}
	}
	db := openDatabase(tb, in, d)
	defer db.Close()
	var c pgCounters
	err := db.QueryRow(`SELECT (SELECT sessions FROM pg_stat_database WHERE datname = current_database()),
		(SELECT wal_sync FROM pg_stat_wal)`).Scan(&c.sessions, &c.walSyncs)
	if err != nil {
		tb.Fatalf("read PostgreSQL statistics: %v", err)
	}
	return c
}

// probeCommits, on PostgreSQL, commits a one-row INSERT in a table of its own every 50 ms
// until the returned function is called, which returns how long each commit took, sorted. It
// shows what one synchronous commit costs on the machine while the benchmark runs: no answer
// that waits for its WAL flush can be quicker. On SQLite it does nothing.
func probeCommits(tb testing.TB, in instance, d store.Dialect) func() []time.Duration {
	if d != store.Postgres {
		return func() []time.Duration { return nil }
	}
	db := openDatabase(tb, in, d)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS bench_commit_probe (at TIMESTAMPTZ NOT NULL)`); err != nil {
		tb.Fatalf("create probe table: %v", err)
	}
	stop := make(chan struct{})
	done := make(chan []time.Duration)
	go func() {
		defer db.Close()
		var took []time.Duration
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				slices.Sort(took)
				done <- took
				return
			case <-tick.C:
				start := time.Now()
				if _, err := db.Exec(`INSERT INTO bench_commit_probe (at) VALUES (now())`); err == nil {
					took = append(took, time.Since(start))
				}
			}
		}
	}()
	return func() []time.Duration {
		close(stop)
		return <-done
	}
}

// quantile returns the q-quantile of sorted durations (0 for none).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantiles formats p50, p90, p99 and max of sorted durations.
func quantiles(sorted []time.Duration) string {
	return fmt.Sprintf("p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (%d answers)",
		ms(quantile(sorted, 0.5)), ms(quantile(sorted, 0.9)), ms(quantile(sorted, 0.99)), ms(quantile(sorted, 1)), len(sorted))
}

func firstErrs(errs []string) []string {
	return errs[:min(len(errs), 3)]
}
