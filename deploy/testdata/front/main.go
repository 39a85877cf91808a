// Command front is the tiny TCP front the recipe tests put before a service on a host, as nginx
// or HAProxy would be: it listens on its first argument and forwards each connection to
// 127.0.0.1:<second argument>, retrying the connection to the service every 10 ms for up to
// 20 s while nothing listens there (the service is being restarted in place), and asking again
// when the service closed a connection without answering. A client thus waits through a
// restart instead of being refused.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: front <listen addr> <backend port>")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	backend := "127.0.0.1:" + os.Args[2]
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go forward(c, backend)
	}
}

func forward(c net.Conn, backend string) {
	defer c.Close()
	// The request: the recipes' clients send one small request per connection. It is kept, so
	// that a service that accepted the connection and closed it without a byte of answer (an old
	// process that stopped listening with the connection still in its backlog) is asked again,
	// as nginx's proxy_next_upstream does.
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := c.Read(buf)
	c.SetReadDeadline(time.Time{})
	if n == 0 {
		return
	}
	request := buf[:n]
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, err := net.DialTimeout("tcp", backend, time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if _, err := b.Write(request); err == nil && relay(c, b) > 0 {
			return
		}
		b.Close()
		time.Sleep(10 * time.Millisecond)
	}
}

// relay copies the rest of the client's bytes to the service and the service's answer back,
// and returns how many bytes of answer there were.
func relay(c, b net.Conn) int64 {
	defer b.Close()
	go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
	n, _ := io.Copy(c, b)
	if n > 0 {
		c.(*net.TCPConn).CloseWrite()
	}
	return n
}
