package notify

import (
	"sync"
	"time"
)

// Limit is how many messages a target accepts in a sliding window. A zero Count means no limit.
type Limit struct {
	Count int
	Per   time.Duration
}

// LimitFor returns the documented rate limit of a channel kind: DingTalk and WeCom robots
// take 20 messages a minute, Feishu bots 5 a second; mail and webhooks are not limited.
func LimitFor(kind string) Limit {
	switch kind {
	case KindDingTalk, KindWeCom:
		return Limit{Count: 20, Per: time.Minute}
	case KindFeishu:
		return Limit{Count: 5, Per: time.Second}
	default:
		return Limit{}
	}
}

// Plan is what a Limiter decided for one target at one moment.
type Plan struct {
	// Now are the messages to send now, in order. A message with Event Digest stands for the
	// messages in its Merged field: when it is delivered, so are they.
	Now []Message
	// Later are the pending messages that must wait; ask again at At with them (and any newer).
	Later []Message
	// At is when a slot opens for Later; zero when nothing waits.
	At time.Time
}

// Limiter plans sends per target (a robot URL) within its rate limit. It never sleeps and
// never drops a message: messages beyond the limit wait, and when their turn comes all the
// messages that had to wait go out merged into one Digest. Time is passed in, so a fake
// clock tests it. A Limiter is safe for concurrent use; its memory is this process only.
type Limiter struct {
	mu      sync.Mutex
	targets map[string]*targetState
}

type targetState struct {
	sent     []time.Time // send times within the last window, oldest first
	backlog  bool        // some messages had to wait at the last plan
	blockTil time.Time   // the platform asked for a pause until then
}

// NewLimiter returns a Limiter that has sent nothing yet.
func NewLimiter() *Limiter {
	return &Limiter{targets: make(map[string]*targetState)}
}

// Plan decides, for the pending messages of target at time now, which to send now and which
// wait until when. It counts the messages in Plan.Now as sent at now (a digest counts once).
// Pending messages go out one by one while slots are free; messages that had to wait go out,
// at the next free slot, as one Digest when there are more than one of them.
func (l *Limiter) Plan(target string, limit Limit, pending []Message, now time.Time) Plan {
	if len(pending) == 0 {
		return Plan{}
	}
	if limit.Count <= 0 || limit.Per <= 0 {
		return Plan{Now: pending}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.state(target)
	st.prune(now, limit.Per)
	if now.Before(st.blockTil) {
		st.backlog = true
		return Plan{Later: pending, At: st.blockTil}
	}
	free := limit.Count - len(st.sent)
	switch {
	case free <= 0:
		st.backlog = true
		return Plan{Later: pending, At: st.sent[0].Add(limit.Per)}
	case st.backlog && len(pending) > 1:
		st.backlog = false
		st.sent = append(st.sent, now)
		return Plan{Now: []Message{MergeDigest(pending)}}
	case len(pending) <= free:
		st.backlog = false
		st.record(now, len(pending))
		return Plan{Now: pending}
	default:
		st.backlog = true
		st.record(now, free)
		return Plan{Now: pending[:free], Later: pending[free:], At: st.sent[0].Add(limit.Per)}
	}
}

// Block makes target wait until until, as after a platform's "sending too fast" answer: the
// next Plan before then sends nothing, and what waited goes out as one Digest afterwards.
func (l *Limiter) Block(target string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.state(target)
	if until.After(st.blockTil) {
		st.blockTil = until
	}
}

func (l *Limiter) state(target string) *targetState {
	st, ok := l.targets[target]
	if !ok {
		st = &targetState{}
		l.targets[target] = st
	}
	return st
}

// prune forgets sends that left the window.
func (st *targetState) prune(now time.Time, per time.Duration) {
	keep := 0
	for keep < len(st.sent) && !st.sent[keep].Add(per).After(now) {
		keep++
	}
	st.sent = append(st.sent[:0], st.sent[keep:]...)
}

func (st *targetState) record(now time.Time, n int) {
	for range n {
		st.sent = append(st.sent, now)
	}
}

// MergeDigest returns one message standing for msgs: Event Digest, the common project (or
// none), and msgs in Merged (a digest among msgs is flattened). Secrets of all are kept.
func MergeDigest(msgs []Message) Message {
	d := Message{Event: Digest}
	for _, m := range msgs {
		if m.Event == Digest {
			d.Merged = append(d.Merged, m.Merged...)
		} else {
			d.Merged = append(d.Merged, m)
		}
		d.Secrets = append(d.Secrets, m.Secrets...)
		if m.Time.After(d.Time) {
			d.Time = m.Time
		}
	}
	if len(d.Merged) > 0 {
		d.Project = d.Merged[0].Project
		for _, m := range d.Merged {
			if m.Project != d.Project {
				d.Project = ""
				break
			}
		}
	}
	return d
}
