package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"ferry/notify"
	"ferry/store/runner"
)

// Config is everything ferry is told at start, from FERRY_* environment variables and flags of
// the same meaning (a flag wins over the variable).
type Config struct {
	Addr         string
	DatabaseURL  string
	DataDir      string
	SecretKey    string
	BaseURL      string
	LogLevel     string
	BuildWorkers int
	// DeployWorkers is how many deployments this process runs at once (each fans out to its
	// hosts); 0 makes a process that only serves and builds.
	DeployWorkers int
	// LogRetention is how long log lines, webhook events and audit entries are kept.
	LogRetention time.Duration
	GitLabURL    string
	GitLabToken  string
	// TrustedProxies are the reverse proxies (IPs or CIDRs) whose X-Forwarded-For names the
	// client, from FERRY_TRUSTED_PROXIES (comma-separated); empty trusts none.
	TrustedProxies []string
	// ShutdownGrace bounds how long in-flight requests may take after SIGINT/SIGTERM.
	ShutdownGrace time.Duration
	// BuildSandbox is "bwrap" (build scripts run isolated in bubblewrap) or "off" (they run as
	// ferry's own user and can read its secrets).
	BuildSandbox string
	// Bwrap is the bubblewrap program the sandbox runs; a name is looked up in PATH.
	Bwrap string
	// ChannelAllowedNets lists networks (CIDRs or addresses, comma-separated) notification
	// channels may reach although they are refused by default: loopback, link-local, cloud
	// metadata (FERRY_CHANNEL_ALLOWED_NETS). Validate parses it into channelNets.
	ChannelAllowedNets string
	channelNets        []netip.Prefix
	// MetricsAddr is a second listener that serves only /metrics; empty: none.
	MetricsAddr string
	// MetricsToken, when set, serves /metrics on the main listener to requests that send it
	// as a Bearer token (and asks for it on MetricsAddr too).
	MetricsToken string
	// ApprovalExpiry is how long a deployment waits for approval before it ends as rejected.
	ApprovalExpiry time.Duration
	// Lease is how long a claimed build, deployment or notice channel stays this process's
	// without renewal (FERRY_LEASE): renewed every Lease/3, reaped by any process Lease/6 at
	// most after it ran out, so a killed process's jobs are taken over within Lease + Lease/6.
	Lease time.Duration
}

// DefaultConfig returns the configuration of a plain `ferry serve`, read from env.
func DefaultConfig(env func(string) string) Config {
	get := func(k, def string) string {
		if v := env(k); v != "" {
			return v
		}
		return def
	}
	workers, _ := strconv.Atoi(get("FERRY_BUILD_WORKERS", "2"))
	deployers, _ := strconv.Atoi(get("FERRY_DEPLOY_WORKERS", "4"))
	retention, err := time.ParseDuration(get("FERRY_LOG_RETENTION", "720h"))
	if err != nil {
		retention = -1 // Validate names the variable
	}
	return Config{
		Addr:               get("FERRY_ADDR", "127.0.0.1:8080"),
		DatabaseURL:        env("FERRY_DATABASE_URL"),
		DataDir:            get("FERRY_DATA_DIR", "./ferry-data"),
		SecretKey:          env("FERRY_SECRET_KEY"),
		BaseURL:            env("FERRY_BASE_URL"),
		LogLevel:           get("FERRY_LOG_LEVEL", "info"),
		BuildWorkers:       workers,
		DeployWorkers:      deployers,
		LogRetention:       retention,
		GitLabURL:          env("FERRY_GITLAB_URL"),
		GitLabToken:        env("FERRY_GITLAB_TOKEN"),
		ShutdownGrace:      15 * time.Second,
		BuildSandbox:       get("FERRY_BUILD_SANDBOX", "bwrap"),
		Bwrap:              get("FERRY_BWRAP", "bwrap"),
		TrustedProxies:     splitList(env("FERRY_TRUSTED_PROXIES")),
		ChannelAllowedNets: env("FERRY_CHANNEL_ALLOWED_NETS"),
		MetricsAddr:        env("FERRY_METRICS_ADDR"),
		MetricsToken:       env("FERRY_METRICS_TOKEN"),
		ApprovalExpiry:     approvalExpiry(env),
		Lease:              leaseOf(env),
	}
}

// leaseOf reads FERRY_LEASE; a bad value is -1, which Validate names.
func leaseOf(env func(string) string) time.Duration {
	v := env("FERRY_LEASE")
	if v == "" {
		return runner.DefaultLease
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return -1
	}
	return d
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// approvalExpiry reads FERRY_APPROVAL_EXPIRY; a bad value is -1, which Validate names.
func approvalExpiry(env func(string) string) time.Duration {
	v := env("FERRY_APPROVAL_EXPIRY")
	if v == "" {
		return 24 * time.Hour
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return -1
	}
	return d
}

// Flags registers the configuration's flags on fs, with the current values as defaults.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "address to listen on (FERRY_ADDR)")
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "postgres://… or sqlite:PATH; empty: SQLite file in the data dir (FERRY_DATABASE_URL)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the database file, artifacts and workspaces (FERRY_DATA_DIR)")
	fs.StringVar(&c.BaseURL, "base-url", c.BaseURL, "public URL of ferry, for links (FERRY_BASE_URL)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (FERRY_LOG_LEVEL)")
	fs.IntVar(&c.BuildWorkers, "build-workers", c.BuildWorkers, "builds run at once by this process (FERRY_BUILD_WORKERS)")
	fs.IntVar(&c.DeployWorkers, "deploy-workers", c.DeployWorkers, "deployments run at once by this process (FERRY_DEPLOY_WORKERS)")
	fs.Func("trusted-proxies", "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For is believed (FERRY_TRUSTED_PROXIES)", func(v string) error {
		c.TrustedProxies = splitList(v)
		return nil
	})
	fs.DurationVar(&c.LogRetention, "log-retention", c.LogRetention, "how long logs, webhook events and audit entries are kept (FERRY_LOG_RETENTION)")
	fs.StringVar(&c.BuildSandbox, "build-sandbox", c.BuildSandbox, "bwrap: build scripts run isolated in bubblewrap; off: they run as ferry's user and can read its secrets (FERRY_BUILD_SANDBOX)")
	fs.StringVar(&c.Bwrap, "bwrap", c.Bwrap, "the bubblewrap program for the build sandbox (FERRY_BWRAP)")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "how long a claimed job stays this process's without renewal; a killed process's jobs are taken over after about 7/6 of it (FERRY_LEASE)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "address of a listener serving only /metrics; empty: none (FERRY_METRICS_ADDR)")
}

// Validate fills derived values and checks the configuration.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("FERRY_DATA_DIR: must not be empty")
	}
	// Checked before anything touches the data dir, so a typo changes nothing on disk.
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		return err
	}
	if c.BaseURL == "" {
		host := c.Addr
		if strings.HasPrefix(host, ":") {
			host = "127.0.0.1" + host
		}
		c.BaseURL = "http://" + host
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://") {
		return fmt.Errorf("FERRY_BASE_URL %q: must start with http:// or https://", c.BaseURL)
	}
	if c.BuildWorkers < 0 || c.BuildWorkers > 64 {
		return fmt.Errorf("FERRY_BUILD_WORKERS %d: must be between 0 and 64", c.BuildWorkers)
	}
	if c.DeployWorkers < 0 || c.DeployWorkers > 64 {
		return fmt.Errorf("FERRY_DEPLOY_WORKERS %d: must be between 0 and 64", c.DeployWorkers)
	}
	switch strings.ToLower(c.BuildSandbox) {
	case "bwrap", "on", "":
		c.BuildSandbox = "bwrap"
	case "off":
		c.BuildSandbox = "off"
	default:
		return fmt.Errorf("FERRY_BUILD_SANDBOX %q: want bwrap (the default: builds run isolated) or off (builds can read ferry's secrets)", c.BuildSandbox)
	}
	if err := checkProxies(c.TrustedProxies); err != nil {
		return err
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		return errors.New("FERRY_METRICS_TOKEN: must be at least 16 characters")
	}
	if c.ApprovalExpiry < time.Minute && c.ApprovalExpiry != 0 {
		return errors.New("FERRY_APPROVAL_EXPIRY: want a duration of at least 1m, such as 24h")
	}
	if c.LogRetention < time.Hour {
		return errors.New("FERRY_LOG_RETENTION: want a duration of at least 1h, such as 720h (30 days)")
	}
	if c.Lease < time.Second || c.Lease > 10*time.Minute {
		return errors.New("FERRY_LEASE: want a duration between 1s and 10m, such as 6s")
	}
	nets, err := notify.ParseAllowedNets(c.ChannelAllowedNets)
	if err != nil {
		return fmt.Errorf("FERRY_CHANNEL_ALLOWED_NETS: %v", err)
	}
	c.channelNets = nets
	return nil
}

// checkProxies accepts IP addresses and CIDR networks.
func checkProxies(proxies []string) error {
	for _, p := range proxies {
		if _, _, err := net.ParseCIDR(p); err == nil || net.ParseIP(p) != nil {
			continue
		}
		return fmt.Errorf("FERRY_TRUSTED_PROXIES: %q is not an IP address or a CIDR network such as 10.0.0.0/8", p)
	}
	return nil
}

// checkDatabaseURL accepts what store.Open understands: postgres://…, postgresql://…, sqlite:PATH
// or empty. The message names the variable and never shows a password.
func checkDatabaseURL(u string) error {
	for _, prefix := range []string{"postgres://", "postgresql://", "sqlite:"} {
		if strings.HasPrefix(u, prefix) {
			return nil
		}
	}
	if u == "" {
		return nil
	}
	const want = "want postgres://user:pass@host/db, sqlite:PATH, or empty for SQLite in the data dir"
	scheme, _, found := strings.Cut(u, ":")
	if !found || scheme == "" || strings.ContainsAny(scheme, "/@?# ") {
		return fmt.Errorf("FERRY_DATABASE_URL: not a database URL; %s", want)
	}
	return fmt.Errorf("FERRY_DATABASE_URL: %q databases are not supported; %s", scheme, want)
}

// Logger returns the structured logger for the configured level.
func (c *Config) Logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// secretKeyFile is where a generated key is kept when FERRY_SECRET_KEY is not set.
const secretKeyFile = "secret.key"

// Key returns the 32-byte key that encrypts secrets at rest: the SHA-256 of FERRY_SECRET_KEY,
// or of a random key generated once into the data dir (mode 0600) and reused on every start.
func (c *Config) Key() (key []byte, generated bool, err error) {
	text := c.SecretKey
	if text == "" {
		text, generated, err = loadOrCreateKey(filepath.Join(c.DataDir, secretKeyFile))
		if err != nil {
			return nil, false, err
		}
	}
	if len(text) < 16 {
		return nil, false, errors.New("FERRY_SECRET_KEY: must be at least 16 characters")
	}
	sum := sha256.Sum256([]byte(text))
	return sum[:], generated, nil
}

func loadOrCreateKey(path string) (string, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read secret key %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("create data dir: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	text := hex.EncodeToString(raw)
	// O_EXCL: when two processes start at once, one writes and the other reads what it wrote.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		time.Sleep(100 * time.Millisecond)
		return loadOrCreateKey(path)
	}
	if err != nil {
		return "", false, fmt.Errorf("create secret key %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.WriteString(text + "\n"); err != nil {
		return "", false, fmt.Errorf("write secret key %s: %w", path, err)
	}
	return text, true, f.Sync()
}
