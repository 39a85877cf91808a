package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
)

// How the log writer batches. The first line after a quiet spell is stored at once, so a
// viewer sees it within milliseconds; while lines keep coming they are stored at most every
// logFlushEvery, or as soon as a batch is full. When the database falls behind by
// logBufferMax lines, Write waits for the flusher (backpressure) instead of dropping lines or
// growing without bound.
const (
	logFlushEvery = 50 * time.Millisecond
	logBatchLines = 1000
	logBufferMax  = 100_000
	// logInsertRows is the rows per SQLite INSERT statement.
	logInsertRows = 1000
	// LogLineMax is the longest line text kept, in bytes; a longer one is cut with a marker.
	LogLineMax = 64 << 10
	// logCloseTimeout bounds how long Close keeps trying to store the last lines.
	logCloseTimeout = 30 * time.Second
)

// LogWriter appends lines to one job's log in batches. Write never blocks on the database for
// long: lines are buffered and flushed at once after a quiet spell, then at most every 50 ms
// or every 1,000 lines, and by Close.
// Seq numbers continue after the last stored line, so a job taken over keeps one log.
//
// When the database cannot keep up and 100,000 lines wait, Write blocks until the flusher has
// taken them: a job is slowed rather than losing lines.
type LogWriter struct {
	db    *DB
	kind  string
	jobID int64

	mu     sync.Mutex
	room   *sync.Cond // signalled when the flusher takes the buffer
	seq    int64      // last seq handed out
	buf    []LogLine
	closed bool
	err    error // last failure to store, cleared by a later success

	flushMu sync.Mutex // one store at a time, so batches are stored and published in order
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// OpenLog returns a writer for a job's log; kind is JobBuild or JobDeployment. It fails with
// EINVALID for another kind and with the database's error when it cannot read the last seq.
func (db *DB) OpenLog(ctx context.Context, kind string, jobID int64) (*LogWriter, error) {
	if err := validLogKind(kind); err != nil {
		return nil, err
	}
	last, err := db.lastLogSeq(ctx, db.db, kind, jobID)
	if err != nil {
		return nil, fmt.Errorf("open %s %d log: %w", kind, jobID, err)
	}
	w := &LogWriter{
		db: db, kind: kind, jobID: jobID, seq: last,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	w.room = sync.NewCond(&w.mu)
	go w.run()
	return w, nil
}

func validLogKind(kind string) error {
	if kind != JobBuild && kind != JobDeployment && kind != JobRunLog {
		return Errorf(EINVALID, "log kind %q: want %s, %s or %s", kind, JobBuild, JobDeployment, JobRunLog)
	}
	return nil
}

func (db *DB) lastLogSeq(ctx context.Context, q queryer, kind string, jobID int64) (int64, error) {
	var last int64
	err := q.GetContext(ctx, &last, db.q(`SELECT COALESCE(MAX(seq), 0) FROM log_lines WHERE job_kind = ? AND job_id = ?`), kind, jobID)
	return last, err
}

// Write adds a line; host is "" for a build. It is safe for concurrent use. Text that is not
// valid UTF-8 is repaired, NUL bytes are dropped, and text longer than LogLineMax is cut with
// a marker. Lines written after Close are ignored.
func (w *LogWriter) Write(stream, host, text string) {
	text = cleanLogText(text)
	at := w.db.now()
	w.mu.Lock()
	for len(w.buf) >= logBufferMax && !w.closed {
		w.kickFlusher()
		w.room.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.seq++
	w.buf = append(w.buf, LogLine{Seq: w.seq, At: at, Stream: stream, Host: host, Text: text})
	first, full := len(w.buf) == 1, len(w.buf) >= logBatchLines
	w.mu.Unlock()
	if first || full {
		w.kickFlusher()
	}
}

func (w *LogWriter) kickFlusher() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// cleanLogText makes text storable in a PostgreSQL TEXT column and bounded in size.
func cleanLogText(text string) string {
	if strings.IndexByte(text, 0) >= 0 {
		text = strings.ReplaceAll(text, "\x00", "")
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	if len(text) > LogLineMax {
		cut := LogLineMax
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = fmt.Sprintf("%s … [line cut: %d bytes in all]", text[:cut], len(text))
	}
	return text
}

// run stores the buffer until Close: every logFlushEvery, and when Write kicks it, at once if
// the batch is full or the last store is logFlushEvery ago (a line after a quiet spell);
// otherwise the next tick stores it.
func (w *LogWriter) run() {
	defer close(w.done)
	t := time.NewTicker(logFlushEvery)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		case <-w.kick:
			if time.Since(last) < logFlushEvery && !w.full() {
				continue
			}
		}
		if n, _ := w.flush(context.Background()); n > 0 {
			last = time.Now()
		}
	}
}

func (w *LogWriter) full() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.buf) >= logBatchLines
}

// Flush stores buffered lines now and publishes them to subscribers. On failure the lines
// stay buffered for the next try and the error is returned.
func (w *LogWriter) Flush(ctx context.Context) error {
	_, err := w.flush(ctx)
	return err
}

// flush is Flush that also says how many lines it stored.
func (w *LogWriter) flush(ctx context.Context) (int, error) {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	batch := w.buf
	w.buf = nil
	w.room.Broadcast()
	w.mu.Unlock()
	if len(batch) == 0 {
		return 0, nil
	}
	err := w.store(ctx, batch)
	if err != nil && isUniqueViolation(err) {
		// Someone else wrote to this log (a reaper's note, a worker that lost its lease):
		// number our lines after theirs and try once more.
		if err = w.renumber(ctx, batch); err == nil {
			err = w.store(ctx, batch)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.buf = append(batch, w.buf...)
		w.err = err
		return 0, err
	}
	w.err = nil
	return len(batch), nil
}

// store inserts batch in one transaction and publishes it once committed.
func (w *LogWriter) store(ctx context.Context, batch []LogLine) error {
	last := batch[len(batch)-1].Seq
	err := w.db.Transact(ctx, func(tx *sqlx.Tx) error {
		if err := w.db.insertLogLines(ctx, tx, w.kind, w.jobID, batch); err != nil {
			return err
		}
		return w.db.logs.notify(ctx, w.db, tx, w.kind, w.jobID, last)
	})
	if err != nil {
		return fmt.Errorf("store %d lines of %s %d log: %w", len(batch), w.kind, w.jobID, err)
	}
	w.db.logs.publish(w.kind, w.jobID, batch)
	return nil
}

// renumber gives batch, and the lines buffered since, seqs after the last stored one.
func (w *LogWriter) renumber(ctx context.Context, batch []LogLine) error {
	last, err := w.db.lastLogSeq(ctx, w.db.db, w.kind, w.jobID)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range batch {
		last++
		batch[i].Seq = last
	}
	for i := range w.buf {
		last++
		w.buf[i].Seq = last
	}
	w.seq = last
	return nil
}

// insertLogLines stores lines in tx: with COPY on PostgreSQL, else with multi-row INSERTs of
// logInsertRows rows (7 parameters a row stays far below SQLite's 32,766).
func (db *DB) insertLogLines(ctx context.Context, tx *sqlx.Tx, kind string, jobID int64, lines []LogLine) error {
	if db.dialect == Postgres {
		return copyLogLines(ctx, tx, kind, jobID, lines)
	}
	for start := 0; start < len(lines); start += logInsertRows {
		chunk := lines[start:min(start+logInsertRows, len(lines))]
		var b strings.Builder
		b.WriteString(`INSERT INTO log_lines (job_kind, job_id, seq, at, stream, host, text) VALUES `)
		args := make([]any, 0, len(chunk)*7)
		for i, l := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,?,?,?,?,?)")
			args = append(args, kind, jobID, l.Seq, l.At, l.Stream, l.Host, l.Text)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

func copyLogLines(ctx context.Context, tx *sqlx.Tx, kind string, jobID int64, lines []LogLine) error {
	stmt, err := tx.PrepareContext(ctx, `COPY log_lines (job_kind, job_id, seq, at, stream, host, text) FROM STDIN`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, l := range lines {
		if _, err := stmt.ExecContext(ctx, kind, jobID, l.Seq, l.At, l.Stream, l.Host, l.Text); err != nil {
			return err
		}
	}
	_, err = stmt.ExecContext(ctx) // ends the COPY
	return err
}

// Close flushes and ends the writer, then publishes the end of the log to its viewers in every
// process (LogSubscription.Ended). It keeps trying to store the last lines for up to 30
// seconds and returns the error if they could not be stored. A worker closes a job's log
// before it records the job's end, so a viewer that sees the end has seen every line.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.err
	}
	w.closed = true
	w.room.Broadcast()
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	ctx, cancel := context.WithTimeout(context.Background(), logCloseTimeout)
	defer cancel()
	err := w.flushAll(ctx)
	// The end of the log: viewers stop at once instead of waiting to see nothing more come.
	if eerr := w.db.logs.end(ctx, w.db, w.kind, w.jobID); err == nil && eerr != nil {
		err = fmt.Errorf("publish the end of %s %d log: %w", w.kind, w.jobID, eerr)
	}
	return err
}

// flushAll stores what is buffered, trying again until ctx ends.
func (w *LogWriter) flushAll(ctx context.Context) error {
	for {
		err := w.Flush(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ReadLog returns up to limit lines of a job's log with seq > after, in order; host, when not
// "", keeps only that host's lines. limit 0 means 1,000 (and more than 10,000 means 10,000).
// It returns an empty slice when there are no such lines.
func (db *DB) ReadLog(ctx context.Context, kind string, jobID, after int64, host string, limit int) ([]LogLine, error) {
	if err := validLogKind(kind); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, 10_000)
	query := `SELECT seq, at, stream, host, text FROM log_lines WHERE job_kind = ? AND job_id = ? AND seq > ?`
	args := []any{kind, jobID, after}
	if host != "" {
		query += ` AND host = ?`
		args = append(args, host)
	}
	query += ` ORDER BY seq LIMIT ?`
	args = append(args, limit)
	lines := []LogLine{}
	if err := db.db.SelectContext(ctx, &lines, db.q(query), args...); err != nil {
		return nil, fmt.Errorf("read %s %d log: %w", kind, jobID, err)
	}
	for i := range lines {
		lines[i].At = lines[i].At.UTC()
	}
	return lines, nil
}

// AppendLogLine adds one line from ferry to a job's log after its writer closed, such as the
// answer of a call made after the job ended (GitLab's to a tag). Viewers that saw the end of
// the log do not get it; a later read does. It fails with EINVALID for an unknown kind.
func (db *DB) AppendLogLine(ctx context.Context, kind string, jobID int64, text string) error {
	if err := validLogKind(kind); err != nil {
		return err
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error { return db.addLogLine(ctx, tx, kind, jobID, "", cleanLogText(text)) })
}
