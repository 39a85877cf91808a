package handlers

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
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
		&statsCollector{db: cfg.DB},
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
type statsCollector struct{ db *store.DB }

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
	histograms(ch, descBuildDur, buildBuckets, st.BuildTimings, false)
	histograms(ch, descDeployDur, deploymentBuckets, st.DeploymentTimings, true)
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

// histograms sends one histogram per label set of timings (project and status, plus the
// environment when withEnv).
func histograms(ch chan<- prometheus.Metric, d *prometheus.Desc, bounds []float64, timings []store.Timing, withEnv bool) {
	type key struct{ project, env, status string }
	type hist struct {
		count   uint64
		sum     float64
		buckets map[float64]uint64
	}
	all := map[key]*hist{}
	for _, t := range timings {
		k := key{t.Project, t.Environment, t.Status}
		h := all[k]
		if h == nil {
			h = &hist{buckets: make(map[float64]uint64, len(bounds))}
			all[k] = h
		}
		h.count++
		h.sum += t.Seconds
		for _, b := range bounds {
			if t.Seconds <= b {
				h.buckets[b]++ // cumulative, as Prometheus wants
			}
		}
	}
	for k, h := range all {
		labels := []string{k.project, k.status}
		if withEnv {
			labels = []string{k.project, k.env, k.status}
		}
		ch <- prometheus.MustNewConstHistogram(d, h.count, h.sum, h.buckets, labels...)
	}
}
