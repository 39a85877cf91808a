package store_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// benchLines is how many lines a benchmark build prints: ten seconds at 50,000 lines/s.
const benchLines = 500_000

func benchText(i int) string {
	return fmt.Sprintf("[INFO] Compiling module orders-service/src/main/java/com/example/Order%06d.java", i)
}

// BenchmarkLogWriter writes 500,000 lines as fast as it can, through a LogWriter on each
// database and to io.Discard. write-ns/line is what a build pays per line; stored-ns/line
// includes Close, that is until every line is in the table.
func BenchmarkLogWriter(b *testing.B) {
	b.Run("discard", func(b *testing.B) {
		for b.Loop() {
			start := time.Now()
			for i := range benchLines {
				fmt.Fprintln(io.Discard, benchText(i))
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/benchLines, "write-ns/line")
		}
	})
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			job := int64(0)
			for b.Loop() {
				job++
				w, err := db.OpenLog(context.Background(), store.JobBuild, job)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for i := range benchLines {
					w.Write("stdout", "", benchText(i))
				}
				wrote := time.Since(start)
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(wrote.Nanoseconds())/benchLines, "write-ns/line")
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/benchLines, "stored-ns/line")
			}
		})
	}
}

// BenchmarkBuildAt50kLinesPerSecond prints 500,000 lines paced at 50,000 lines/s, as a chatty
// build does, and reports how much longer that took than the ideal ten seconds
// (slowdown-%), for io.Discard and a LogWriter on each database; the difference between the
// two is what ferry's logging costs the build.
func BenchmarkBuildAt50kLinesPerSecond(b *testing.B) {
	paced := func(b *testing.B, write func(i int)) {
		const perTick = 500 // lines per 10 ms
		start := time.Now()
		for i := range benchLines {
			if i%perTick == 0 {
				time.Sleep(time.Until(start.Add(time.Duration(i/perTick) * 10 * time.Millisecond)))
			}
			write(i)
		}
		ideal := time.Duration(benchLines/perTick) * 10 * time.Millisecond
		b.ReportMetric(100*float64(time.Since(start)-ideal)/float64(ideal), "slowdown-%")
	}
	b.Run("discard", func(b *testing.B) {
		for b.Loop() {
			paced(b, func(i int) { fmt.Fprintln(io.Discard, benchText(i)) })
		}
	})
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			job := int64(0)
			for b.Loop() {
				job++
				w, err := db.OpenLog(context.Background(), store.JobBuild, job)
				if err != nil {
					b.Fatal(err)
				}
				paced(b, func(i int) { w.Write("stdout", "", benchText(i)) })
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
