package handlers

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gorilla/websocket"

	"ferry/store"
)

// registerStreams registers the live log streams of builds and deployments (WebSocket).
func (s *Server) registerStreams(r *gin.RouterGroup) {
	if s.finders["build"] == nil {
		s.finders["build"] = func(ctx context.Context, db *store.DB, id int64) (int64, string, error) {
			b, err := db.GetBuild(ctx, id)
			if err != nil {
				return 0, "", err
			}
			return b.ProjectID, "", nil
		}
	}
	if s.finders["deployment"] == nil {
		s.finders["deployment"] = func(ctx context.Context, db *store.DB, id int64) (int64, string, error) {
			d, err := db.GetDeployment(ctx, id)
			if err != nil {
				return 0, "", err
			}
			return d.ProjectID, d.Environment, nil
		}
	}
	r.GET("/builds/:build/log/stream", s.need(projectRead), s.streamBuildLog)
	r.GET("/deployments/:deployment/log/stream", s.need(projectRead), s.streamDeploymentLog)
}

// How a stream treats its viewer. A viewer whose send queue stays full for streamSlowAfter is
// told "dropped" and closed, so it reconnects from its last seq; the job never waits for it.
const (
	streamWriteWait = 10 * time.Second
	streamPongWait  = 60 * time.Second
	streamPingEvery = streamPongWait * 9 / 10
	streamQueue     = 16
	streamSlowAfter = 5 * time.Second
	// streamPollEvery is how often the job's status is read for a job that ends with no log
	// writer to close (canceled while queued, reaped after its process died). A job whose
	// worker closes its log ends the stream at once (LogSubscription.Ended).
	streamPollEvery = time.Second
	// The worker records the job's end just after it closes the log: the status is read every
	// streamEndCheck for streamEndWait after the log's end.
	streamEndCheck = 20 * time.Millisecond
	streamEndWait  = 5 * time.Second
)

// streamMessage is one WebSocket message: "lines", "end" (with the job's final status) or
// "dropped" (with the reason and the last seq sent, to reconnect with ?after=).
type streamMessage struct {
	Type    string          `json:"type"`
	Lines   []store.LogLine `json:"lines,omitempty"`
	Status  string          `json:"status,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	LastSeq *int64          `json:"last_seq,omitempty"`
}

// logStream is one viewer's stream of one job's log.
type logStream struct {
	kind string
	id   int64
	host string // only this host's lines, when not ""
	// keep, when set, keeps the lines whose host it accepts (instead of host).
	keep  func(host string) bool
	after int64
	// status returns the job's status and whether it is final.
	status func(ctx context.Context) (string, bool, error)
}

func (s *Server) streamBuildLog(c *gin.Context) {
	id, _ := strconv.ParseInt(c.Param("build"), 10, 64) // checked by need
	st := &logStream{kind: store.JobBuild, id: id, status: func(ctx context.Context) (string, bool, error) {
		b, err := s.db.GetBuild(ctx, id)
		if err != nil {
			return "", false, err
		}
		return b.Status, b.Status != store.BuildPending && b.Status != store.BuildRunning, nil
	}}
	s.serveLogStream(c, st)
}

func (s *Server) streamDeploymentLog(c *gin.Context) {
	id, _ := strconv.ParseInt(c.Param("deployment"), 10, 64) // checked by need
	st := &logStream{kind: store.JobDeployment, id: id, host: c.Query("host"), status: func(ctx context.Context) (string, bool, error) {
		d, err := s.db.GetDeployment(ctx, id)
		if err != nil {
			return "", false, err
		}
		return d.Status, d.Status != store.DeploymentQueued && d.Status != store.DeploymentRunning && !store.DeploymentWaiting(d.Status), nil
	}}
	s.serveLogStream(c, st)
}

// serveLogStream checks the request, upgrades it and streams until the job ends, the viewer
// leaves or falls behind.
func (s *Server) serveLogStream(c *gin.Context, st *logStream) {
	if v := c.Query("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.fail(c, store.Errorf(store.EINVALID, "after=%q: want the seq of the last line seen, a number from 0", v))
			return
		}
		st.after = n
	}
	if err := s.checkOrigin(c.Request); err != nil {
		s.fail(c, err)
		return
	}
	if !websocket.IsWebSocketUpgrade(c.Request) {
		c.AbortWithStatusJSON(http.StatusUpgradeRequired, gin.H{"error": "this address is a live log stream: connect with a WebSocket client"})
		return
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }} // checked above
	conn, err := up.Upgrade(c.Writer, c.Request, nil)
	if err != nil {
		return // the upgrader has answered
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	go readUntilClosed(conn, cancel)
	out := make(chan streamMessage, streamQueue)
	slow := make(chan struct{})
	go s.produceLog(ctx, st, out, slow)
	writeStream(conn, out, slow)
}

// checkOrigin refuses a browser request made from another site's page: the Origin, when sent,
// must be the host the request was sent to or ferry's base URL.
func (s *Server) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil // not a browser: a token is needed anyway
	}
	u, err := url.Parse(origin)
	if err == nil && strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	if base, berr := url.Parse(s.baseURL); err == nil && berr == nil && s.baseURL != "" &&
		strings.EqualFold(u.Host, base.Host) && strings.EqualFold(u.Scheme, base.Scheme) {
		return nil
	}
	return store.Errorf(store.EFORBIDDEN, "origin %q may not open this stream: open it from ferry's own pages", origin)
}

// readUntilClosed reads (and discards) what the viewer sends, to notice pongs and the close;
// it ends the stream when the viewer goes or stops answering pings.
func readUntilClosed(conn *websocket.Conn, done context.CancelFunc) {
	defer done()
	conn.SetReadLimit(512)
	conn.SetReadDeadline(time.Now().Add(streamPongWait))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(streamPongWait))
	})
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			return
		}
	}
}

// writeStream is the connection's one writer: it sends the queued messages and pings until
// the queue closes, the viewer is too slow (slow closed), or a write fails.
func writeStream(conn *websocket.Conn, out <-chan streamMessage, slow <-chan struct{}) {
	ping := time.NewTicker(streamPingEvery)
	defer ping.Stop()
	var last int64
	write := func(m streamMessage) bool {
		conn.SetWriteDeadline(time.Now().Add(streamWriteWait))
		return conn.WriteJSON(m) == nil
	}
	for {
		select {
		case <-slow:
			write(streamMessage{Type: "dropped", LastSeq: &last,
				Reason: "this viewer fell too far behind the log; reconnect with after=last_seq"})
			closeStream(conn, websocket.ClosePolicyViolation, "too slow")
			return
		case m, ok := <-out:
			if !ok {
				select {
				case <-slow:
					continue // say so first
				default:
				}
				closeStream(conn, websocket.CloseNormalClosure, "")
				return
			}
			if !write(m) {
				return
			}
			if n := len(m.Lines); n > 0 {
				last = m.Lines[n-1].Seq
			}
		case <-ping.C:
			if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(streamWriteWait)) != nil {
				return
			}
		}
	}
}

func closeStream(conn *websocket.Conn, code int, text string) {
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}

// produceLog queues the job's lines (stored, then live) and the end message, and closes out.
// It closes slow instead when the viewer does not take a message for streamSlowAfter.
func (s *Server) produceLog(ctx context.Context, st *logStream, out chan<- streamMessage, slow chan<- struct{}) {
	defer close(out)
	if !s.streamLog(ctx, st, out) {
		close(slow)
	}
}

// streamLog does produceLog's work; it reports false when the viewer is too slow.
func (s *Server) streamLog(ctx context.Context, st *logStream, out chan<- streamMessage) bool {
	sub, err := s.db.SubscribeLog(ctx, st.kind, st.id, st.after)
	if err != nil {
		s.log.Warn("log stream", "kind", st.kind, "id", st.id, "err", err)
		return true
	}
	defer sub.Close()
	p := &producer{ctx: ctx, out: out, last: st.after, keep: st.keep}
	if p.keep == nil && st.host != "" {
		host := st.host
		p.keep = func(h string) bool { return h == host }
	}
	final := func() (string, bool) {
		status, final, err := st.status(ctx)
		return status, err == nil && final
	}
	end := func(status string) bool {
		sub.Close()
		return p.drain(s.db, st) && p.queue(streamMessage{Type: "end", Status: status})
	}
	if status, ok := final(); ok {
		return end(status)
	}
	poll := time.NewTicker(streamPollEvery)
	defer poll.Stop()
	ended := sub.Ended()
	var endCheck <-chan time.Time
	var endBy time.Time
	for {
		select {
		case <-ctx.Done():
			return true
		case lines, ok := <-sub.C:
			if !ok {
				return true // ctx ended
			}
			if !p.send(lines) {
				return false
			}
		case <-ended:
			// Every line of the writer is stored; the job's end follows at once, unless the
			// job was handed to another worker, which opens the log again.
			ended, endBy = nil, time.Now().Add(streamEndWait)
			endCheck = time.After(0)
		case <-endCheck:
			if status, ok := final(); ok {
				return end(status)
			}
			endCheck = nil
			if time.Now().Before(endBy) {
				endCheck = time.After(streamEndCheck)
			}
		case <-poll.C:
			if status, ok := final(); ok {
				return end(status)
			}
		}
	}
}

// producer queues one stream's messages, keeping the last seq queued.
type producer struct {
	ctx  context.Context
	out  chan<- streamMessage
	last int64
	keep func(host string) bool // nil: every line
}

// send queues lines (those p.keep accepts, when set). It reports false when the viewer is
// too slow.
func (p *producer) send(lines []store.LogLine) bool {
	for len(lines) > 0 && lines[0].Seq <= p.last {
		lines = lines[1:] // read from the table already
	}
	if len(lines) == 0 {
		return true
	}
	p.last = lines[len(lines)-1].Seq
	if p.keep != nil {
		kept := make([]store.LogLine, 0, len(lines))
		for _, l := range lines {
			if p.keep(l.Host) {
				kept = append(kept, l)
			}
		}
		if len(kept) == 0 {
			return true
		}
		lines = kept
	}
	return p.queue(streamMessage{Type: "lines", Lines: lines})
}

// drain queues the lines stored after the last one queued, read from the table, for the end
// of a job whose last lines the subscription has not brought yet.
func (p *producer) drain(db *store.DB, st *logStream) bool {
	for {
		lines, err := db.ReadLog(p.ctx, st.kind, st.id, p.last, "", 1000)
		if err != nil || len(lines) == 0 {
			return err == nil || p.ctx.Err() != nil
		}
		if !p.send(lines) {
			return false
		}
	}
}

func (p *producer) queue(m streamMessage) bool {
	select {
	case p.out <- m:
		return true
	default:
	}
	t := time.NewTimer(streamSlowAfter)
	defer t.Stop()
	select {
	case p.out <- m:
		return true
	case <-p.ctx.Done():
		return true
	case <-t.C:
		return false
	}
}
