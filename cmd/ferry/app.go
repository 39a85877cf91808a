package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"ferry/handlers"
	"ferry/store"
)

// Main is a running ferry: the store, the HTTP server and the workers. Tests start one on a free
// port with Run and stop it with Close.
type Main struct {
	Config Config
	Logger *slog.Logger
	DB     *store.DB

	listener net.Listener
	server   *http.Server
	// cancel stops the workers.
	cancel context.CancelFunc
	done   chan struct{}
}

// NewMain returns a Main for cfg; nothing runs until Run.
func NewMain(cfg Config) *Main {
	return &Main{Config: cfg, Logger: cfg.Logger(), done: make(chan struct{})}
}

// Run opens and migrates the store, creates the first admin if there are no users, and starts
// serving. It returns once ferry is ready; Close stops it.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Config.Validate(); err != nil {
		return err
	}
	db, err := openStore(ctx, m.Config, m.Logger)
	if err != nil {
		return err
	}
	m.DB = db
	if _, err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}
	if err := m.ensureAdmin(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", m.Config.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.Config.Addr, err)
	}
	m.listener = ln
	srv := handlers.New(handlers.Config{
		DB:            db,
		BaseURL:       m.Config.BaseURL,
		Logger:        m.Logger,
		SecureCookies: strings.HasPrefix(m.Config.BaseURL, "https://"),
	})
	m.server = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	workCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	go m.serve()
	m.startWorkers(workCtx)
	m.Logger.Info("ferry is ready", "url", m.Config.BaseURL, "listen", ln.Addr().String(),
		"database", string(db.Dialect()), "data_dir", m.Config.DataDir, "version", Version)
	return nil
}

func (m *Main) serve() {
	defer close(m.done)
	if err := m.server.Serve(m.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		m.Logger.Error("http server stopped", "err", err)
	}
}

// startWorkers starts the background work of this process; later parts add theirs here.
func (m *Main) startWorkers(ctx context.Context) {}

// Addr returns the address ferry listens on, useful with port 0.
func (m *Main) Addr() string { return m.listener.Addr().String() }

func (m *Main) ensureAdmin(ctx context.Context) error {
	password, created, err := m.DB.EnsureAdmin(ctx)
	if err != nil {
		return fmt.Errorf("create first admin: %w", err)
	}
	if created {
		// Shown once, as Gitea and Jenkins do; only its hash is stored.
		m.Logger.Warn("first start: created user admin; log in and change this password", "user", "admin", "password", password)
	}
	return nil
}

// Close stops accepting requests, lets in-flight ones finish (bounded by ShutdownGrace), stops
// the workers and closes the store.
func (m *Main) Close() error {
	var errs []error
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownGrace)
		defer cancel()
		if err := m.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down http server: %w", err))
		}
		<-m.done
	}
	if m.cancel != nil {
		m.cancel()
	}
	if m.DB != nil {
		errs = append(errs, m.DB.Close())
	}
	return errors.Join(errs...)
}

func openStore(ctx context.Context, cfg Config, logger *slog.Logger) (*store.DB, error) {
	key, generated, err := cfg.Key()
	if err != nil {
		return nil, err
	}
	if generated {
		logger.Warn("FERRY_SECRET_KEY is not set: generated one into the data dir; back it up, secrets cannot be read without it",
			"file", cfg.DataDir+"/"+secretKeyFile)
	}
	return store.Open(ctx, store.Options{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Key: key})
}
