package notify

import (
	"fmt"
	"testing"
	"time"
)

func numbered(n int) []Message {
	var ms []Message
	for i := 1; i <= n; i++ {
		ms = append(ms, Message{ID: fmt.Sprint(i), Event: BuildFailed, Project: "orders", Version: fmt.Sprintf("v%d", i)})
	}
	return ms
}

// delivered returns the ids of the notices a plan delivers, digests unpacked.
func delivered(p Plan) []string {
	var ids []string
	for _, m := range p.Now {
		if m.Event == Digest {
			for _, sub := range m.Merged {
				ids = append(ids, sub.ID)
			}
			continue
		}
		ids = append(ids, m.ID)
	}
	return ids
}

// queue simulates the worker: notices arrive at given times, and at every arrival and every
// wake-up time the pending ones are planned and what is planned now is "sent".
type queue struct {
	limiter *Limiter
	limit   Limit
	pending []Message
	wake    time.Time
	sends   []sent
}

type sent struct {
	at  time.Time
	msg Message
}

func (q *queue) tick(now time.Time) {
	p := q.limiter.Plan("https://oapi.dingtalk.com/robot/send?access_token=x", q.limit, q.pending, now)
	for _, m := range p.Now {
		q.sends = append(q.sends, sent{now, m})
	}
	q.pending, q.wake = p.Later, p.At
}

func TestLimiterTwentyFiveToDingTalkInOneMinute(t *testing.T) {
	start := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, spread := range []time.Duration{0, 2 * time.Second} { // all at once; one every 2 s
		t.Run(fmt.Sprintf("one every %v", spread), func(t *testing.T) {
			q := &queue{limiter: NewLimiter(), limit: LimitFor(KindDingTalk)}
			now := start
			for _, m := range numbered(25) {
				q.pending = append(q.pending, m)
				q.tick(now)
				now = now.Add(spread)
			}
			if len(q.sends) != 20 || len(q.pending) != 5 {
				t.Fatalf("within the minute: %d sent, %d waiting; want 20 and 5", len(q.sends), len(q.pending))
			}
			if want := start.Add(time.Minute); !q.wake.Equal(want) {
				t.Fatalf("wake-up at %v, want %v (when the first send leaves the window)", q.wake, want)
			}
			q.tick(start.Add(30 * time.Second)) // too early: still nothing
			if len(q.sends) != 20 {
				t.Fatalf("sent %d before the window ended", len(q.sends))
			}
			q.tick(q.wake)
			if len(q.sends) != 21 || len(q.pending) != 0 {
				t.Fatalf("after the window: %d sent, %d waiting; want 21 and 0", len(q.sends), len(q.pending))
			}
			digest := q.sends[20].msg
			if digest.Event != Digest || len(digest.Merged) != 5 || digest.Merged[0].ID != "21" || digest.Merged[4].ID != "25" {
				t.Fatalf("last send = %+v, want a digest of notices 21..25", digest)
			}
			if got := digest.Title(); got[:16] != "5 more notices: " {
				t.Errorf("digest title = %q", got)
			}
			seen := map[string]bool{}
			for _, s := range q.sends {
				for _, id := range delivered(Plan{Now: []Message{s.msg}}) {
					seen[id] = true
				}
			}
			if len(seen) != 25 {
				t.Errorf("%d of 25 notices delivered; none may be dropped", len(seen))
			}
		})
	}
}

func TestLimiterPlans(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	feishu := LimitFor(KindFeishu)
	t.Run("under the limit everything goes", func(t *testing.T) {
		p := NewLimiter().Plan("f", feishu, numbered(5), t0)
		if len(p.Now) != 5 || len(p.Later) != 0 || !p.At.IsZero() {
			t.Errorf("plan = %d now, %d later, at %v", len(p.Now), len(p.Later), p.At)
		}
	})
	t.Run("feishu five a second", func(t *testing.T) {
		l := NewLimiter()
		p := l.Plan("f", feishu, numbered(7), t0)
		if got := delivered(p); len(got) != 5 || len(p.Later) != 2 || !p.At.Equal(t0.Add(time.Second)) {
			t.Fatalf("plan = %v now, %d later, at %v", got, len(p.Later), p.At)
		}
		p = l.Plan("f", feishu, p.Later, p.At)
		if got := delivered(p); len(p.Now) != 1 || fmt.Sprint(got) != "[6 7]" {
			t.Errorf("after a second: %d messages for %v, want one digest of 6 and 7", len(p.Now), got)
		}
	})
	t.Run("targets are independent", func(t *testing.T) {
		l := NewLimiter()
		l.Plan("a", feishu, numbered(5), t0)
		if p := l.Plan("b", feishu, numbered(5), t0); len(p.Now) != 5 {
			t.Errorf("target b got %d slots, want 5", len(p.Now))
		}
	})
	t.Run("a single waiting message is not a digest", func(t *testing.T) {
		l := NewLimiter()
		p := l.Plan("f", feishu, numbered(6), t0)
		p = l.Plan("f", feishu, p.Later, p.At)
		if len(p.Now) != 1 || p.Now[0].Event != BuildFailed || p.Now[0].ID != "6" {
			t.Errorf("plan = %+v, want notice 6 as it is", p.Now)
		}
	})
	t.Run("block after the platform says too fast", func(t *testing.T) {
		l := NewLimiter()
		l.Block("d", t0.Add(time.Minute))
		p := l.Plan("d", LimitFor(KindDingTalk), numbered(3), t0.Add(time.Second))
		if len(p.Now) != 0 || len(p.Later) != 3 || !p.At.Equal(t0.Add(time.Minute)) {
			t.Fatalf("blocked plan = %d now, %d later, at %v", len(p.Now), len(p.Later), p.At)
		}
		p = l.Plan("d", LimitFor(KindDingTalk), p.Later, t0.Add(time.Minute))
		if got := delivered(p); len(p.Now) != 1 || len(got) != 3 {
			t.Errorf("after the block: %d messages for %v, want one digest of 3", len(p.Now), got)
		}
	})
	t.Run("mail is not limited", func(t *testing.T) {
		if p := NewLimiter().Plan("m", LimitFor(KindMail), numbered(100), t0); len(p.Now) != 100 {
			t.Errorf("mail plan sends %d of 100", len(p.Now))
		}
	})
}

func TestMergeDigestFlattensAndKeepsSecrets(t *testing.T) {
	a := Message{ID: "1", Event: BuildFailed, Project: "orders", Secrets: []string{"secret-a"}}
	b := Message{ID: "2", Event: BuildFailed, Project: "billing"}
	d := MergeDigest([]Message{MergeDigest([]Message{a}), b})
	if len(d.Merged) != 2 || d.Merged[0].ID != "1" || d.Project != "" || len(d.Secrets) != 1 {
		t.Errorf("digest = %+v", d)
	}
}

func TestBackoffAndNextTry(t *testing.T) {
	prevMax := time.Duration(0)
	for attempt := 1; attempt <= 12; attempt++ {
		base := min(BackoffBase<<(attempt-1), BackoffCap)
		for range 50 {
			d := Backoff(attempt)
			if d < base/2 || d > base {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", attempt, d, base/2, base)
			}
		}
		if base < prevMax {
			t.Errorf("Backoff bound shrank at attempt %d", attempt)
		}
		prevMax = base
	}
	if Backoff(1000) > BackoffCap {
		t.Errorf("Backoff is not capped")
	}

	tooFast := retryablef("DingTalk", time.Minute, "answered errcode 130101")
	if again, wait := NextTry(tooFast, 1); !again || wait < time.Minute {
		t.Errorf("NextTry(too fast, 1) = %v, %v; want again after at least the asked minute", again, wait)
	}
	if again, _ := NextTry(tooFast, MaxAttempts); again {
		t.Errorf("NextTry allows more than MaxAttempts")
	}
	if again, _ := NextTry(permanentf("DingTalk", "sign not match"), 1); again {
		t.Errorf("NextTry retries a permanent error")
	}
}
