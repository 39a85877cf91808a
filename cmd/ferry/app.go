package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"ferry/build"
	"ferry/deploy"
	"ferry/handlers"
	"ferry/notify"
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
	// cancel stops the workers; workers waits for them.
	cancel  context.CancelFunc
	workers sync.WaitGroup
	done    chan struct{}

	builder  *build.Worker
	deployer *deploy.Worker
	notifier *notify.Worker
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
	// Listen first: a port that is taken must fail the start before the database is touched,
	// or the first admin's one-time password would be spent on a start that never served.
	ln, err := net.Listen("tcp", m.Config.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.Config.Addr, err)
	}
	m.listener = ln
	m.Config.BaseURL = baseURLOf(m.Config.BaseURL, ln.Addr())
	db, err := openStore(ctx, m.Config, m.Logger)
	if err != nil {
		return err
	}
	m.DB = db
	db.ApprovalExpiry = m.Config.ApprovalExpiry
	if _, err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}
	if err := m.ensureAdmin(ctx); err != nil {
		return err
	}
	m.builder = build.NewWorker(build.WorkerConfig{
		DB:      db,
		DataDir: m.Config.DataDir,
		WorkDir: filepath.Join(m.Config.DataDir, "workspaces"),
		GitLab:  build.GitLabConfig{BaseURL: m.Config.GitLabURL, Token: m.Config.GitLabToken},
		BaseURL: m.Config.BaseURL,
		Workers: max(m.Config.BuildWorkers, 1),
		Logger:  m.Logger.With("part", "build"),
	})
	m.deployer = deploy.NewWorker(deploy.WorkerConfig{
		DB:      db,
		Workers: max(m.Config.DeployWorkers, 1),
		Logger:  m.Logger.With("part", "deploy"),
	})
	m.notifier = &notify.Worker{DB: db, BaseURL: m.Config.BaseURL, Logger: m.Logger.With("part", "notify")}
	srv := handlers.New(handlers.Config{
		DB:            db,
		BaseURL:       m.Config.BaseURL,
		Logger:        m.Logger,
		SecureCookies: strings.HasPrefix(m.Config.BaseURL, "https://"),
		GitLab:        build.NewFrontend(m.builder),
		Notifier:      m.notifier,
		Deployer:      m.deployer,
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

// startWorkers starts the background work of this process: builds, deployments, notices and
// retention. Close waits for them.
func (m *Main) startWorkers(ctx context.Context) {
	run := func(name string, f func(context.Context) error) {
		m.workers.Add(1)
		go func() {
			defer m.workers.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				m.Logger.Error("worker stopped", "part", name, "err", err)
			}
		}()
	}
	if m.Config.BuildWorkers > 0 {
		run("build", m.builder.Run)
	}
	if m.Config.DeployWorkers > 0 {
		run("deploy", m.deployer.Run)
	}
	run("notify", m.notifier.Run)
	run("promote", func(ctx context.Context) error {
		// Scheduled and approved deployments that came due are queued; approvals run out.
		m.DB.PromoteEvery(ctx, 10*time.Second, func(res store.PromoteResult, err error) {
			if err != nil {
				m.Logger.Warn("promoting due deployments failed", "err", err)
				return
			}
			if res.Queued > 0 {
				m.deployer.Wake()
			}
			if res.Queued+res.Expired > 0 {
				m.Logger.Info("change control", "queued", res.Queued, "frozen", res.Frozen, "expired", res.Expired)
			}
		})
		return nil
	})
	run("retention", func(ctx context.Context) error {
		m.DB.PurgeEvery(ctx, m.Config.LogRetention, time.Hour, func(st store.PurgeStats, err error) {
			if err != nil {
				m.Logger.Warn("retention failed", "err", err)
				return
			}
			m.Logger.Info("retention", "log_lines", st.LogLines, "events", st.Events, "audit_entries", st.AuditEntries)
		})
		return nil
	})
}

// baseURLOf puts the port the listener got into a base URL with port 0 (derived from
// FERRY_ADDR=…:0), so links name a port that answers.
func baseURLOf(base string, addr net.Addr) string {
	u, err := url.Parse(base)
	if err != nil || u.Port() != "0" {
		return base
	}
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return base
	}
	u.Host = net.JoinHostPort(u.Hostname(), port)
	return u.String()
}

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
	} else if m.listener != nil {
		m.listener.Close()
	}
	if m.cancel != nil {
		m.cancel()
		m.workers.Wait()
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
