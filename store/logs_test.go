package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

// MustOpenLog opens a job's log writer, closed when tb ends.
func MustOpenLog(tb testing.TB, db *store.DB, kind string, id int64) *store.LogWriter {
	tb.Helper()
	w, err := db.OpenLog(context.Background(), kind, id)
	if err != nil {
		tb.Fatalf("open %s %d log: %v", kind, id, err)
	}
	tb.Cleanup(func() { w.Close() })
	return w
}

// readAll reads a whole log (or one host's part of it).
func readAll(tb testing.TB, db *store.DB, kind string, id int64, host string) []store.LogLine {
	tb.Helper()
	var all []store.LogLine
	after := int64(0)
	for {
		lines, err := db.ReadLog(context.Background(), kind, id, after, host, 0)
		if err != nil {
			tb.Fatalf("read %s %d log: %v", kind, id, err)
		}
		if len(lines) == 0 {
			return all
		}
		all = append(all, lines...)
		after = lines[len(lines)-1].Seq
	}
}

// collect reads from sub until it has n lines, checking that they come in seq order without a
// gap or a repeat after after, and fails after a minute.
func collect(tb testing.TB, sub *store.LogSubscription, after int64, n int) []store.LogLine {
	tb.Helper()
	var got []store.LogLine
	timeout := time.After(time.Minute)
	for len(got) < n {
		select {
		case lines, ok := <-sub.C:
			if !ok {
				tb.Fatalf("subscription ended after %d of %d lines", len(got), n)
			}
			for _, l := range lines {
				if l.Seq != after+1 {
					tb.Fatalf("line seq %d after %d: a gap or a repeat", l.Seq, after)
				}
				after = l.Seq
				got = append(got, l)
			}
		case <-timeout:
			tb.Fatalf("got %d of %d lines within a minute", len(got), n)
		}
	}
	return got
}

func TestLogWriterStoresLinesInOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := MustOpenLog(t, db, store.JobDeployment, 7)
		for i := 1; i <= 2500; i++ {
			w.Write("stdout", fmt.Sprintf("web%d", i%2+1), fmt.Sprintf("line %d", i))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		all := readAll(t, db, store.JobDeployment, 7, "")
		if len(all) != 2500 {
			t.Fatalf("stored %d lines, want 2500", len(all))
		}
		for i, l := range all {
			if l.Seq != int64(i+1) || l.Text != fmt.Sprintf("line %d", i+1) || l.Stream != "stdout" || l.At.IsZero() {
				t.Fatalf("line %d is %+v", i+1, l)
			}
		}
		web1 := readAll(t, db, store.JobDeployment, 7, "web1")
		if len(web1) != 1250 || web1[0].Host != "web1" || web1[0].Seq != 2 {
			t.Errorf("host web1 has %d lines starting %+v, want 1250 from seq 2", len(web1), web1[0])
		}
		page, err := db.ReadLog(ctx, store.JobDeployment, 7, 2490, "", 5)
		if err != nil || len(page) != 5 || page[0].Seq != 2491 {
			t.Errorf("ReadLog(after 2490, limit 5) = %d lines from %+v, %v", len(page), page, err)
		}
		if other := readAll(t, db, store.JobBuild, 7, ""); len(other) != 0 {
			t.Errorf("build 7 shares deployment 7's log: %d lines", len(other))
		}

		// A writer opened later (a job taken over) continues the numbering.
		w2 := MustOpenLog(t, db, store.JobDeployment, 7)
		w2.Write("ferry", "", "taken over")
		logsNoErr(t, w2.Close())
		all = readAll(t, db, store.JobDeployment, 7, "")
		if last := all[len(all)-1]; last.Seq != 2501 || last.Text != "taken over" {
			t.Errorf("after reopening, the last line is %+v, want seq 2501", last)
		}
	})
}

func TestLogWriterFlushesWithoutClose(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := MustOpenLog(t, db, store.JobBuild, 1)
		w.Write("stdout", "", "hello")
		storetest.WaitFor(t, 10*time.Second, "a line written to be stored without Close", func() bool {
			return len(readAll(t, db, store.JobBuild, 1, "")) > 0
		})
	})
}

func TestLogWriterRepairsText(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := MustOpenLog(t, db, store.JobBuild, 2)
		w.Write("stdout", "", "bad \xff\xfe bytes and a NUL\x00 here")
		w.Write("stderr", "", strings.Repeat("é", store.LogLineMax)) // 2 bytes a rune: cut mid-way
		logsNoErr(t, w.Close())
		all := readAll(t, db, store.JobBuild, 2, "")
		if len(all) != 2 {
			t.Fatalf("stored %d lines, want 2", len(all))
		}
		if want := "bad \ufffd bytes and a NUL here"; all[0].Text != want {
			t.Errorf("repaired text %q, want %q", all[0].Text, want)
		}
		long := all[1].Text
		if !utf8.ValidString(long) || len(long) > store.LogLineMax+100 || !strings.Contains(long, "[line cut: 131072 bytes in all]") {
			t.Errorf("long line stored as %d bytes ending %q", len(long), long[len(long)-60:])
		}
	})
}

func TestOpenLogRefusesUnknownKind(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		if _, err := db.OpenLog(context.Background(), "release", 1); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("OpenLog(release) = %v, want EINVALID", err)
		}
		if _, err := db.ReadLog(context.Background(), "", 1, 0, "", 0); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("ReadLog(\"\") = %v, want EINVALID", err)
		}
	})
}

func TestConcurrentWritersKeepOneSequence(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := MustOpenLog(t, db, store.JobDeployment, 3)
		done := make(chan struct{})
		for h := range 4 {
			go func() {
				defer func() { done <- struct{}{} }()
				for i := range 3000 {
					w.Write("stdout", fmt.Sprintf("h%d", h), fmt.Sprintf("%d", i))
				}
			}()
		}
		for range 4 {
			<-done
		}
		logsNoErr(t, w.Close())
		all := readAll(t, db, store.JobDeployment, 3, "")
		if len(all) != 12000 {
			t.Fatalf("stored %d lines, want 12000", len(all))
		}
		next := map[string]int{}
		for i, l := range all {
			if l.Seq != int64(i+1) {
				t.Fatalf("line %d has seq %d", i+1, l.Seq)
			}
			if l.Text != fmt.Sprint(next[l.Host]) {
				t.Fatalf("host %s line %q out of order, want %d", l.Host, l.Text, next[l.Host])
			}
			next[l.Host]++
		}
	})
}

func TestSubscriberGetsStoredThenLiveLines(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := MustOpenLog(t, db, store.JobBuild, 5)
		for i := range 1500 {
			w.Write("stdout", "", fmt.Sprint("before ", i))
		}
		logsNoErr(t, w.Flush(ctx))
		sub, err := db.SubscribeLog(ctx, store.JobBuild, 5, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := collect(t, sub, 100, 1400)
		if got[0].Text != "before 100" {
			t.Errorf("first line after seq 100 is %q", got[0].Text)
		}
		for i := range 3000 {
			w.Write("stdout", "", fmt.Sprint("live ", i))
		}
		got = collect(t, sub, 1500, 3000)
		if got[2999].Text != "live 2999" {
			t.Errorf("last live line is %q", got[2999].Text)
		}
		sub.Close()
		if _, ok := <-sub.C; ok {
			t.Error("C still open after Close")
		}
	})
}

func TestSlowSubscriberDoesNotBlockTheWriter(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sub, err := db.SubscribeLog(ctx, store.JobBuild, 9, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Nobody reads sub while 50,000 lines are written: the writer must still finish.
		w := MustOpenLog(t, db, store.JobBuild, 9)
		for i := range 50_000 {
			w.Write("stdout", "", fmt.Sprint(i))
		}
		logsNoErr(t, w.Close())
		got := collect(t, sub, 0, 50_000)
		if got[49_999].Text != "49999" {
			t.Errorf("last line %q", got[49_999].Text)
		}
		if !sub.Lagging() {
			t.Error("a subscriber 50,000 lines behind is not marked lagging")
		}
	})
}

// TestSubscriberSeesAnotherProcess opens the same PostgreSQL database twice, as two ferry
// processes would, and kills the listener's connection halfway.
func TestSubscriberSeesAnotherProcess(t *testing.T) {
	u := storetest.URL(t, store.Postgres)
	writerDB, viewerDB := storetest.OpenURL(t, u), storetest.OpenURL(t, u)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := viewerDB.SubscribeLog(ctx, store.JobDeployment, 11, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := MustOpenLog(t, writerDB, store.JobDeployment, 11)
	for i := range 5000 {
		w.Write("stdout", "web1", fmt.Sprint("first ", i))
	}
	collect(t, sub, 0, 5000)

	// Kill the viewer's listener, then write at once: the notifications sent while it is away
	// are lost, and the re-read after its reconnect must bring the lines anyway.
	if killed := mustKillListeners(t, u); killed != 1 {
		t.Fatalf("killed %d listener connections, want 1", killed)
	}
	for i := range 3000 {
		w.Write("stdout", "web1", fmt.Sprint("second ", i))
	}
	logsNoErr(t, w.Flush(ctx))
	got := collect(t, sub, 5000, 3000)
	if got[2999].Text != "second 2999" {
		t.Errorf("last line %q", got[2999].Text)
	}
	// And the listener works again.
	w.Write("stdout", "web1", "after reconnect")
	got = collect(t, sub, 8000, 1)
	if got[0].Text != "after reconnect" {
		t.Errorf("line %q", got[0].Text)
	}
}

// mustKillListeners ends the LISTEN connections to the database at u, as a network fault or an
// administrator would, and returns how many it ended.
func mustKillListeners(t *testing.T, u string) int {
	t.Helper()
	admin, err := sqlx.Open("postgres", u)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var n int
	err = admin.Get(&n, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN%' AND datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func logsNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
