package notify

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"ferry/store"
)

// buildMessage builds the message of a delivery from its job as the store has it now, with
// the project's secrets already masked, so that the stored message holds none.
func (w *Worker) buildMessage(ctx context.Context, d *store.Delivery) (Message, error) {
	m := Message{Event: Event(d.Event), Time: d.CreatedAt}
	var err error
	switch d.JobKind {
	case store.JobBuild:
		err = w.buildNotice(ctx, d.JobID, &m)
	case store.JobDeployment:
		err = w.deploymentNotice(ctx, d.JobID, &m)
	case store.JobRunLog:
		err = w.runNotice(ctx, d.JobID, &m)
	default:
		err = store.Errorf(store.ENOTFOUND, "job kind %q is unknown", d.JobKind)
	}
	if err != nil {
		return m, err
	}
	if d.ProjectID != nil {
		if p, err := w.DB.GetProjectByID(ctx, *d.ProjectID); err == nil {
			m.Secrets = []string{p.WebhookSecret, p.GitLabToken}
		}
	}
	return maskMessage(m, nil), nil
}

func (w *Worker) buildNotice(ctx context.Context, id int64, m *Message) error {
	b, err := w.DB.GetBuild(ctx, id)
	if err != nil {
		return fmt.Errorf("build %d: %w", id, err)
	}
	m.Project, m.Version, m.TriggeredBy = b.Project, b.Version, b.TriggeredBy
	m.Commit = Commit{SHA: store.ShortSHA(b.SHA), Author: b.CommitAuthor, Title: firstLine(b.CommitTitle)}
	m.Duration = elapsed(b.StartedAt, b.FinishedAt)
	m.URL = w.link("builds", id)
	if m.Failed() {
		m.LogTail, err = w.logTail(ctx, store.JobBuild, id, "", b.Error)
	}
	return err
}

func (w *Worker) deploymentNotice(ctx context.Context, id int64, m *Message) error {
	dep, err := w.DB.GetDeployment(ctx, id)
	if err != nil {
		return fmt.Errorf("deployment %d: %w", id, err)
	}
	m.Project, m.Version, m.Environment, m.TriggeredBy = dep.Project, dep.Version, dep.Environment, dep.TriggeredBy
	m.Duration = elapsed(dep.StartedAt, dep.FinishedAt)
	m.URL = w.link("deployments", id)
	failedHost := ""
	for _, h := range dep.Hosts {
		switch h.Status {
		case store.HostSucceeded:
			m.HostsOK = append(m.HostsOK, h.Host)
		case store.HostFailed:
			m.HostsFailed = append(m.HostsFailed, h.Host)
			if failedHost == "" {
				failedHost = h.Host
			}
		}
	}
	m.Commit = w.commitOf(ctx, dep.VersionID)
	if m.Failed() {
		m.LogTail, err = w.logTail(ctx, store.JobDeployment, id, failedHost, dep.Error)
	}
	return err
}

// commitOf returns the commit a version was built from; the commit is a detail, so a version
// or build that cannot be read leaves it empty.
func (w *Worker) commitOf(ctx context.Context, versionID int64) Commit {
	v, err := w.DB.GetVersion(ctx, versionID)
	if err != nil {
		return Commit{}
	}
	b, err := w.DB.GetBuild(ctx, v.BuildID)
	if err != nil {
		return Commit{SHA: store.ShortSHA(v.SHA)}
	}
	return Commit{SHA: store.ShortSHA(b.SHA), Author: b.CommitAuthor, Title: firstLine(b.CommitTitle)}
}

// logTail returns the last MaxLogLines lines of the failing log: the failed host's lines of a
// deployment (all its lines when no host failed or that host logged nothing), or the build's;
// the job's error when the log is empty.
func (w *Worker) logTail(ctx context.Context, kind string, id int64, host, jobError string) ([]string, error) {
	lines, err := w.DB.LogTail(ctx, kind, id, host, MaxLogLines)
	if err == nil && len(lines) == 0 && host != "" {
		lines, err = w.DB.LogTail(ctx, kind, id, "", MaxLogLines)
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(lines)+1)
	for _, l := range lines {
		out = append(out, l.Text)
	}
	if len(out) == 0 && jobError != "" {
		out = append(out, jobError)
	}
	return out, nil
}

func (w *Worker) link(kind string, id int64) string {
	if w.BaseURL == "" {
		return ""
	}
	return strings.TrimRight(w.BaseURL, "/") + "/" + kind + "/" + strconv.FormatInt(id, 10)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

func elapsed(start, end *time.Time) time.Duration {
	if start == nil || end == nil || end.Before(*start) {
		return 0
	}
	return end.Sub(*start)
}
