package handlers

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ferry/store"
)

// MetricsConfig configures the /metrics handler.
type MetricsConfig struct {
	DB *store.DB
	// Token, when set, must be sent as "Authorization: Bearer <token>"; empty asks for none
	// (for a listener only the monitoring network reaches).
	Token  string
	Logger *slog.Logger
}

// NewMetrics returns the handler of GET /metrics in Prometheus' text format: ferry's numbers,
// read from the database at each scrape (so every process reports the whole installation and
// no worker counts anything), plus the Go runtime and process metrics of this process.
func NewMetrics(cfg MetricsConfig) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&statsCollector{db: cfg.DB, builds: newDurations(store.JobBuild, buildBuckets),
			deployments: newDurations(store.JobDeployment, deploymentBuckets)},
	)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       20 * time.Second,
	})
	if cfg.Token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(cfg.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ferry metrics"`)
			http.Error(w, "metrics: want Authorization: Bearer <FERRY_METRICS_TOKEN>", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Bucket bounds in seconds: builds take minutes, deployments seconds to minutes.
var (
	buildBuckets      = []float64{5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}
	deploymentBuckets = []float64{1, 5, 10, 30, 60, 120, 300, 600, 1800}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("ferry_"+name, help, labels, nil)
}

var (
	descWebhooks = desc("webhook_events", "Webhook deliveries kept (within the log retention), by project and decision.",
		"project", "decision")
	descBuilds = desc("builds_total", "Finished builds, by project and status.", "project", "status")
	descDeploy = desc("deployments_total", "Finished deployments, by project, environment and status.",
		"project", "environment", "status")
	descBuildDur  = desc("build_duration_seconds", "How long finished builds ran.", "project", "status")
	descDeployDur = desc("deployment_duration_seconds", "How long finished deployments ran.",
		"project", "environment", "status")
	descWaiting  = desc("queue_waiting", "Jobs waiting to be claimed, by kind (build, deployment, notice).", "kind")
	descRunning  = desc("queue_running", "Jobs running now, by kind.", "kind")
	descOldest   = desc("queue_oldest_waiting_seconds", "How long the job that waits longest has waited (0: none waits).", "kind")
	descNotices  = desc("notices_total", "Notice deliveries that ended, by channel kind and result (sent, failed, merged).", "channel_kind", "result")
	descTakeover = desc("lease_takeovers_total", "Jobs claimed again after the lease of the process running them ran out.", "kind")
	descViewers  = desc("live_log_viewers", "Live log streams this process serves now.")
)

// statsCollector turns a store.Stats snapshot into metrics at each scrape.
type statsCollector struct {
	db                  *store.DB
	builds, deployments *durations
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWebhooks, descBuilds, descDeploy, descBuildDur, descDeployDur,
		descWaiting, descRunning, descOldest, descNotices, descTakeover, descViewers} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := c.db.ReadStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descBuilds, err)
		return
	}
	for _, n := range st.Webhooks {
		ch <- prometheus.MustNewConstMetric(descWebhooks, prometheus.GaugeValue, float64(n.N), n.Project, n.Status)
	}
	for _, n := range st.Builds {
		if n.Status != store.BuildPending && n.Status != store.BuildRunning {
			ch <- prometheus.MustNewConstMetric(descBuilds, prometheus.CounterValue, float64(n.N), n.Project, n.Status)
		}
	}
	for _, n := range st.Deployments {
		if n.Status != store.DeploymentQueued && n.Status != store.DeploymentRunning {
			ch <- prometheus.MustNewConstMetric(descDeploy, prometheus.CounterValue, float64(n.N), n.Project, n.Environment, n.Status)
		}
	}
	for _, n := range st.Deliveries {
		if n.Status != "pending" {
			ch <- prometheus.MustNewConstMetric(descNotices, prometheus.CounterValue, float64(n.N), n.Kind, n.Status)
		}
	}
	for _, d := range []*durations{c.builds, c.deployments} {
		if err := d.collect(ctx, c.db, ch); err != nil {
			ch <- prometheus.NewInvalidMetric(d.desc, err)
		}
	}
	now := time.Now()
	for _, q := range st.Queues {
		ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(q.Waiting), q.Kind)
		ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(q.Running), q.Kind)
		age := 0.0
		if !q.Oldest.IsZero() {
			age = max(now.Sub(q.Oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age, q.Kind)
	}
	ch <- prometheus.MustNewConstMetric(descTakeover, prometheus.CounterValue, float64(st.BuildTakeovers), store.JobBuild)
	ch <- prometheus.MustNewConstMetric(descTakeover, prometheus.CounterValue, float64(st.DeploymentTakeovers), store.JobDeployment)
	ch <- prometheus.MustNewConstMetric(descViewers, prometheus.GaugeValue, float64(st.LogViewers))
}

// durations keeps the histograms of one kind of job. Finished jobs never change, so each
// scrape reads only the jobs from the oldest one that had not finished at the last scrape on,
// and counts each job once.
type durations struct {
	kind   string
	desc   *prometheus.Desc
	bounds []float64

	mu      sync.Mutex
	from    int64          // read jobs with an id of at least this
	counted map[int64]bool // ids >= from already in hists
	hists   map[durationKey]*histogram
}

type durationKey struct{ project, env, status string }

type histogram struct {
	count   uint64
	sum     float64
	buckets map[float64]uint64
}

func newDurations(kind string, bounds []float64) *durations {
	d := &durations{kind: kind, desc: descBuildDur, bounds: bounds, counted: map[int64]bool{}, hists: map[durationKey]*histogram{}}
	if kind == store.JobDeployment {
		d.desc = descDeployDur
	}
	return d
}

func (d *durations) collect(ctx context.Context, db *store.DB, ch chan<- prometheus.Metric) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	timings, firstOpen, err := db.ReadTimings(ctx, d.kind, d.from)
	if err != nil {
		return err
	}
	next := d.from
	for _, t := range timings {
		next = max(next, t.ID+1)
		if d.counted[t.ID] {
			continue
		}
		d.counted[t.ID] = true
		d.observe(t)
	}
	if firstOpen > 0 {
		next = firstOpen
	}
	for id := range d.counted {
		if id < next {
			delete(d.counted, id)
		}
	}
	d.from = next
	for k, h := range d.hists {
		labels := []string{k.project, k.status}
		if d.kind == store.JobDeployment {
			labels = []string{k.project, k.env, k.status}
		}
		ch <- prometheus.MustNewConstHistogram(d.desc, h.count, h.sum, h.buckets, labels...)
	}
	return nil
}

func (d *durations) observe(t store.Timing) {
	k := durationKey{t.Project, t.Environment, t.Status}
	h := d.hists[k]
	if h == nil {
		h = &histogram{buckets: make(map[float64]uint64, len(d.bounds))}
		d.hists[k] = h
	}
	h.count++
	h.sum += t.Seconds
	for _, b := range d.bounds {
		if t.Seconds <= b {
			h.buckets[b]++ // cumulative, as Prometheus wants
		}
	}
}
