package handlers_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// BenchmarkLogStreamLatency measures line-to-viewer latency with 100 WebSocket viewers of one
// running build: each line carries the time it was written, and every viewer notes when it
// arrived. Lines are written at 1,000 a second (a busy build: batches every 50 ms) and at 5 a
// second (a deployment's steps: each line is stored as it comes).
func BenchmarkLogStreamLatency(b *testing.B) {
	rates := []struct {
		name  string
		every time.Duration
		lines int // per b.N
	}{{"1000-lines/s", time.Millisecond, 100}, {"5-lines/s", 200 * time.Millisecond, 10}}
	for _, d := range storetest.Dialects {
		for _, rate := range rates {
			b.Run(string(d)+"/"+rate.name, func(b *testing.B) {
				db := storetest.Open(b, d)
				s := newStreamServer(b, db)
				id := s.jobs.build.ID
				path := fmt.Sprintf("/api/v1/builds/%d/log/stream", id)
				const viewers = 100
				var mu sync.Mutex
				var lat []time.Duration
				var wg sync.WaitGroup
				lines := b.N * rate.lines
				for range viewers {
					conn := s.mustDial(b, path, s.member)
					wg.Add(1)
					go func() {
						defer wg.Done()
						got := 0
						for got < lines {
							var m streamMsg
							conn.SetReadDeadline(time.Now().Add(time.Minute))
							if err := conn.ReadJSON(&m); err != nil {
								b.Errorf("viewer: %v after %d lines", err, got)
								return
							}
							now := time.Now()
							mu.Lock()
							for _, l := range m.Lines {
								sent, _ := strconv.ParseInt(strings.Fields(l.Text)[0], 10, 64)
								lat = append(lat, now.Sub(time.Unix(0, sent)))
							}
							mu.Unlock()
							got += len(m.Lines)
						}
					}()
				}
				w, err := db.OpenLog(context.Background(), store.JobBuild, id)
				must(b, err)
				b.ResetTimer()
				for i := range lines {
					w.Write("stdout", "", fmt.Sprintf("%d line %d", time.Now().UnixNano(), i))
					time.Sleep(rate.every)
				}
				must(b, w.Close())
				wg.Wait()
				b.StopTimer()
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				if len(lat) == 0 {
					b.Fatal("no lines arrived")
				}
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}

// BenchmarkIdleViewersMemory opens 1,000 WebSocket viewers of one running build that prints
// nothing, and reports the growth of the Go heap and of the process's resident memory. Client
// and server run in this one process, so the figures hold both ends.
func BenchmarkIdleViewersMemory(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			s := newStreamServer(b, db)
			path := fmt.Sprintf("/api/v1/builds/%d/log/stream", s.jobs.build.ID)
			for b.Loop() {
				heap0, rss0 := memNow()
				for range 1000 {
					s.mustDial(b, path, s.member)
				}
				time.Sleep(time.Second) // let every stream subscribe
				heap1, rss1 := memNow()
				b.ReportMetric(float64(heap1-heap0)/1000/1024, "heap-KiB/viewer")
				b.ReportMetric(float64(rss1-rss0)/1000/1024, "rss-KiB/viewer")
				b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
			}
		})
	}
}

func memNow() (heap, rss int64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb * 1024
		}
	}
	return int64(m.HeapAlloc), rss
}
