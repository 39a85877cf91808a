package main

// The figures of issue 2, measured on the real binary as a separate process:
//
//	go test -run '^$' -bench . -benchtime 1x ./cmd/ferry     # one round each
//	go test -run '^$' -bench StartToReady ./cmd/ferry         # more rounds of the quick one

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// BenchmarkStartToReady times process start → first 200 from /readyz, on a new installation
// (migrations, first admin) and on a restart of an existing one.
func BenchmarkStartToReady(b *testing.B) {
	ferryBinary(b)
	for _, d := range storetest.Dialects {
		b.Run(string(d)+"/first", func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				in := newInstance(b, d)
				b.StartTimer()
				srv, err := launchServer(b, in.env)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				srv.stop()
			}
		})
		b.Run(string(d)+"/restart", func(b *testing.B) {
			in := newInstance(b, d)
			startServer(b, in.env).stop()
			b.ResetTimer()
			for range b.N {
				b.StartTimer()
				srv, err := launchServer(b, in.env)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				srv.stop()
			}
		})
	}
}

// BenchmarkIdleRSS reports the resident memory of a ready ferry that has been idle for two seconds.
func BenchmarkIdleRSS(b *testing.B) {
	ferryBinary(b)
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			var total float64
			for range b.N {
				srv := startServer(b, newInstance(b, d).env)
				time.Sleep(2 * time.Second)
				total += float64(rssKiB(b, srv.cmd.Process.Pid)) / 1024
				srv.stop()
			}
			b.ReportMetric(total/float64(b.N), "RSS-MiB")
		})
	}
}

// rssKiB reads VmRSS of a process from /proc.
func rssKiB(tb testing.TB, pid int) int {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				tb.Fatalf("VmRSS %q: %v", v, err)
			}
			return n
		}
	}
	tb.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

const (
	listProjects = 1000
	listDuration = 10 * time.Second
)

// BenchmarkListProjects offers GET /api/v1/projects (1,000 projects, as admin with a token) at a
// fixed rate for 10 seconds, open loop: each request starts at its scheduled time whether or not
// earlier ones have answered, and its latency counts from that time. 200 req/s is the figure
// asked for; 50 req/s shows the latency below saturation.
func BenchmarkListProjects(b *testing.B) {
	ferryBinary(b)
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			in := newInstance(b, d)
			srv := startServer(b, in.env)
			defer srv.stop()
			res := runFerry(b, in.env, "", "token", "add", "admin")
			if res.code != 0 {
				b.Fatalf("ferry token add: %s", res.stderr)
			}
			token := strings.TrimSpace(res.stdout)
			createProjects(b, newClient(b, srv.URL, token), listProjects)
			// One request at a time: what one answer costs, free of queueing.
			b.Run("serial", func(b *testing.B) {
				benchmarkSerial(b, srv.URL+"/api/v1/projects", token)
			})
			for _, rate := range []int{50, 200} {
				b.Run(fmt.Sprintf("%dreq/s", rate), func(b *testing.B) {
					benchmarkPaced(b, srv.URL+"/api/v1/projects", token, rate)
				})
			}
		})
	}
}

// benchmarkSerial sends b.N requests one after another on one connection.
func benchmarkSerial(b *testing.B, url, token string) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	var size int64
	for b.Loop() {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		size, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: status %d, %v", url, resp.StatusCode, err)
		}
	}
	b.ReportMetric(float64(size)/1024, "KiB/answer")
}

// benchmarkPaced runs paced load b.N times and reports the latency quantiles.
func benchmarkPaced(b *testing.B, url, token string, rate int) {
	var all []time.Duration
	var failed int
	for range b.N {
		lat, errs := paced(url, token, rate, listDuration)
		all = append(all, lat...)
		failed += errs
	}
	b.StopTimer()
	if len(all) == 0 {
		b.Fatalf("no request succeeded (%d failed)", failed)
	}
	slices.Sort(all)
	ms := func(q float64) float64 {
		return float64(all[int(q*float64(len(all)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(ms(1), "max-ms")
	b.ReportMetric(float64(failed), "errors")
}

// createProjects adds n projects over the API, eight at a time.
func createProjects(b *testing.B, api *client, n int) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				name := fmt.Sprintf("app-%04d", i)
				api.api(201, "POST", "/api/v1/projects", map[string]any{
					"name": name, "gitlab_path": "bench/" + name, "clone_url": "https://gitlab.example.com/bench/" + name + ".git",
					"trigger": map[string]any{"keyword": "devops", "branches": []string{"main", "release/*"}, "tags": true},
				}, nil)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	var projects []store.Project
	api.api(200, "GET", "/api/v1/projects", nil, &projects)
	if len(projects) != n {
		b.Fatalf("%d projects listed, want %d", len(projects), n)
	}
}

// paced sends GET url at rate per second for d and returns the latencies of the good answers,
// each counted from when its request was due, and how many failed.
func paced(url, token string, rate int, d time.Duration) ([]time.Duration, int) {
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true},
	}
	defer client.CloseIdleConnections()
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		wg.Go(func() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat[i] = time.Since(due)
			ok[i] = err == nil && resp.StatusCode == http.StatusOK
		})
	}
	wg.Wait()
	var good []time.Duration
	for i, l := range lat {
		if ok[i] {
			good = append(good, l)
		}
	}
	return good, n - len(good)
}
