package notify

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"ferry/store"
	"ferry/store/storetest"
)

const (
	workerBaseURL = "https://ferry.example.com"
	hookSecret    = "hook-secret-9f8e7d6c"
)

// fakeClock is the store's and the worker's clock in tests: it moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func useFakeClock(db *store.DB) *fakeClock {
	c := &fakeClock{now: time.Now().UTC()}
	db.Now = c.Now
	return c
}

func newWorker(db *store.DB, tlsConfig *tls.Config) *Worker {
	return &Worker{DB: db, BaseURL: workerBaseURL, Owner: "test",
		Options: Options{Timeout: 5 * time.Second, TLSConfig: tlsConfig, Hostname: "ferry.test", Addresses: localAddresses}}
}

func runOnce(t *testing.T, w *Worker) int {
	t.Helper()
	n, err := w.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return n
}

func testProject(t testing.TB, db *store.DB) *store.Project {
	t.Helper()
	name := storetest.Name("orders")
	p := &store.Project{Name: name, GitLabPath: "g/" + name, CloneURL: "https://x/y.git", KeepVersions: 5,
		WebhookSecret: hookSecret, Trigger: store.DefaultTrigger()}
	if err := db.CreateProject(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func addMember(t testing.TB, db *store.DB, p *store.Project, email string) {
	t.Helper()
	u := &store.User{Name: storetest.Name("u"), Email: email}
	if err := db.CreateUser(context.Background(), u, "long-enough-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetMember(context.Background(), p.ID, u.Name, false); err != nil {
		t.Fatal(err)
	}
}

func addChannel(t testing.TB, db *store.DB, ch store.Channel) *store.Channel {
	t.Helper()
	ch.Enabled = true
	if ch.Events == nil {
		ch.Events = []string{store.OutboxBuildFailed}
	}
	if err := db.CreateChannel(context.Background(), &ch); err != nil {
		t.Fatalf("CreateChannel: %v", err)
	}
	return &ch
}

// failingLog is a build log of 50 lines with secrets in the last 20.
func failingLog() []string {
	var lines []string
	for i := 1; i <= 50; i++ {
		lines = append(lines, fmt.Sprintf("step-%02d ok", i))
	}
	lines[44] = "curl -H 'X-Gitlab-Token: " + hookSecret + "' https://gitlab.example.com"
	lines[45] = "export DB_PASSWORD=hunter2-very-secret"
	lines[49] = "error: tests failed"
	return lines
}

func deliveries(t *testing.T, db *store.DB, channelID int64) []*store.Delivery {
	t.Helper()
	ds, err := db.ListDeliveries(context.Background(), store.DeliveryFilter{ChannelID: channelID, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestWorkerMailsMembersAndExtraAddresses(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		srv, clientTLS := startMailServer(t, startTLSSMTP, &mailServer{mechanisms: []string{sasl.Plain}})
		p := testProject(t, db)
		addMember(t, db, p, "alice@example.com")
		addMember(t, db, p, "bob@example.com")
		addMember(t, db, p, "") // a member without a mail address gets none
		ch := addChannel(t, db, store.Channel{ProjectID: &p.ID, Kind: store.ChannelEmail,
			URL: mailURL("smtp", srv.addr, "starttls=required"), Recipients: []string{"Ops <ops@example.com>"}})
		b := storetest.FinishedBuild(t, db, p, store.BuildFailed, failingLog()...)

		if n := runOnce(t, newWorker(db, clientTLS)); n != 1 {
			t.Fatalf("RunOnce made %d sends, want 1", n)
		}
		srv.mu.Lock()
		rcpts, data := slices.Clone(srv.rcpts), srv.data
		srv.mu.Unlock()
		slices.Sort(rcpts)
		if strings.Join(rcpts, ",") != "alice@example.com,bob@example.com,ops@example.com" {
			t.Errorf("mail went to %v, want the members and the extra address", rcpts)
		}
		msg, err := mail.ReadMessage(strings.NewReader(string(data)))
		if err != nil {
			t.Fatalf("received mail does not parse: %v", err)
		}
		text, html := readAlternatives(t, msg)
		for _, part := range []string{text, html} {
			for _, want := range []string{p.Name + ": build of 3f2a9c1e failed", "Fix checkout rounding (Alice)", "push by alice",
				fmt.Sprintf("%s/builds/%d", workerBaseURL, b.ID), "step-31 ok", "error: tests failed", "DB_PASSWORD=****"} {
				if !strings.Contains(part, want) {
					t.Errorf("mail part lacks %q:\n%s", want, part)
				}
			}
			for _, unwanted := range []string{"step-30 ok", hookSecret, "hunter2", "The body of the commit"} {
				if strings.Contains(part, unwanted) {
					t.Errorf("mail part shows %q:\n%s", unwanted, part)
				}
			}
		}
		ds := deliveries(t, db, ch.ID)
		if len(ds) != 1 || ds[0].Status != store.DeliverySent || ds[0].Title != p.Name+": build of 3f2a9c1e failed" || ds[0].SentAt == nil {
			t.Errorf("delivery = %+v", ds[0])
		}
		if strings.Contains(ds[0].Message, hookSecret) || strings.Contains(ds[0].Message, "hunter2") {
			t.Errorf("the stored notice holds a secret: %s", ds[0].Message)
		}
		if n := runOnce(t, newWorker(db, clientTLS)); n != 0 {
			t.Errorf("a second pass sent %d more", n)
		}
	})
}

func TestWorkerWebhookMessage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		var mu sync.Mutex
		var bodies []map[string]any
		hook := newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
			data, _ := io.ReadAll(r.Body)
			if r.Header.Get("X-Ferry-Signature") != WebhookSignature(data, "whsec-123") {
				http.Error(w, "bad signature", http.StatusUnauthorized)
				return
			}
			var body map[string]any
			json.Unmarshal(data, &body)
			mu.Lock()
			bodies = append(bodies, body)
			mu.Unlock()
		})
		p := testProject(t, db)
		addChannel(t, db, store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: hook.URL + "/ferry", Secret: "whsec-123",
			Events: []string{store.OutboxBuildFailed, store.OutboxBuildSucceeded}})
		failed := storetest.FinishedBuild(t, db, p, store.BuildFailed, failingLog()...)
		good := storetest.FinishedBuild(t, db, p, store.BuildSuccess, "all good")
		if n := runOnce(t, newWorker(db, nil)); n != 2 {
			t.Fatalf("RunOnce made %d sends, want 2", n)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(bodies) != 2 {
			t.Fatalf("webhook received %d bodies", len(bodies))
		}
		f, s := bodies[0], bodies[1]
		commit, _ := f["commit"].(map[string]any)
		tail, _ := f["log_tail"].([]any)
		if f["event"] != "build.failed" || f["project"] != p.Name || commit["sha"] != "3f2a9c1e" || commit["author"] != "Alice" ||
			commit["title"] != "Fix checkout rounding" || f["triggered_by"] != "push by alice" || f["url"] != fmt.Sprintf("%s/builds/%d", workerBaseURL, failed.ID) {
			t.Errorf("failure notice = %v", f)
		}
		if len(tail) != 20 || tail[0] != "step-31 ok" || tail[19] != "error: tests failed" || strings.Contains(fmt.Sprint(tail), hookSecret) {
			t.Errorf("log tail = %q", tail)
		}
		if s["event"] != "build.succeeded" || s["version"] != good.Version || s["log_tail"] != nil {
			t.Errorf("success notice = %v", s)
		}
	})
}

func TestWorkerRecordsFailuresWithReasons(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		clock := useFakeClock(db)
		refusing, clientTLS := startMailServer(t, startTLSSMTP, &mailServer{mechanisms: []string{sasl.Plain}})
		dropping, _ := startMailServer(t, plainSMTP, &mailServer{mechanisms: []string{sasl.Plain}, dropInData: true})
		good := dingTalkRobot(t, "")
		broken := dingTalkRobot(t, "500")
		feishu := feishuRobot(t)
		p := testProject(t, db)
		addMember(t, db, p, "alice@example.com")
		dingURL := func(s *robotServer) string { return s.URL + "/robot/send?access_token=" + robotToken }
		tests := []struct {
			name    string
			ch      store.Channel
			status  string
			wantErr string
		}{
			{"SMTP refuses the password", store.Channel{Kind: store.ChannelEmail, URL: mailURLWithPassword("smtp", refusing.addr, "", "wrong-pass")},
				store.DeliveryFailed, "refused the user name or password (535"},
			{"SMTP drops the connection", store.Channel{Kind: store.ChannelEmail, URL: mailURL("smtp", dropping.addr, "")},
				store.DeliveryPending, "message data"},
			{"DingTalk wrong secret", store.Channel{Kind: store.ChannelDingTalk, URL: dingURL(good), Secret: "SECwrong", Keyword: "ferry"},
				store.DeliveryFailed, "DingTalk: answered errcode 310000: sign not match"},
			{"DingTalk answers 500", store.Channel{Kind: store.ChannelDingTalk, URL: dingURL(broken), Secret: robotSecret, Keyword: "ferry"},
				store.DeliveryPending, "DingTalk: answered HTTP 500 Internal Server Error: upstream exploded"},
			{"Feishu wrong secret", store.Channel{Kind: store.ChannelFeishu, URL: feishu.URL + "/open-apis/bot/v2/hook/" + robotToken, Secret: "wrong"},
				store.DeliveryFailed, "Feishu: answered code 19021: sign match fail"},
			{"URL does not resolve", store.Channel{Kind: store.ChannelWebhook, URL: "https://hooks.example.invalid/ferry?token=" + robotToken},
				store.DeliveryFailed, `host "hooks.example.invalid" not found`},
		}
		channels := map[string]*store.Channel{}
		for _, tt := range tests {
			tt.ch.ProjectID = &p.ID
			channels[tt.name] = addChannel(t, db, tt.ch)
		}
		b := storetest.FinishedBuild(t, db, p, store.BuildFailed, "boom")
		if n := runOnce(t, newWorker(db, clientTLS)); n != len(tests) {
			t.Errorf("RunOnce made %d sends, want %d", n, len(tests))
		}
		if got, _ := db.GetBuild(context.Background(), b.ID); got.Status != store.BuildFailed {
			t.Errorf("the build's status changed to %s", got.Status)
		}
		for _, tt := range tests {
			ds := deliveries(t, db, channels[tt.name].ID)
			// The whole story (for administrators) has the platform's words ...
			if len(ds) != 1 || ds[0].Status != tt.status || !strings.Contains(ds[0].LastAnswer, tt.wantErr) || ds[0].Attempts != 1 {
				t.Errorf("%s: delivery %+v, want %s with %q", tt.name, ds[0], tt.status, tt.wantErr)
			}
			// ... the error everyone sees has the status or code only.
			if before, _, ok := strings.Cut(tt.wantErr, ": sign"); ok && !strings.Contains(ds[0].LastError, before) || strings.Contains(ds[0].LastError, "sign not match") ||
				strings.Contains(ds[0].LastError, "upstream exploded") || strings.Contains(ds[0].LastError, "sign match fail") {
				t.Errorf("%s: the public error %q shows the server's words or lacks the code", tt.name, ds[0].LastError)
			}
			for _, secret := range []string{robotToken, robotSecret, mailPass, "wrong-pass"} {
				if strings.Contains(ds[0].LastError, secret) || strings.Contains(ds[0].LastAnswer, secret) {
					t.Errorf("%s: the error shows a secret: %s", tt.name, ds[0].LastAnswer)
				}
			}
		}

		// Nothing is retried before its time; after it, the retryable ones are tried again.
		if n := runOnce(t, newWorker(db, clientTLS)); n != 0 {
			t.Errorf("retried %d sends before their time", n)
		}
		clock.Add(BackoffBase + time.Second)
		if n := runOnce(t, newWorker(db, clientTLS)); n != 2 {
			t.Errorf("the second pass made %d sends, want the 2 retryable ones", n)
		}
		for _, name := range []string{"SMTP drops the connection", "DingTalk answers 500"} {
			if ds := deliveries(t, db, channels[name].ID); ds[0].Attempts != 2 || ds[0].Status != store.DeliveryPending {
				t.Errorf("%s after a retry: %+v", name, ds[0])
			}
		}
		// After MaxAttempts tries, a delivery fails for good.
		for range MaxAttempts {
			clock.Add(BackoffCap + time.Second)
			runOnce(t, newWorker(db, clientTLS))
		}
		if ds := deliveries(t, db, channels["DingTalk answers 500"].ID); ds[0].Attempts != MaxAttempts || ds[0].Status != store.DeliveryFailed {
			t.Errorf("after %d tries: %+v", MaxAttempts, ds[0])
		}
	})
}

// countingDingTalk is a DingTalk robot that checks signatures and counts what it accepts.
func countingDingTalk(t *testing.T) (*robotServer, func() []string) {
	var mu sync.Mutex
	var titles []string
	robot := newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
		body := s.record(t, r)
		q := r.URL.Query()
		if q.Get("sign") != hmacBase64(robotSecret, q.Get("timestamp")+"\n"+robotSecret) {
			io.WriteString(w, `{"errcode":310000,"errmsg":"sign not match"}`)
			return
		}
		md, _ := body["markdown"].(map[string]any)
		mu.Lock()
		titles = append(titles, fmt.Sprint(md["title"]))
		mu.Unlock()
		io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
	})
	return robot, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(titles)
	}
}

func TestWorkerKeepsDingTalkRateLimitByMerging(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		clock := useFakeClock(db)
		robot, received := countingDingTalk(t)
		p := testProject(t, db)
		ch := addChannel(t, db, store.Channel{ProjectID: &p.ID, Kind: store.ChannelDingTalk,
			URL: robot.URL + "/robot/send?access_token=" + robotToken, Secret: robotSecret})
		for range 30 {
			storetest.FinishedBuild(t, db, p, store.BuildFailed, "boom")
		}
		runOnce(t, newWorker(db, nil))
		got := received()
		if len(got) != 20 || !strings.HasPrefix(got[19], "11 more notices: ") {
			t.Fatalf("the robot got %d messages (want 20, the last a digest of 11): %q", len(got), got[max(0, len(got)-1):])
		}
		counts := map[string]int{}
		for _, d := range deliveries(t, db, ch.ID) {
			counts[d.Status]++
		}
		if counts[store.DeliverySent] != 20 || counts[store.DeliveryMerged] != 10 {
			t.Errorf("deliveries by status = %v, want 20 sent and 10 merged", counts)
		}

		// Five more within the minute wait for the window instead of going over the limit.
		clock.Add(10 * time.Second)
		for range 5 {
			storetest.FinishedBuild(t, db, p, store.BuildFailed, "boom")
		}
		runOnce(t, newWorker(db, nil))
		if n := len(received()); n != 20 {
			t.Errorf("the robot got %d messages within one minute, want at most 20", n)
		}
		clock.Add(51 * time.Second)
		runOnce(t, newWorker(db, nil))
		if n := len(received()); n != 25 {
			t.Errorf("after the minute the robot has %d messages, want 25", n)
		}
		for _, d := range deliveries(t, db, ch.ID) {
			if d.Status != store.DeliverySent && d.Status != store.DeliveryMerged {
				t.Errorf("delivery %d is %s: nothing may be dropped or left", d.ID, d.Status)
			}
		}
	})
}

func TestWorkerPausesWhenThePlatformSaysTooFast(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		clock := useFakeClock(db)
		fast := dingTalkRobot(t, "fast")
		p := testProject(t, db)
		ch := addChannel(t, db, store.Channel{ProjectID: &p.ID, Kind: store.ChannelDingTalk,
			URL: fast.URL + "/robot/send?access_token=" + robotToken, Secret: robotSecret, Keyword: "ferry"})
		for range 3 {
			storetest.FinishedBuild(t, db, p, store.BuildFailed, "boom")
		}
		if n := runOnce(t, newWorker(db, nil)); n != 1 {
			t.Errorf("sent %d after DingTalk said too fast, want 1 try and a pause", n)
		}
		ds := deliveries(t, db, ch.ID)
		tried := 0
		for _, d := range ds {
			if d.Status != store.DeliveryPending || d.NextTryAt.Before(clock.Now().Add(59*time.Second)) {
				t.Errorf("delivery %+v should wait a minute", d)
			}
			if d.Attempts == 1 && strings.Contains(d.LastError, "errcode 130101") {
				tried++
			}
		}
		if tried != 1 {
			t.Errorf("%d deliveries show the 130101 answer, want 1", tried)
		}
	})
}

func TestWorkerTestMessage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		robot := dingTalkRobot(t, "")
		p := testProject(t, db)
		w := newWorker(db, nil)
		ch := addChannel(t, db, store.Channel{ProjectID: &p.ID, Kind: store.ChannelDingTalk,
			URL: robot.URL + "/robot/send?access_token=" + robotToken, Secret: robotSecret, Keyword: "ferry"})
		if err := w.Test(context.Background(), ch); err != nil {
			t.Fatalf("Test: %v", err)
		}
		if text := markdownText(robot.last(t)); !strings.Contains(text, p.Name+": test") {
			t.Errorf("test message text:\n%s", text)
		}
		ch.Secret = "SECwrong"
		if err := w.Test(context.Background(), ch); err == nil || !strings.Contains(err.Error(), "errcode 310000") {
			t.Errorf("Test with a wrong secret: %v", err)
		}
		lonely := &store.Channel{ID: 9, Kind: store.ChannelEmail, URL: "smtp://127.0.0.1:1", Enabled: true}
		if err := w.Test(context.Background(), lonely); store.ErrorCode(err) != store.EINVALID || !strings.Contains(err.Error(), "no recipients") {
			t.Errorf("Test of a mail channel without recipients: %v", err)
		}
	})
}

// BenchmarkWorkerDeliveries measures deliveries per second from outbox entries to a local
// webhook, on SQLite and PostgreSQL.
func BenchmarkWorkerDeliveries(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
			defer hook.Close()
			p := testProject(b, db)
			for range 4 {
				addChannel(b, db, store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: hook.URL})
			}
			w := newWorker(db, nil)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				storetest.FinishedBuild(b, db, p, store.BuildFailed, "boom")
				b.StartTimer()
				if _, err := w.RunOnce(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(4*b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
