package notify

import (
	"context"
	"fmt"

	"ferry/store"
)

// runNotice fills a message about job run id: its project, job, who it acts for, its hosts
// and, once it ended, why (the log's last lines).
func (w *Worker) runNotice(ctx context.Context, id int64, m *Message) error {
	r, err := w.DB.GetJobRun(ctx, id)
	if err != nil {
		return fmt.Errorf("run %d: %w", id, err)
	}
	m.Project, m.Job, m.TriggeredBy = r.Project, r.Job, r.TriggeredBy
	m.Duration = elapsed(r.StartedAt, r.FinishedAt)
	m.URL = w.link("runs", id)
	for _, s := range r.Steps {
		for _, h := range s.Hosts {
			if h.Status == store.HostFailed {
				m.HostsFailed = append(m.HostsFailed, h.Host)
			}
		}
	}
	if r.Error != "" {
		m.LogTail = []string{r.Error}
	}
	return nil
}
