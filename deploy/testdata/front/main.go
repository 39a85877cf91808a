// Command front is the tiny TCP front the recipe tests put before a service on a host, as nginx
// or HAProxy would be: it listens on its first argument and forwards each connection to
// 127.0.0.1:<second argument>, retrying the connection to the service every 10 ms for up to
// 20 s while nothing listens there (the service is being restarted in place). A client thus
// waits through a restart instead of being refused.
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
	deadline := time.Now().Add(20 * time.Second)
	var b net.Conn
	for {
		var err error
		if b, err = net.DialTimeout("tcp", backend, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer b.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, b); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}
