package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
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
	// metrics serves /metrics on FERRY_METRICS_ADDR (metrics.go); nil without one.
	metrics *metricsServer
	// cancel stops the workers; workers waits for them.
	cancel  context.CancelFunc
	workers sync.WaitGroup
	done    chan struct{}

	builder  *build.Worker
	deployer *deploy.Worker
	notifier *notify.Worker
	// jobRunner runs job runs (scripts, file distribution) and fires their schedules.
	jobRunner *deploy.JobRunner
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
	if err := securePrivateDir(m.Config.DataDir); err != nil {
		return err
	}
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
		DB:       db,
		DataDir:  m.Config.DataDir,
		WorkDir:  filepath.Join(m.Config.DataDir, "workspaces"),
		GitLab:   build.GitLabConfig{BaseURL: m.Config.GitLabURL, Token: m.Config.GitLabToken},
		BaseURL:  m.Config.BaseURL,
		Workers:  max(m.Config.BuildWorkers, 1),
		LeaseTTL: m.Config.Lease,
		Logger:   m.Logger.With("part", "build"),
		// Off only when asked for by name; the worker says so loudly at start and in each build.
		NoSandbox: m.Config.BuildSandbox == "off",
		Bwrap:     m.Config.Bwrap,
	})
	m.deployer = deploy.NewWorker(deploy.WorkerConfig{
		DB:       db,
		DataDir:  m.Config.DataDir,
		Workers:  max(m.Config.DeployWorkers, 1),
		LeaseTTL: m.Config.Lease,
		Logger:   m.Logger.With("part", "deploy"),
	})
	m.jobRunner = deploy.NewJobRunner(deploy.JobRunnerConfig{
		Store:    db,
		DataDir:  m.Config.DataDir,
		Workers:  max(m.Config.DeployWorkers, 1),
		LeaseTTL: m.Config.Lease,
		Logger:   m.Logger.With("part", "jobs"),
	})
	channelAddresses := notify.AddressPolicy{Allowed: m.Config.channelNets}
	m.notifier = &notify.Worker{DB: db, BaseURL: m.Config.BaseURL, Logger: m.Logger.With("part", "notify"), LeaseTTL: m.Config.Lease,
		Options: notify.Options{Addresses: channelAddresses}}
	if len(m.Config.channelNets) > 0 {
		m.Logger.Info("notification channels may reach these networks refused by default", "FERRY_CHANNEL_ALLOWED_NETS", m.Config.ChannelAllowedNets)
	}
	srv := handlers.New(handlers.Config{
		DB:            db,
		BaseURL:       m.Config.BaseURL,
		Logger:        m.Logger,
		SecureCookies: strings.HasPrefix(m.Config.BaseURL, "https://"),
		GitLab:        build.NewFrontend(m.builder),
		Notifier:      m.notifier,
		Deployer:      m.deployer,
		JobRunner:     m.jobRunner,

		TrustedProxies:  m.Config.TrustedProxies,
		ChannelURLCheck: channelAddresses.CheckURL,
		ScanHostKey:     deploy.ScanHostKey,
	})
	handler, err := m.startMetrics(srv.Handler())
	if err != nil {
		return err
	}
	m.server = newHTTPServer(handler, m.Logger, defaultServerTimeouts)
	workCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	go m.serve()
	m.startWorkers(workCtx)
	m.Logger.Info("ferry is ready", "url", m.Config.BaseURL, "listen", ln.Addr().String(),
		"database", string(db.Dialect()), "data_dir", m.Config.DataDir, "build_sandbox", m.Config.BuildSandbox, "version", Version)
	return nil
}

// serverTimeouts bound how long a client may take over each part of an exchange, so a slow or
// stalled client (slowloris) cannot hold a connection and its goroutine for ever.
type serverTimeouts struct {
	// ReadHeader bounds reading the request line and headers.
	ReadHeader time.Duration
	// Read bounds reading the whole request, body included (bodies are at most 1 MiB).
	Read time.Duration
	// Write bounds the handler and writing its answer, counted from the end of the headers.
	// A WebSocket log stream is not bound by it: the upgrade clears the connection's
	// deadlines, and the stream keeps its own per-write deadline and pings. An artifact
	// download sets its own longer deadline (handlers.downloadArtifact).
	Write time.Duration
	// Idle bounds the wait for the next request on a kept-alive connection.
	Idle time.Duration
}

var defaultServerTimeouts = serverTimeouts{ReadHeader: 10 * time.Second, Read: time.Minute, Write: 2 * time.Minute, Idle: 2 * time.Minute}

// newHTTPServer returns ferry's HTTP server for h with timeouts t.
func newHTTPServer(h http.Handler, logger *slog.Logger, t serverTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
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
		run("jobs", m.jobRunner.Run)
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
			m.Logger.Info("retention", "log_lines", st.LogLines, "events", st.Events, "audit_entries", st.AuditEntries, "login_attempts", st.LoginAttempts, "artifacts", st.Artifacts)
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
	errs = append(errs, m.metrics.close())
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

// dirsOfBuilds are the data dir's directories whose contents belong to build scripts: only the
// directories themselves are made private, their files keep the modes a build gave them.
var dirsOfBuilds = map[string]bool{"workspaces": true, "caches": true}

// securePrivateDir makes dir, ferry's data dir, private to ferry's user, creating it if
// needed: the dir and the directories in it 0700, files without any group or other rights
// (0600, 0700 for executables). It also fixes a data dir made by an older ferry or by hand.
// Symlinks are left alone, never followed.
func securePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	fail := func(err error) error { return fmt.Errorf("make data dir %s private: %w", dir, err) }
	if err := os.Chmod(dir, 0o700); err != nil {
		return fail(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fail(err)
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if dirsOfBuilds[e.Name()] && e.IsDir() {
			if err := os.Chmod(path, 0o700); err != nil {
				return fail(err)
			}
			continue
		}
		if err := filepath.WalkDir(path, makePrivate); err != nil {
			return fail(err)
		}
	}
	return nil
}

func makePrivate(path string, d fs.DirEntry, err error) error {
	if err != nil || d.Type()&fs.ModeSymlink != 0 {
		return err
	}
	info, err := d.Info()
	if err != nil {
		return err
	}
	mode := info.Mode().Perm()
	want := mode &^ 0o077
	if d.IsDir() {
		want = 0o700
	}
	if want == mode {
		return nil
	}
	return os.Chmod(path, want)
}
