package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"ferry/handlers"
)

// metricsServer is the listener of FERRY_METRICS_ADDR, serving only /metrics.
type metricsServer struct {
	server *http.Server
	done   chan struct{}
}

// startMetrics serves /metrics where the configuration asks: on its own listener
// (FERRY_METRICS_ADDR), and on the main one only with FERRY_METRICS_TOKEN. It returns the
// handler for the main listener.
func (m *Main) startMetrics(main http.Handler) (http.Handler, error) {
	if m.Config.MetricsAddr == "" && m.Config.MetricsToken == "" {
		return main, nil
	}
	metrics := handlers.NewMetrics(handlers.MetricsConfig{DB: m.DB, Token: m.Config.MetricsToken, Logger: m.Logger})
	if m.Config.MetricsAddr != "" {
		ln, err := net.Listen("tcp", m.Config.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("FERRY_METRICS_ADDR: listen on %s: %w", m.Config.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		m.metrics = &metricsServer{server: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
		go func() {
			defer close(m.metrics.done)
			if err := m.metrics.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.Logger.Error("metrics server stopped", "err", err)
			}
		}()
		m.Logger.Info("serving metrics", "listen", ln.Addr().String())
	}
	if m.Config.MetricsToken == "" {
		return main, nil
	}
	// Not a ServeMux: it would clean and redirect paths the pages answer themselves.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			metrics.ServeHTTP(w, r)
			return
		}
		main.ServeHTTP(w, r)
	}), nil
}

func (s *metricsServer) close() error {
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.server.Shutdown(ctx)
	<-s.done
	return err
}
