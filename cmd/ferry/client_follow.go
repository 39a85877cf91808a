package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"ferry/store"
)

// streamMessage is one message of the live log stream (handlers/streams.go, docs/api.md).
type streamMessage struct {
	Type    string          `json:"type"`
	Lines   []store.LogLine `json:"lines"`
	Status  string          `json:"status"`
	Reason  string          `json:"reason"`
	LastSeq *int64          `json:"last_seq"`
}

// How the stream reconnects: after a pause that grows with each failure in a row (from 250 ms
// to 2 s); it gives up after maxReconnects failures in a row without a new line.
const (
	maxReconnects  = 12
	reconnectPause = 250 * time.Millisecond
)

// streamLog reads a job's log over the WebSocket stream, from after the given seq, handing each
// batch of lines to onLines, until the job ends; it returns the end status. A connection that
// breaks or a "dropped" message is resumed after the last seq received, so nothing is lost or
// repeated.
func streamLog(ctx context.Context, c *apiClient, kind string, id, after int64, onLines func([]store.LogLine)) (string, error) {
	failures := 0
	for {
		status, last, err := streamOnce(ctx, c, kind, id, after, onLines)
		if status != "" {
			return status, nil
		}
		var api *apiError
		if errors.As(err, &api) || ctx.Err() != nil {
			return "", err
		}
		if last > after {
			after, failures = last, 0
		} else {
			failures++
		}
		if failures >= maxReconnects {
			return "", fmt.Errorf("the log stream of %s %d keeps breaking: %w", kind, id, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(reconnectPause * time.Duration(min(failures+1, 8))):
		}
	}
}

// streamOnce reads one connection of the stream; it returns the end status once the job
// ended, else the last seq it received and why the connection ended.
func streamOnce(ctx context.Context, c *apiClient, kind string, id, after int64, onLines func([]store.LogLine)) (string, int64, error) {
	u, err := url.Parse(c.base)
	if err != nil {
		return "", after, &apiError{Message: fmt.Sprintf("FERRY_URL %q: %v", c.base, err)}
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = strings.TrimRight(u.Path, "/") + fmt.Sprintf("/api/v1/%ss/%d/log/stream", kind, id)
	u.RawQuery = url.Values{"after": {fmt.Sprint(after)}}.Encode()
	header := http.Header{"Authorization": {"Bearer " + c.token}}
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, u.String(), header)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode/100 == 4 {
				return "", after, answerError(resp.StatusCode, raw)
			}
		}
		return "", after, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	for {
		var m streamMessage
		if err := conn.ReadJSON(&m); err != nil {
			return "", after, err
		}
		switch m.Type {
		case "lines":
			if len(m.Lines) > 0 {
				onLines(m.Lines)
				after = m.Lines[len(m.Lines)-1].Seq
			}
		case "end":
			return m.Status, after, nil
		case "dropped":
			return "", after, fmt.Errorf("the server dropped the stream: %s", m.Reason)
		}
	}
}

// followBuild shows a build's log until it ends; it fails unless the build made a version.
func followBuild(ctx context.Context, c *apiClient, id int64, stdout io.Writer) error {
	_, err := streamLog(ctx, c, store.JobBuild, id, 0, func(lines []store.LogLine) {
		for _, l := range lines {
			fmt.Fprintln(stdout, l.Text)
		}
	})
	if err != nil {
		return stoppedFollowing(ctx, store.JobBuild, id, err)
	}
	var b store.Build
	if err := c.call(ctx, "GET", fmt.Sprintf("/builds/%d", id), nil, &b); err != nil {
		return err
	}
	if b.Status != store.BuildSuccess && b.Status != store.BuildDuplicate {
		return fmt.Errorf("build %d %s: %s", id, b.Status, oneLine(b.Error))
	}
	fmt.Fprintf(stdout, "build %d %s: version %s\n", id, b.Status, b.Version)
	return nil
}

// deploymentView is how a followed deployment is shown: bars on a terminal, lines elsewhere.
type deploymentView interface {
	lines([]store.LogLine)
	hosts([]*store.HostStep)
	// close ends the view once the deployment has ended, with its final host steps.
	close([]*store.HostStep)
}

// followDeployment shows a deployment's progress and log until it ends; it fails unless the
// deployment succeeded.
func followDeployment(ctx context.Context, c *apiClient, id int64, stdout io.Writer) error {
	var d store.Deployment
	if err := c.call(ctx, "GET", fmt.Sprintf("/deployments/%d", id), nil, &d); err != nil {
		return err
	}
	var view deploymentView
	if isTerminal(stdout) {
		view = newBarView(stdout, d.Hosts)
	} else {
		view = &lineView{out: stdout, seen: map[string]string{}}
	}
	pollCtx, stopPolling := context.WithCancel(ctx)
	var polling sync.WaitGroup
	polling.Add(1)
	go func() {
		defer polling.Done()
		pollHosts(pollCtx, c, id, view)
	}()
	_, err := streamLog(ctx, c, store.JobDeployment, id, 0, view.lines)
	stopPolling()
	polling.Wait()
	if err != nil {
		view.close(nil)
		return stoppedFollowing(ctx, store.JobDeployment, id, err)
	}
	if err := c.call(ctx, "GET", fmt.Sprintf("/deployments/%d", id), nil, &d); err != nil {
		view.close(nil)
		return err
	}
	view.close(d.Hosts)
	if d.Status != store.DeploymentSuccess {
		return fmt.Errorf("deployment %d %s: %s", id, d.Status, oneLine(d.Error))
	}
	fmt.Fprintf(stdout, "deployment %d success: %s runs on %d hosts of %s\n", id, d.Version, len(d.Hosts), d.Environment)
	return nil
}

// pollHosts reads the host steps (step, bytes uploaded, status) twice a second for the view.
func pollHosts(ctx context.Context, c *apiClient, id int64, view deploymentView) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		var d store.Deployment
		if err := c.call(ctx, "GET", fmt.Sprintf("/deployments/%d", id), nil, &d); err == nil {
			view.hosts(d.Hosts)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// lineView writes plain lines, for logs and pipes: each log line, and a line whenever a host's
// status or step changes.
type lineView struct {
	mu   sync.Mutex
	out  io.Writer
	seen map[string]string // host → "status step" last shown
}

func (v *lineView) lines(lines []store.LogLine) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, l := range lines {
		if l.Host != "" {
			fmt.Fprintf(v.out, "%s | %s\n", l.Host, l.Text)
		} else {
			fmt.Fprintln(v.out, l.Text)
		}
	}
}

func (v *lineView) hosts(steps []*store.HostStep) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, h := range steps {
		state := h.Status + " " + h.Step
		if v.seen[h.Host] == state {
			continue
		}
		v.seen[h.Host] = state
		fmt.Fprintf(v.out, "%s: %s\n", h.Host, hostSummary(h))
	}
}

func (v *lineView) close(final []*store.HostStep) {
	v.hosts(final)
}

// hostSummary reads "running, upload 1.2 MiB of 3.4 MiB" or "failed: why".
func hostSummary(h *store.HostStep) string {
	s := h.Status
	if h.Step != "" && h.Status == store.HostRunning {
		s += ", " + h.Step
	}
	if h.BytesTotal > 0 {
		s += fmt.Sprintf(", %s of %s uploaded", byteCount(h.BytesSent), byteCount(h.BytesTotal))
	}
	if h.Error != "" {
		s += ": " + oneLine(h.Error)
	}
	return s
}

// stoppedFollowing says, when the user interrupted, that the job goes on without them.
func stoppedFollowing(ctx context.Context, kind string, id int64, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("stopped following; %s %d goes on (ferry logs %s %d -f, or ferry cancel %s %d)", kind, id, kind, id, kind, id)
	}
	return err
}
