// Command testapp is the service the deploy tests ship inside their artifacts. It serves its
// release's VERSION at /version and /health on 127.0.0.1:8080, writes run/app.pid in its
// release and exits on SIGTERM. Files in the release change it: "ignore-term" makes it ignore
// SIGTERM, "unhealthy" makes /health answer 500. TESTAPP_ADDR, when set, is the address it
// listens on instead of 127.0.0.1:8080.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func run() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	release := filepath.Dir(filepath.Dir(exe)) // <release>/bin/app
	version, err := os.ReadFile(filepath.Join(release, "VERSION"))
	if err != nil {
		return err
	}
	addr := os.Getenv("TESTAPP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	if err := writePid(release); err != nil {
		return err
	}
	v := strings.TrimSpace(string(version))
	srv := &http.Server{Handler: handler(v, exists(filepath.Join(release, "unhealthy")))}
	fmt.Printf("testapp %s (FERRY_VERSION=%s) listening on %s as pid %d\n", v, os.Getenv("FERRY_VERSION"), ln.Addr(), os.Getpid())
	stop := make(chan os.Signal, 1)
	if exists(filepath.Join(release, "ignore-term")) {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(stop, syscall.SIGINT)
	} else {
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	}
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	fmt.Printf("testapp %s stopped\n", v)
	return nil
}

func handler(version string, unhealthy bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, version) })
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		if unhealthy {
			http.Error(w, "unhealthy "+version, http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok", version)
	})
	return mux
}

// listen retries for a while: the process being replaced may still hold the port.
func listen(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writePid(release string) error {
	if err := os.MkdirAll(filepath.Join(release, "run"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(release, "run", "app.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}
