package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startTimeoutServer serves h with ferry's server settings and timeouts t on a free port.
func startTimeoutServer(t *testing.T, h http.Handler, to serverTimeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(h, slog.New(slog.DiscardHandler), to)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestServerCutsSlowBody is a slowloris client: it sends its headers at once and then its body
// a byte at a time. The server must drop it once the read timeout has passed, not keep the
// connection (and a goroutine) for as long as the client likes. The defaults must bound the
// body read at all (the old server had only a header timeout).
func TestServerCutsSlowBody(t *testing.T) {
	if defaultServerTimeouts.Read <= 0 || defaultServerTimeouts.Read > 5*time.Minute || defaultServerTimeouts.Write <= 0 {
		t.Fatalf("default timeouts %+v: want a read timeout of at most 5 minutes and a write timeout", defaultServerTimeouts)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprint(w, "read it all")
	})
	addr := startTimeoutServer(t, h, serverTimeouts{ReadHeader: time.Second, Read: 700 * time.Millisecond, Write: 2 * time.Second, Idle: time.Second})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /api/x HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
	start := time.Now()
	cut := false
	for i := 0; i < 1000 && time.Since(start) < 10*time.Second; i++ {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("x")); err != nil {
			cut = true
			break
		}
		// A closed connection shows on read first: look without waiting long.
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if n > 0 && strings.Contains(string(buf[:n]), "read it all") {
			t.Fatalf("the server waited for the whole slow body (%s)", time.Since(start))
		}
		if err != nil && !isTimeoutErr(err) {
			cut = true
			break
		}
	}
	took := time.Since(start)
	if !cut {
		t.Fatalf("the server kept a client sending one byte every 100 ms for %s", took)
	}
	if took > 3*time.Second {
		t.Errorf("the slow client was cut after %s; want about the 700 ms read timeout", took)
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestServerKeepsWebSocketPastWriteTimeout: a log stream lives far longer than the write
// timeout; the upgrade must free it from the server's deadlines.
func TestServerKeepsWebSocketPastWriteTimeout(t *testing.T) {
	up := websocket.Upgrader{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for i := 0; i < 6; i++ {
			time.Sleep(250 * time.Millisecond)
			if err := conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("line %d", i))); err != nil {
				return
			}
		}
	})
	addr := startTimeoutServer(t, h, serverTimeouts{ReadHeader: 500 * time.Millisecond, Read: 500 * time.Millisecond, Write: 500 * time.Millisecond, Idle: 500 * time.Millisecond})
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 6; i++ {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("after %d messages (%d ms, write timeout 500 ms): %v", i, i*250, err)
		}
		if want := fmt.Sprintf("line %d", i); string(msg) != want {
			t.Fatalf("got %q, want %q", msg, want)
		}
	}
}

// TestServerAnswersPromptly: an ordinary answer of 1 MiB written in time
// arrives whole.
func TestServerAnswersPromptly(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Repeat("a", 1<<20))
	})
	addr := startTimeoutServer(t, h, serverTimeouts{ReadHeader: time.Second, Read: time.Second, Write: 2 * time.Second, Idle: time.Second})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: ferry\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil || len(body) != 1<<20 {
		t.Fatalf("got %d bytes, %v; want 1 MiB", len(body), err)
	}
}
