package notify

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"ferry/store"
	"ferry/store/runner"
)

// Worker defaults.
const (
	DefaultPoll     = 500 * time.Millisecond
	DefaultSenders  = 4
	DefaultLeaseTTL = runner.DefaultLease
	outboxBatch     = 100
	deliveryBatch   = 100
)

// Worker sends the notices that builds and deployments leave in the store's outbox. Each pass
// turns outbox entries into deliveries (one per matching channel), then serves channels with
// deliveries due: it builds each notice from its job once, keeps the channel's rate limit
// (counted from the store, so the same in every process) by merging the excess into one digest,
// sends, and records the outcome with a retry time where another try makes sense. A build or
// deployment never waits for it: they only write the outbox.
type Worker struct {
	DB *store.DB
	// NewSender returns the sender of a channel; nil means New(ch, Options).
	NewSender func(ch Channel) (Sender, error)
	// Options are passed to New.
	Options Options
	// BaseURL is where users reach ferry; links in notices start with it.
	BaseURL string
	// Owner names this process in channel leases; default host name and process id.
	Owner string
	// Logger receives failed deliveries at warn level; nil discards.
	Logger *slog.Logger
	// Poll is the pause between passes; default DefaultPoll.
	Poll time.Duration
	// Senders is how many channels are served at once; default DefaultSenders.
	Senders int
	// LeaseTTL is how long a channel stays claimed without renewal; default DefaultLeaseTTL.
	// The runner renews it every LeaseTTL/3 while a sender serves the channel.
	LeaseTTL time.Duration
}

// deliveryStore is what the notice runner needs of the store: the channels as a queue, and
// the writes of a delivery's outcome fenced by the channel's lease.
type deliveryStore interface {
	QueueDeliveries(ctx context.Context, limit int) (int, error)
	ClaimChannel(ctx context.Context, lease string, ttl time.Duration, limit int) (*store.Channel, []*store.Delivery, error)
	RenewChannel(ctx context.Context, id int64, lease string, ttl time.Duration) error
	ReleaseChannel(ctx context.Context, id int64, lease string, pausedUntil time.Time) error
	RecordChannelDelivery(ctx context.Context, channelID int64, lease string, ids []int64, o store.DeliveryOutcome) error
	PostponeChannelDeliveries(ctx context.Context, channelID int64, lease string, ids []int64, at time.Time) error
}

// claimedChannel is a channel a sender holds, with its deliveries due.
type claimedChannel struct {
	ch  *store.Channel
	due []*store.Delivery
}

// Run sends notices with Senders senders until ctx ends, then returns nil. Each sender claims
// a channel with deliveries due (after turning new outbox entries into deliveries), serves it
// under a lease the runner renews, and releases it.
func (w *Worker) Run(ctx context.Context) error {
	r := runner.New(runner.Config{Owner: w.owner(), Workers: cmp.Or(w.Senders, DefaultSenders),
		Lease: w.leaseTTL(), Poll: cmp.Or(w.Poll, DefaultPoll), Logger: w.logger()}, w.kind(w.DB))
	return r.Run(ctx)
}

// kind is what serving a channel is to the runner.
func (w *Worker) kind(db deliveryStore) runner.Kind[claimedChannel] {
	return runner.Kind[claimedChannel]{
		Name: "notice",
		Claim: func(ctx context.Context, lease string, ttl time.Duration) (claimedChannel, int64, error) {
			if err := queueAll(ctx, db); err != nil {
				return claimedChannel{}, 0, err
			}
			ch, due, err := db.ClaimChannel(ctx, lease, ttl, deliveryBatch)
			if err != nil || ch == nil {
				return claimedChannel{}, 0, err
			}
			return claimedChannel{ch, due}, ch.ID, nil
		},
		Renew: func(ctx context.Context, id int64, lease string, ttl time.Duration) (bool, error) {
			return false, db.RenewChannel(ctx, id, lease, ttl)
		},
		Release: func(ctx context.Context, id int64, lease string) error {
			return db.ReleaseChannel(ctx, id, lease, time.Time{})
		},
		Work: func(ctx context.Context, job *runner.Job[claimedChannel]) {
			w.serveChannel(ctx, job.Value.ch, job.Lease, job.Value.due)
		},
	}
}

// queueAll turns every outbox entry there is into deliveries.
func queueAll(ctx context.Context, db deliveryStore) error {
	for {
		n, err := db.QueueDeliveries(ctx, outboxBatch)
		if err != nil || n < outboxBatch {
			return err
		}
	}
}

func (w *Worker) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

func (w *Worker) owner() string {
	if w.Owner == "" {
		host, _ := os.Hostname()
		w.Owner = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return w.Owner
}

func (w *Worker) leaseTTL() time.Duration { return cmp.Or(w.LeaseTTL, DefaultLeaseTTL) }

func (w *Worker) now() time.Time { return w.DB.Now().UTC() }

// notice is a delivery with the message it carries.
type notice struct {
	d   *store.Delivery
	msg Message
}

// batch is what goes out in one send: one notice, or several merged into a digest.
type batch []notice

func (b batch) ids() []int64 {
	ids := make([]int64, len(b))
	for i, n := range b {
		ids[i] = n.d.ID
	}
	return ids
}

// serveChannel sends a claimed channel's due deliveries and releases it; it returns the number of sends.
func (w *Worker) serveChannel(ctx context.Context, ch *store.Channel, lease string, due []*store.Delivery) int {
	var pausedUntil time.Time
	defer func() {
		if err := w.DB.ReleaseChannel(context.WithoutCancel(ctx), ch.ID, lease, pausedUntil); err != nil {
			w.logger().Warn("release notify channel", "channel", ch.ID, "error", err)
		}
	}()
	if !ch.Enabled {
		w.record(ctx, ch, lease, batch(w.bare(due)), store.DeliveryOutcome{Error: "the channel is disabled"})
		return 0
	}
	notices := w.prepare(ctx, ch, lease, due)
	now := w.now()
	sends, later, at, err := w.plan(ctx, ch, notices, now)
	if err != nil {
		w.logger().Warn("plan notify sends", "channel", ch.ID, "error", err)
		return 0
	}
	w.postpone(ctx, ch, lease, later, at)
	senders := map[int64]Sender{}
	count := 0
	for i, b := range sends {
		if ctx.Err() != nil {
			return count
		}
		wait := w.send(ctx, ch, lease, b, senders)
		count++
		if wait > 0 {
			pausedUntil = w.now().Add(wait)
			var rest batch
			for _, r := range sends[i+1:] {
				rest = append(rest, r...)
			}
			w.postpone(ctx, ch, lease, rest, pausedUntil)
			return count
		}
	}
	return count
}

func (w *Worker) bare(due []*store.Delivery) []notice {
	out := make([]notice, len(due))
	for i, d := range due {
		out[i] = notice{d: d}
	}
	return out
}

func (w *Worker) postpone(ctx context.Context, ch *store.Channel, lease string, b batch, at time.Time) {
	if len(b) == 0 {
		return
	}
	if err := w.DB.PostponeChannelDeliveries(context.WithoutCancel(ctx), ch.ID, lease, b.ids(), at); err != nil {
		w.logger().Warn("postpone notices", "error", err)
	}
}

// plan splits notices into sends within the channel's rate limit: one send per notice while
// the platform's window has room, and, when there are more notices than room, the last free
// slot carries all the rest merged into one digest. When the window is full, every notice
// waits (later) until at, when its oldest send leaves the window.
func (w *Worker) plan(ctx context.Context, ch *store.Channel, notices []notice, now time.Time) (sends []batch, later batch, at time.Time, err error) {
	if len(notices) == 0 {
		return nil, nil, time.Time{}, nil
	}
	limit := LimitFor(senderKind(ch.Kind))
	free := len(notices)
	if limit.Count > 0 && limit.Per > 0 {
		sent, err := w.DB.SentSince(ctx, ch.ID, now.Add(-limit.Per))
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		free = limit.Count - len(sent)
		if free <= 0 {
			return nil, notices, sent[len(sent)-limit.Count].Add(limit.Per), nil
		}
	}
	for i, n := range notices {
		if i == free-1 && len(notices) > free {
			return append(sends, batch(notices[i:])), nil, time.Time{}, nil
		}
		sends = append(sends, batch{n})
	}
	return sends, nil, time.Time{}, nil
}

// send posts one batch and records the outcome. It returns the pause the platform asked for
// (its rate limit was hit), or 0.
func (w *Worker) send(ctx context.Context, ch *store.Channel, lease string, b batch, senders map[int64]Sender) time.Duration {
	msg := b[0].msg
	if len(b) > 1 {
		msgs := make([]Message, len(b))
		for i, n := range b {
			msgs[i] = n.msg
		}
		msg = MergeDigest(msgs)
	}
	msg.ID = strconv.FormatInt(b[0].d.ID, 10)
	projectID := int64(0)
	if ch.Kind == store.ChannelEmail && b[0].d.ProjectID != nil {
		projectID = *b[0].d.ProjectID
	}
	var sender Sender
	var err error
	if forApprovers(ch, b) {
		sender, err = w.approverSender(ctx, ch, b[0].d.JobKind, b[0].d.JobID)
	} else {
		sender, err = w.senderFor(ctx, ch, projectID, senders)
	}
	if err == nil {
		err = sender.Send(ctx, msg)
	}
	if err != nil && ctx.Err() != nil {
		return 0 // stopping: the deliveries stay pending, no try counted
	}
	if err == nil {
		w.record(ctx, ch, lease, b, store.DeliveryOutcome{Sent: true})
		return 0
	}
	attempts := 0
	for _, n := range b {
		attempts = max(attempts, n.d.Attempts)
	}
	outcome := store.DeliveryOutcome{Error: publicFailureText(err), Answer: failureText(err)}
	if again, wait := NextTry(err, attempts+1); again {
		retry := w.now().Add(wait)
		outcome.RetryAt = &retry
	}
	w.logger().Warn("notice not delivered", "channel", ch.ID, "kind", ch.Kind, "deliveries", b.ids(), "error", outcome.Answer, "retry", outcome.RetryAt != nil)
	w.record(ctx, ch, lease, b, outcome)
	return SuggestedWait(err)
}

// failureText is an error as administrators read it on the deliveries page: with what the
// server said.
func failureText(err error) string {
	var se *store.Error
	if errors.As(err, &se) {
		return se.Message
	}
	return err.Error()
}

// publicFailureText is an error as everyone else reads it: without the server's own words.
func publicFailureText(err error) string {
	var se *store.Error
	if errors.As(err, &se) {
		return se.Message
	}
	return PublicText(err)
}

// record writes a send's outcome, fenced by the lease on the channel: once another sender
// holds the channel, nothing of this one's is recorded.
func (w *Worker) record(ctx context.Context, ch *store.Channel, lease string, b batch, o store.DeliveryOutcome) {
	if err := w.DB.RecordChannelDelivery(context.WithoutCancel(ctx), ch.ID, lease, b.ids(), o); err != nil {
		w.logger().Error("record notice delivery", "channel", ch.ID, "error", err)
	}
}

// senderFor returns the sender of a channel; a mail channel's for one project also mails the
// project's members.
func (w *Worker) senderFor(ctx context.Context, ch *store.Channel, projectID int64, cache map[int64]Sender) (Sender, error) {
	if s, ok := cache[projectID]; ok {
		return s, nil
	}
	c, err := w.channelFor(ctx, ch, projectID)
	if err != nil {
		return nil, err
	}
	newSender := w.NewSender
	if newSender == nil {
		newSender = func(c Channel) (Sender, error) { return New(c, w.Options) }
	}
	s, err := newSender(c)
	if err != nil {
		return nil, err
	}
	cache[projectID] = s
	return s, nil
}

// channelFor turns a stored channel into the senders' Channel.
func (w *Worker) channelFor(ctx context.Context, ch *store.Channel, projectID int64) (Channel, error) {
	c := Channel{Kind: senderKind(ch.Kind), URL: ch.URL, Secret: ch.Secret, Keyword: ch.Keyword, Format: ch.Format,
		Recipients: slices.Clone(ch.Recipients)}
	if ch.Kind != store.ChannelEmail || projectID == 0 {
		return c, nil
	}
	members, err := w.DB.MemberEmails(ctx, projectID)
	if err != nil {
		return c, err
	}
	for _, m := range members {
		if !slices.ContainsFunc(c.Recipients, func(r string) bool { return strings.EqualFold(r, m) }) {
			c.Recipients = append(c.Recipients, m)
		}
	}
	return c, nil
}

// senderKind maps a stored channel kind to the senders' kind.
func senderKind(kind string) string {
	if kind == store.ChannelEmail {
		return KindMail
	}
	return kind
}

// Test sends a test message to ch now, outside the queue. It returns nil when the platform
// accepted it, a *store.Error when the channel cannot be used as configured (or, with code
// EINTERNAL, when the store failed), and otherwise the platform's answer as a *SendError.
func (w *Worker) Test(ctx context.Context, ch *store.Channel) error {
	projectID := int64(0)
	if ch.ProjectID != nil {
		projectID = *ch.ProjectID
	}
	c, err := w.channelFor(ctx, ch, projectID)
	if err != nil {
		return store.Errorf(store.EINTERNAL, "test channel %d: %v", ch.ID, err)
	}
	newSender := w.NewSender
	if newSender == nil {
		newSender = func(c Channel) (Sender, error) { return New(c, w.Options) }
	}
	s, err := newSender(c)
	if err != nil {
		return err
	}
	project := ch.Project
	if project == "" {
		project = "ferry"
	}
	return s.Send(ctx, Message{ID: "test-" + strconv.FormatInt(ch.ID, 10), Event: TestEvent, Project: project,
		TriggeredBy: "the test button of channel " + strconv.FormatInt(ch.ID, 10), URL: w.BaseURL, Time: w.now()})
}

// TestEvent is the event of a test message.
const TestEvent Event = "test"

// prepare returns the notices of the due deliveries, building and storing the message of those
// that have none yet. A delivery whose message cannot be built is recorded as failed (its job is
// gone) or tried again later (the store failed), and left out.
func (w *Worker) prepare(ctx context.Context, ch *store.Channel, lease string, due []*store.Delivery) []notice {
	built := map[string]Message{}
	var out []notice
	for _, d := range due {
		m, err := w.message(ctx, d, built)
		if err != nil {
			o := store.DeliveryOutcome{Error: "build the notice: " + failureText(err)}
			if !store.IsNotFound(err) {
				retry := w.now().Add(Backoff(d.Attempts + 1))
				o.RetryAt = &retry
			}
			w.record(ctx, ch, lease, batch{{d: d}}, o)
			continue
		}
		out = append(out, notice{d: d, msg: m})
	}
	return out
}

// message returns a delivery's message: the stored one, or one built from its job (once per
// job and event in a pass) and stored.
func (w *Worker) message(ctx context.Context, d *store.Delivery, built map[string]Message) (Message, error) {
	var m Message
	if d.Message != "" {
		err := json.Unmarshal([]byte(d.Message), &m)
		return m, err
	}
	key := fmt.Sprintf("%s/%d/%s", d.JobKind, d.JobID, d.Event)
	m, ok := built[key]
	if !ok {
		var err error
		if m, err = w.buildMessage(ctx, d); err != nil {
			return m, err
		}
		built[key] = m
	}
	data, err := json.Marshal(m)
	if err != nil {
		return m, err
	}
	return m, w.DB.SetDeliveryMessage(ctx, d.ID, m.Title(), string(data))
}
