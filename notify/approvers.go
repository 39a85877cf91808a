package notify

import (
	"context"
	"slices"
	"strings"

	"ferry/store"
)

// forApprovers reports whether a send is a mail asking for a deployment's approval, which goes
// to the people who may approve it (and the channel's own recipients) rather than to every
// member of the project.
func forApprovers(ch *store.Channel, b batch) bool {
	if ch.Kind != store.ChannelEmail || len(b) != 1 {
		return false
	}
	d := b[0].d
	return d.Event == store.OutboxDeploymentAwaitingApproval && d.JobKind == store.JobDeployment ||
		d.Event == store.OutboxRunAwaitingApproval && d.JobKind == store.JobRunLog
}

// approverSender returns a mail sender for the channel addressed to the people who may still
// decide on deployment id.
func (w *Worker) approverSender(ctx context.Context, ch *store.Channel, kind string, id int64) (Sender, error) {
	c := Channel{Kind: senderKind(ch.Kind), URL: ch.URL, Secret: ch.Secret, Keyword: ch.Keyword, Format: ch.Format,
		Recipients: slices.Clone(ch.Recipients)}
	emails := w.DB.ApproverEmails
	if kind == store.JobRunLog {
		emails = w.DB.RunApproverEmails
	}
	approvers, err := emails(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, a := range approvers {
		if !slices.ContainsFunc(c.Recipients, func(r string) bool { return strings.EqualFold(r, a) }) {
			c.Recipients = append(c.Recipients, a)
		}
	}
	if len(c.Recipients) == 0 {
		return nil, store.Errorf(store.EINVALID, "nobody who may approve %s %d has a mail address", kind, id)
	}
	if w.NewSender != nil {
		return w.NewSender(c)
	}
	return New(c, w.Options)
}
