// Package handlers is ferry's HTTP layer: the JSON API under /api/v1, the HTML pages and the
// health checks, on gin. Handlers are thin: they parse the request, authorize it with one
// decision function (see permissions.go), call the store, and render. Errors are mapped to
// HTTP statuses in one place (see errors.go).
package handlers

import (
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// DefaultSessionTTL is how long a browser login lasts when Config.SessionTTL is zero.
const DefaultSessionTTL = 7 * 24 * time.Hour

// Config holds what the HTTP layer needs. DB is required.
type Config struct {
	DB *store.DB
	// BaseURL is the address users and GitLab reach ferry at, such as https://ferry.example.com.
	BaseURL string
	// Logger receives request logs at debug level and errors at warn and error; nil discards.
	Logger *slog.Logger
	// SecureCookies marks cookies Secure, for ferry behind HTTPS.
	SecureCookies bool
	// SessionTTL is how long a browser login lasts; 0 means DefaultSessionTTL.
	SessionTTL time.Duration
	// TrustedProxies are the addresses (IPs or CIDRs) of reverse proxies whose
	// X-Forwarded-For is believed; empty means the peer address is the client's.
	TrustedProxies []string
	// LoginLimits bound failed logins (see store.LoginLimits); zero means store.DefaultLoginLimits.
	LoginLimits store.LoginLimits
	// GitLab parses GitLab webhooks and registers ferry's hook on GitLab projects (see hooks.go).
	GitLab GitLab
	// Notifier sends a channel's test message (see channels.go).
	Notifier Notifier
	// Deployer is woken when a deployment is queued through the API (deploy.Worker); nil is fine.
	Deployer DeploymentWaker
	// JobRunner is woken when a job run is queued or continued (deploy.JobRunner); nil is fine.
	JobRunner DeploymentWaker
	// ChannelURLCheck refuses channel URLs that point where channels may not reach
	// (notify.AddressPolicy.CheckURL), with a store.EINVALID error naming the url; nil checks nothing.
	ChannelURLCheck func(rawURL string) error
	// ScanHostKey fetches a host's SSH key for an administrator to confirm (deploy.ScanHostKey);
	// nil means hosts' keys are pasted, not fetched.
	ScanHostKey HostKeyScanner
}

// Server serves ferry's HTTP API and pages.
type Server struct {
	db         *store.DB
	baseURL    string
	log        *slog.Logger
	secure     bool
	sessionTTL time.Duration
	proxies    []string
	pages      map[string]*template.Template
	engine     *gin.Engine
	gitlab     GitLab
	notifier   Notifier
	deployer   DeploymentWaker
	jobRunner  DeploymentWaker
	// channelURLCheck is Config.ChannelURLCheck.
	channelURLCheck func(rawURL string) error
	// scanner is Config.ScanHostKey.
	scanner HostKeyScanner
	// finders find the project of routes that name a job by id, by route parameter; each
	// resource's registerX adds its own (see ProjectFinder).
	finders map[string]ProjectFinder
	// projectLists keeps encoded project lists while nothing changes (projectlists.go).
	projectLists *projectLists

	// setupDone is set once a deployment has succeeded: no more first-run guide (setup.go).
	setupDone atomic.Bool

	// loginLimits bound failed logins (throttle.go).
	loginLimits store.LoginLimits
}

// New returns a server for cfg. It panics if the embedded templates do not parse, which is a
// fault in the build, not in the configuration.
func New(cfg Config) *Server {
	s := &Server{
		db:         cfg.DB,
		baseURL:    strings.TrimRight(cfg.BaseURL, "/"),
		log:        cfg.Logger,
		secure:     cfg.SecureCookies,
		sessionTTL: cfg.SessionTTL,
		proxies:    cfg.TrustedProxies,
		gitlab:     cfg.GitLab,
		notifier:   cfg.Notifier,
		deployer:   cfg.Deployer,
		jobRunner:  cfg.JobRunner,
		finders:    map[string]ProjectFinder{},

		channelURLCheck: cfg.ChannelURLCheck,
		scanner:         cfg.ScanHostKey,

		projectLists: &projectLists{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.loginLimits = cfg.LoginLimits; s.loginLimits == (store.LoginLimits{}) {
		s.loginLimits = store.DefaultLoginLimits
	}
	if s.sessionTTL <= 0 {
		s.sessionTTL = DefaultSessionTTL
	}
	pages, err := parsePages()
	if err != nil {
		panic(err)
	}
	s.pages = pages
	s.engine = s.routes()
	return s
}

// Handler returns the http.Handler that serves every route.
func (s *Server) Handler() http.Handler { return s.engine }

// Routes lists every registered route as "METHOD /path" (with gin's :param and *wildcard
// syntax), sorted; tests use it to check that each route has a permission rule and docs.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.engine.Routes() {
		out = append(out, r.Method+" "+r.Path)
	}
	sort.Strings(out)
	return out
}

// routes builds the gin engine. Each resource file registers its own routes; add a new
// resource by writing its registerX and calling it here.
func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	if err := r.SetTrustedProxies(s.proxies); err != nil {
		panic("handlers: trusted proxies: " + err.Error())
	}
	r.Use(s.recoverPanic, s.logRequest, securityHeaders, limitBody, s.authenticate)
	r.NoRoute(s.noRoute)

	s.registerHealth(r)
	s.registerStatic(r)
	s.registerLogin(r)
	s.registerPages(r)
	s.registerScriptJobPages(r)
	s.registerAccount(r)
	s.registerHooks(r)
	s.registerSetup(r)

	api := r.Group("/api/v1")
	s.registerProjects(api)
	s.registerMembers(api)
	s.registerEnvironments(api)
	s.registerHosts(api)
	s.registerUsers(api)
	s.registerTokens(api)
	s.registerAudit(api)
	s.registerBuilds(api)
	s.registerVersions(api)
	s.registerDeployments(api)
	s.registerApprovals(api)
	s.registerInstances(api)
	s.registerChannels(api)
	s.registerStreams(api)
	s.registerScriptJobs(api)
	s.registerJobRuns(api)
	s.registerOpenAPI(api)
	s.registerVariables(api)
	s.registerChanges(api)
	s.registerGitLabProjects(api)
	s.registerJobFileUpload(api)
	return r
}

func (s *Server) noRoute(c *gin.Context) {
	s.fail(c, store.Errorf(store.ENOTFOUND, "no such page: %s %s", c.Request.Method, c.Request.URL.Path))
}
