package sshtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DialInside opens a TCP connection from inside the host's network, as a program on the host
// would: "127.0.0.1:8080" is the host's own loopback.
func (h *Host) DialInside(ctx context.Context, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// The namespace is per thread: hold this one, and give it back only when it is restored.
		runtime.LockOSThread()
		conn, restored, err := h.dialOnThread(ctx, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}

func (h *Host) dialOnThread(ctx context.Context, addr string) (net.Conn, bool, error) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, fmt.Errorf("open this thread's network namespace: %w", err)
	}
	defer own.Close()
	theirs, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", h.nsPid))
	if err != nil {
		return nil, true, fmt.Errorf("open the network namespace of %s: %w", h.Name, err)
	}
	defer theirs.Close()
	if err := unix.Setns(int(theirs.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("enter the network namespace of %s: %w", h.Name, err)
	}
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, "tcp", addr)
	restored := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil
	return conn, restored, dialErr
}

// Get fetches url from inside the host and returns the status code and the trimmed body.
func (h *Host) Get(url string) (int, string, error) {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return h.DialInside(ctx, addr)
			},
		},
	}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s on %s: %w", url, h.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), err
}
