package main

import (
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// cuttingProxy forwards TCP connections to a server and cuts each one after it has carried
// limit bytes from the server, as a flaky network or a restarting proxy does to a log stream.
type cuttingProxy struct {
	ln    net.Listener
	cuts  int
	mu    sync.Mutex
	limit int64
}

func startCuttingProxy(t *testing.T, serverURL string, limit int64) (*cuttingProxy, string) {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, limit: limit}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c, u.Host)
		}
	}()
	return p, "http://" + ln.Addr().String()
}

func (p *cuttingProxy) forward(client net.Conn, target string) {
	defer client.Close()
	server, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer server.Close()
	go io.Copy(server, client)
	n, _ := io.CopyN(client, server, p.limit)
	if n == p.limit {
		p.mu.Lock()
		p.cuts++
		p.mu.Unlock()
	}
}

func (p *cuttingProxy) cutCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// checkCountedLines checks that out holds the lines 1 … n of seq, each once and in order.
func checkCountedLines(t *testing.T, out string, n int) {
	t.Helper()
	next := 1
	for _, line := range strings.Split(out, "\n") {
		v, err := strconv.Atoi(line)
		if err != nil {
			continue
		}
		if v != next {
			t.Fatalf("line %d where %d was due: lines were lost or repeated", v, next)
		}
		next++
	}
	if next != n+1 {
		t.Fatalf("got lines 1 to %d, want 1 to %d", next-1, n)
	}
}
