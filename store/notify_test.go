package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

const (
	notifyToken    = "0123456789abcdef0123456789abcdef"
	notifySMTPPass = "s3cret-smtp-pass"
)

func notifyProject(t *testing.T, db *store.DB) *store.Project {
	t.Helper()
	name := storetest.Name("p")
	p := &store.Project{Name: name, GitLabPath: "g/" + name, CloneURL: "https://x/y.git", KeepVersions: 5, Trigger: store.DefaultTrigger()}
	if err := db.CreateProject(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func notifyChannel(t *testing.T, db *store.DB, ch *store.Channel) *store.Channel {
	t.Helper()
	ch.Enabled = true
	if err := db.CreateChannel(context.Background(), ch); err != nil {
		t.Fatalf("CreateChannel: %v", err)
	}
	return ch
}

func TestChannelsKeepURLAndSecretEncrypted(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			u := storetest.URL(t, d)
			db := storetest.OpenURL(t, u)
			ctx := context.Background()
			p := notifyProject(t, db)
			robot := notifyChannel(t, db, &store.Channel{ProjectID: &p.ID, Kind: store.ChannelDingTalk, Secret: "SECsign-secret",
				URL: "https://oapi.dingtalk.com/robot/send?access_token=" + notifyToken, Events: []string{"build.failed"}, Keyword: "ferry"})
			mail := notifyChannel(t, db, &store.Channel{Kind: store.ChannelEmail, URL: "smtps://ops:" + notifySMTPPass + "@mail.example.com:465",
				Events: store.ChannelEvents, Recipients: []string{"Ops <ops@example.com>"}})

			got, err := db.GetChannel(ctx, robot.ID)
			if err != nil || got.URL != robot.URL || got.Secret != "SECsign-secret" || got.Project != p.Name {
				t.Fatalf("GetChannel = %+v, %v", got, err)
			}
			if got, _ := db.GetChannel(ctx, mail.ID); got.ProjectID != nil || got.Recipients[0] != "ops@example.com" {
				t.Errorf("global mail channel read back as %+v", got)
			}
			if list, _ := db.ListChannels(ctx, p.ID); len(list) != 1 || list[0].ID != robot.ID {
				t.Errorf("project channels = %v", list)
			}
			if list, _ := db.ListChannels(ctx, 0); len(list) != 1 || list[0].ID != mail.ID {
				t.Errorf("global channels = %v", list)
			}
			raw := notifyRawDump(t, d, u, `SELECT url_enc || ' ' || secret_enc FROM channels`)
			for _, secret := range []string{notifyToken, "SECsign-secret", notifySMTPPass} {
				if strings.Contains(raw, secret) {
					t.Errorf("the database holds %q in clear: %s", secret, raw)
				}
			}
			audit, _ := db.ListAudit(ctx, store.AuditFilter{})
			for _, a := range audit {
				if strings.Contains(a.Detail, notifyToken) || strings.Contains(a.Detail, notifySMTPPass) {
					t.Errorf("audit entry shows a secret: %+v", a)
				}
			}
		})
	}
}

// rawDump returns the rows of query as one string, read past the store.
func notifyRawDump(t *testing.T, d store.Dialect, u, query string) string {
	t.Helper()
	driver, dsn := "postgres", u
	if d == store.SQLite {
		driver, dsn = "sqlite", "file:"+strings.TrimPrefix(u, "sqlite:")
	}
	raw, err := sqlx.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var rows []string
	if err := raw.Select(&rows, query); err != nil {
		t.Fatal(err)
	}
	return strings.Join(rows, "\n")
}

func TestChannelValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		p := notifyProject(t, db)
		ok := func() store.Channel {
			return store.Channel{ProjectID: &p.ID, Kind: store.ChannelDingTalk, URL: "https://oapi.dingtalk.com/robot/send?access_token=" + notifyToken,
				Events: []string{"build.failed"}, Enabled: true}
		}
		tests := []struct {
			name, field string
			change      func(ch *store.Channel)
		}{
			{"unknown kind", "kind:", func(ch *store.Channel) { ch.Kind = "pager" }},
			{"no url", "url:", func(ch *store.Channel) { ch.URL = "" }},
			{"robot url not http", "url:", func(ch *store.Channel) { ch.URL = "ftp://x/y?access_token=" + notifyToken }},
			{"mail url not smtp", "url:", func(ch *store.Channel) {
				ch.Kind, ch.URL = store.ChannelEmail, "https://u:"+notifySMTPPass+"@mail.example.com"
			}},
			{"no events", "events:", func(ch *store.Channel) { ch.Events = nil }},
			{"unknown event", "events:", func(ch *store.Channel) { ch.Events = []string{"build.exploded"} }},
			{"recipients on a robot", "recipients:", func(ch *store.Channel) { ch.Recipients = []string{"a@example.com"} }},
			{"bad recipient", "recipients:", func(ch *store.Channel) {
				ch.Kind, ch.URL, ch.Recipients = store.ChannelEmail, "smtp://mail.example.com", []string{"not an address"}
			}},
			{"secret on mail", "secret:", func(ch *store.Channel) {
				ch.Kind, ch.URL, ch.Secret = store.ChannelEmail, "smtp://mail.example.com", "x"
			}},
			{"keyword on wecom", "keyword:", func(ch *store.Channel) { ch.Kind, ch.Keyword = store.ChannelWeCom, "ferry" }},
			{"wrong format", "format:", func(ch *store.Channel) { ch.Format = "news" }},
		}
		for _, tt := range tests {
			ch := ok()
			tt.change(&ch)
			err := db.CreateChannel(context.Background(), &ch)
			if store.ErrorCode(err) != store.EINVALID || !strings.HasPrefix(err.Error(), tt.field) {
				t.Errorf("%s: error %v, want EINVALID starting %q", tt.name, err, tt.field)
			}
			if err != nil && (strings.Contains(err.Error(), notifyToken) || strings.Contains(err.Error(), notifySMTPPass)) {
				t.Errorf("%s: error shows a secret: %v", tt.name, err)
			}
		}
		if list, _ := db.ListChannels(context.Background(), p.ID); len(list) != 0 {
			t.Errorf("bad input stored channels: %v", list)
		}
	})
}

func TestShownURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://oapi.dingtalk.com/robot/send?access_token=" + notifyToken:  "https://oapi.dingtalk.com/robot/send?access_token=****",
		"https://open.feishu.cn/open-apis/bot/v2/hook/" + notifyToken:       "https://open.feishu.cn/open-apis/bot/v2/hook/****",
		"smtps://ops:" + notifySMTPPass + "@mail.example.com:465":           "smtps://ops:****@mail.example.com:465",
		"https://hooks.example.com/ferry":                                   "https://hooks.example.com/ferry",
		"not a url " + notifyToken:                                          "****",
		"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k&debug=1#xy": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?debug=****&key=****",
	} {
		if got := store.ShownURL(in); got != want {
			t.Errorf("ShownURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUpdateAndDeleteChannel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := notifyProject(t, db)
		ch := notifyChannel(t, db, &store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/x", Secret: "whsec", Events: []string{"build.failed"}})
		events, off := []string{"deployment.failed", "deployment.succeeded"}, false
		got, err := db.UpdateChannel(ctx, ch.ID, store.ChannelUpdate{Events: &events, Enabled: &off})
		if err != nil || got.Enabled || len(got.Events) != 2 || got.Secret != "whsec" {
			t.Fatalf("UpdateChannel = %+v, %v", got, err)
		}
		bad := []string{}
		if _, err := db.UpdateChannel(ctx, ch.ID, store.ChannelUpdate{Events: &bad}); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("update to no events: %v", err)
		}
		if err := db.DeleteChannel(ctx, ch.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetChannel(ctx, ch.ID); !store.IsNotFound(err) {
			t.Errorf("deleted channel: %v", err)
		}
	})
}

func TestQueueDeliveriesPerMatchingChannel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := notifyProject(t, db), notifyProject(t, db)
		hook := func(project *int64, events ...string) *store.Channel {
			return notifyChannel(t, db, &store.Channel{ProjectID: project, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/x", Events: events})
		}
		wantA := hook(&a.ID, "build.failed")
		hook(&a.ID, "build.succeeded")
		hook(&b.ID, "build.failed")
		global := hook(nil, "build.failed", "deployment.failed")
		disabled := hook(&a.ID, "build.failed")
		off := false
		if _, err := db.UpdateChannel(ctx, disabled.ID, store.ChannelUpdate{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		build := storetest.FinishedBuild(t, db, a, store.BuildFailed, "compiling")
		n, err := db.QueueDeliveries(ctx, 0)
		if err != nil || n != 1 {
			t.Fatalf("QueueDeliveries = %d, %v; want 1 entry", n, err)
		}
		ds, _ := db.ListDeliveries(ctx, store.DeliveryFilter{ProjectID: a.ID})
		var got []string
		for _, d := range ds {
			got = append(got, fmt.Sprintf("%d %s %s %d %s", d.ChannelID, d.Event, d.JobKind, d.JobID, d.Status))
		}
		want := []string{fmt.Sprintf("%d build.failed build %d pending", global.ID, build.ID), fmt.Sprintf("%d build.failed build %d pending", wantA.ID, build.ID)}
		if strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("deliveries = %v, want %v", got, want)
		}
		if left, _ := db.ListOutbox(ctx, 0); len(left) != 0 {
			t.Errorf("outbox entries left: %v", left)
		}
		if n, err := db.QueueDeliveries(ctx, 0); n != 0 || err != nil {
			t.Errorf("second QueueDeliveries = %d, %v", n, err)
		}
	})
}

func TestQueueDeliveriesConcurrently(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := notifyProject(t, db)
		notifyChannel(t, db, &store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/x", Events: []string{"build.failed"}})
		for range 12 {
			storetest.FinishedBuild(t, db, p, store.BuildFailed)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				for {
					n, err := db.QueueDeliveries(ctx, 2)
					if err != nil || n == 0 {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("QueueDeliveries: %v", err)
			}
		}
		if ds, _ := db.ListDeliveries(ctx, store.DeliveryFilter{ProjectID: p.ID, Limit: 100}); len(ds) != 12 {
			t.Errorf("%d deliveries for 12 outbox entries", len(ds))
		}
	})
}

func TestClaimChannelHasOneSenderAtATime(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := notifyProject(t, db)
		ch := notifyChannel(t, db, &store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/x", Events: []string{"build.failed"}})
		storetest.FinishedBuild(t, db, p, store.BuildFailed)
		storetest.FinishedBuild(t, db, p, store.BuildFailed)
		if _, err := db.QueueDeliveries(ctx, 0); err != nil {
			t.Fatal(err)
		}
		got, due, err := db.ClaimChannel(ctx, "one", time.Minute, 0)
		if err != nil || got == nil || got.ID != ch.ID || len(due) != 2 {
			t.Fatalf("ClaimChannel = %v, %d due, %v", got, len(due), err)
		}
		if other, _, err := db.ClaimChannel(ctx, "two", time.Minute, 0); other != nil || err != nil {
			t.Errorf("a second process claimed a leased channel: %v, %v", other, err)
		}
		if err := db.RenewChannel(ctx, ch.ID, "two", time.Minute); store.ErrorCode(err) != store.ECONFLICT {
			t.Errorf("renew by a process without the lease: %v", err)
		}
		retry := db.Now().Add(time.Hour)
		notifyMust(t, db.RecordDelivery(ctx, []int64{due[0].ID}, store.DeliveryOutcome{Error: "webhook: answered HTTP 500", RetryAt: &retry}))
		notifyMust(t, db.RecordDelivery(ctx, []int64{due[1].ID}, store.DeliveryOutcome{Sent: true}))
		notifyMust(t, db.ReleaseChannel(ctx, ch.ID, "one", time.Time{}))
		if again, _, _ := db.ClaimChannel(ctx, "two", time.Minute, 0); again != nil {
			t.Errorf("claimed a channel with nothing due")
		}
		d, _ := db.GetDelivery(ctx, due[0].ID)
		if d.Status != store.DeliveryPending || d.Attempts != 1 || d.LastError != "webhook: answered HTTP 500" {
			t.Errorf("retried delivery = %+v", d)
		}
		if sent, _ := db.SentSince(ctx, ch.ID, db.Now().Add(-time.Minute)); len(sent) != 1 {
			t.Errorf("SentSince = %v, want one send", sent)
		}
	})
}

func TestRecordDigestAndPause(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := notifyProject(t, db)
		ch := notifyChannel(t, db, &store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/x", Events: []string{"build.failed"}})
		for range 3 {
			storetest.FinishedBuild(t, db, p, store.BuildFailed)
		}
		notifyMust2(db.QueueDeliveries(ctx, 0))
		_, due, _ := db.ClaimChannel(ctx, "one", time.Minute, 0)
		ids := []int64{due[0].ID, due[1].ID, due[2].ID}
		notifyMust(t, db.RecordDelivery(ctx, ids, store.DeliveryOutcome{Sent: true}))
		notifyMust(t, db.ReleaseChannel(ctx, ch.ID, "one", db.Now().Add(time.Hour)))
		ds, _ := db.ListDeliveries(ctx, store.DeliveryFilter{ChannelID: ch.ID})
		var got []string
		for _, d := range ds {
			got = append(got, d.Status)
		}
		if strings.Join(got, ",") != "merged,merged,sent" || ds[2].MergedCount != 2 || *ds[0].MergedInto != ids[0] {
			t.Errorf("digest recorded as %v", got)
		}
		if sent, _ := db.SentSince(ctx, ch.ID, db.Now().Add(-time.Minute)); len(sent) != 1 {
			t.Errorf("a digest counts %d sends, want 1", len(sent))
		}
		storetest.FinishedBuild(t, db, p, store.BuildFailed)
		notifyMust2(db.QueueDeliveries(ctx, 0))
		if c, _, _ := db.ClaimChannel(ctx, "two", time.Minute, 0); c != nil {
			t.Errorf("claimed a paused channel")
		}
	})
}

func TestLogTail(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		p := notifyProject(t, db)
		var lines []string
		for i := 1; i <= 50; i++ {
			lines = append(lines, fmt.Sprintf("line %d", i))
		}
		b := storetest.FinishedBuild(t, db, p, store.BuildFailed, lines...)
		tail, err := db.LogTail(context.Background(), store.JobBuild, b.ID, "", 20)
		if err != nil || len(tail) != 20 || tail[0].Text != "line 31" || tail[19].Text != "line 50" {
			t.Errorf("LogTail = %v, %v", tail, err)
		}
		if none, err := db.LogTail(context.Background(), store.JobBuild, b.ID+99, "", 20); err != nil || len(none) != 0 {
			t.Errorf("LogTail of a job without log = %v, %v", none, err)
		}
	})
}

func notifyMust2(_ int, err error) {
	if err != nil {
		panic(err)
	}
}

func notifyMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
