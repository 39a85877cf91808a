package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// logChannel is the PostgreSQL NOTIFY channel of stored log batches. A payload is
// "<kind>:<job id>:<last seq>:<origin>"; subscribers re-read the table, so the payload stays
// small. The origin names the hub that stored the lines: a hub ignores its own notices, since
// it has already handed those lines to its subscribers (without this, every viewer in the
// writing process would re-read the table for every batch).
const logChannel = "ferry_logs"

// How subscriptions buffer. A subscriber that falls this many lines behind forgets them and
// reads them from the table when it catches up, so the writer never waits for it.
const (
	subPendingMax  = 10_000
	subReadPage    = 1000
	subRetryPeriod = time.Second
)

// logHub fans stored log lines out to subscribers: in this process directly from the writer,
// and on PostgreSQL from other processes through LISTEN/NOTIFY. The zero value is ready; the
// listener starts with the first subscription.
type logHub struct {
	dsn    string // set by Open; the listener's own connection
	origin string // set by Open; tells this hub's notices from other processes'

	mu       sync.Mutex
	subs     map[logKey]map[*LogSubscription]struct{}
	listener *pq.Listener
	ready    chan struct{} // closed once the listener listens
	stop     chan struct{}
	stopped  chan struct{}
	closed   bool
}

type logKey struct {
	kind  string
	jobID int64
}

// notify tells other processes, inside the transaction that stores the lines, that a job's
// log now reaches seq last. PostgreSQL delivers it at commit.
func (h *logHub) notify(ctx context.Context, db *DB, tx *sqlx.Tx, kind string, jobID, last int64) error {
	if db.dialect != Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, logChannel, fmt.Sprintf("%s:%d:%d:%s", kind, jobID, last, h.origin))
	return err
}

// publish hands stored lines to this process's subscribers of the job. It never blocks on a
// subscriber.
func (h *logHub) publish(kind string, jobID int64, lines []LogLine) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[logKey{kind, jobID}] {
		s.offer(lines)
	}
}

// dispatch handles a NOTIFY payload from any process but its own.
func (h *logHub) dispatch(payload string) {
	kind, rest, ok := strings.Cut(payload, ":")
	idText, rest, ok2 := strings.Cut(rest, ":")
	lastText, origin, _ := strings.Cut(rest, ":")
	if h.origin != "" && origin == h.origin {
		return
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if ok && ok2 && err == nil && lastText == logEndMark {
		h.ended(kind, id)
		return
	}
	last, err2 := strconv.ParseInt(lastText, 10, 64)
	if !ok || !ok2 || err != nil || err2 != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[logKey{kind, id}] {
		s.notified(last)
	}
}

// logEndMark stands for the last seq in the NOTIFY payload that says a job's log writer closed.
const logEndMark = "end"

// end says, in this process and (on PostgreSQL) every other, that a log writer of the job
// closed with all its lines stored.
func (h *logHub) end(ctx context.Context, db *DB, kind string, jobID int64) error {
	h.ended(kind, jobID)
	if db.dialect != Postgres {
		return nil
	}
	_, err := db.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, logChannel, fmt.Sprintf("%s:%d:%s:%s", kind, jobID, logEndMark, h.origin))
	return err
}

// ended tells this process's subscribers of the job that its log writer closed.
func (h *logHub) ended(kind string, jobID int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[logKey{kind, jobID}] {
		s.endOnce.Do(func() { close(s.end) })
	}
}

// rereadAll makes every subscriber read the table again: after the listener reconnects,
// notifications sent while it was away are lost.
func (h *logHub) rereadAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.subs {
		for s := range set {
			s.notified(-1)
		}
	}
}

func (h *logHub) add(s *LogSubscription) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return Errorf(EINTERNAL, "the store is closed")
	}
	if h.subs == nil {
		h.subs = make(map[logKey]map[*LogSubscription]struct{})
	}
	set := h.subs[s.key]
	if set == nil {
		set = make(map[*LogSubscription]struct{})
		h.subs[s.key] = set
	}
	set[s] = struct{}{}
	return nil
}

func (h *logHub) remove(s *LogSubscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if set := h.subs[s.key]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.subs, s.key)
		}
	}
}

// listen starts the process's listener on first use and waits until it listens, so that no
// line stored after the caller's first read goes unnoticed.
func (h *logHub) listen(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return Errorf(EINTERNAL, "the store is closed")
	}
	if h.listener == nil {
		h.ready = make(chan struct{})
		h.stop = make(chan struct{})
		h.stopped = make(chan struct{})
		h.listener = pq.NewListener(h.dsn, 100*time.Millisecond, 5*time.Second, nil)
		go h.runListener(h.listener, h.ready, h.stop, h.stopped)
	}
	ready := h.ready
	h.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *logHub) runListener(l *pq.Listener, ready, stop, stopped chan struct{}) {
	defer close(stopped)
	if err := l.Listen(logChannel); err != nil {
		return // closed before it could listen
	}
	close(ready)
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-stop:
			return
		case n, ok := <-l.Notify:
			switch {
			case !ok:
				return
			case n == nil:
				h.rereadAll()
			default:
				h.dispatch(n.Extra)
			}
		case <-ping.C:
			go l.Ping() // a dead connection is noticed and re-made
		}
	}
}

// close stops the listener; subscriptions end with their contexts.
func (h *logHub) close() {
	h.mu.Lock()
	h.closed = true
	l, stop, stopped := h.listener, h.stop, h.stopped
	h.mu.Unlock()
	if l == nil {
		return
	}
	close(stop)
	l.Close()
	<-stopped
}

// LogSubscription delivers a job's log lines as they are stored. Read batches from C; each
// batch continues the previous one in seq order, with no gap and no line twice. C is closed
// when the subscription's context ends.
type LogSubscription struct {
	C <-chan []LogLine

	c     chan []LogLine
	db    *DB
	key   logKey
	last  int64 // last seq delivered; only the run goroutine uses it
	wake  chan struct{}
	done  chan struct{}
	close context.CancelFunc

	mu      sync.Mutex
	pending []LogLine // lines published here, not yet delivered
	reread  bool      // read the table from last before using pending
	known   int64     // the highest seq known to be stored
	sent    int64     // last seq delivered, for offer
	lagging bool      // fell subPendingMax lines behind at some time

	end     chan struct{} // closed when a log writer of the job closed
	endOnce sync.Once
}

// Ended returns a channel closed when a writer of the job's log closes (LogWriter.Close), in
// this process or, on PostgreSQL, any other: every line it wrote is stored then, and a viewer
// reads the rest from the table (ReadLog) rather than waiting on C. A job handed to another
// worker gets a new writer, so the job's status says whether the job ended too.
func (s *LogSubscription) Ended() <-chan struct{} { return s.end }

// SubscribeLog subscribes to a job's log from seq after on: C first gets the stored lines
// after it, then each batch as it is stored, in this process or (on PostgreSQL) any other.
// The subscription ends when ctx ends or Close is called. It fails with EINVALID for an
// unknown kind, and when the listener cannot start before ctx ends.
func (db *DB) SubscribeLog(ctx context.Context, kind string, jobID, after int64) (*LogSubscription, error) {
	if err := validLogKind(kind); err != nil {
		return nil, err
	}
	if db.dialect == Postgres {
		if err := db.logs.listen(ctx); err != nil {
			return nil, fmt.Errorf("listen for log lines: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	c := make(chan []LogLine)
	s := &LogSubscription{
		C: c, c: c, db: db, key: logKey{kind, jobID}, last: max(after, 0), sent: max(after, 0),
		wake: make(chan struct{}, 1), done: make(chan struct{}), close: cancel,
		reread: true, end: make(chan struct{}),
	}
	if err := db.logs.add(s); err != nil {
		cancel()
		return nil, err
	}
	go s.run(ctx)
	return s, nil
}

// Close ends the subscription and waits until C is closed.
func (s *LogSubscription) Close() {
	s.close()
	<-s.done
}

// Lagging reports whether the subscriber ever fell far behind the writer (it then catches up
// from the table). A live viewer can use it to give up on a client that cannot keep up.
func (s *LogSubscription) Lagging() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lagging
}

// offer takes lines published in this process.
func (s *LogSubscription) offer(lines []LogLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.known = max(s.known, lines[len(lines)-1].Seq)
	switch {
	case s.known-s.sent > subPendingMax:
		s.lagging = true
		s.reread = true
		s.pending = nil
	case s.reread:
	default:
		s.pending = append(s.pending, lines...)
	}
	s.poke()
}

// notified learns that the log reaches seq last (-1: unknown, read anyway).
func (s *LogSubscription) notified(last int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last >= 0 && last <= s.known {
		return // the lines came in process, or are on their way
	}
	s.known = max(s.known, last)
	s.reread = true
	s.pending = nil
	s.poke()
}

func (s *LogSubscription) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *LogSubscription) run(ctx context.Context) {
	defer close(s.done)
	defer close(s.c)
	defer s.db.logs.remove(s)
	for {
		if !s.deliver(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
	}
}

// deliver sends what is new: from the table when asked to re-read or when the pending lines
// do not continue the last one, else the pending lines. It reports false when ctx ended.
func (s *LogSubscription) deliver(ctx context.Context) bool {
	s.mu.Lock()
	pending, reread := s.pending, s.reread
	s.pending, s.reread = nil, false
	s.mu.Unlock()
	if !reread {
		for len(pending) > 0 && pending[0].Seq <= s.last {
			pending = pending[1:]
		}
		if len(pending) == 0 {
			return true
		}
		if pending[0].Seq == s.last+1 {
			return s.send(ctx, pending)
		}
	}
	return s.readTable(ctx)
}

// readTable sends every stored line after s.last. Lines published meanwhile are filtered by
// seq at the next delivery.
func (s *LogSubscription) readTable(ctx context.Context) bool {
	for {
		lines, err := s.db.ReadLog(ctx, s.key.kind, s.key.jobID, s.last, "", subReadPage)
		if err != nil {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(subRetryPeriod):
				continue
			}
		}
		if len(lines) > 0 && !s.send(ctx, lines) {
			return false
		}
		if len(lines) < subReadPage {
			return true
		}
	}
}

func (s *LogSubscription) send(ctx context.Context, lines []LogLine) bool {
	select {
	case s.c <- lines:
		s.last = lines[len(lines)-1].Seq
		s.mu.Lock()
		s.sent = s.last
		s.mu.Unlock()
		return true
	case <-ctx.Done():
		return false
	}
}
