package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/handlers"
	"ferry/notify"
	"ferry/store"
	"ferry/store/storetest"
)

// channelPermRoutes adds the permission rows of these routes (see permRouteParts).
func channelPermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /api/v1/projects/:project/channels":   {401, 404, 200, 200, 200},
		"POST /api/v1/projects/:project/channels":  {401, 404, 403, 403, 201},
		"GET /api/v1/projects/:project/deliveries": {401, 404, 200, 200, 200},
		"GET /api/v1/channels":                     {401, 403, 403, 403, 200},
		"POST /api/v1/channels":                    {401, 403, 403, 403, 201},
		"GET /api/v1/channels/:channel":            {401, 404, 200, 200, 200},
		"PATCH /api/v1/channels/:channel":          {401, 404, 403, 403, 200},
		"DELETE /api/v1/channels/:channel":         {401, 404, 403, 403, 204},
		// The permission test's server has no notifier: an allowed test answers 503.
		"POST /api/v1/channels/:channel/test": {401, 404, 403, 403, 503},
	}, map[string]string{
		"POST /api/v1/projects/:project/channels": `{"kind":"webhook","url":"https://hooks.example.com/x"}`,
		"POST /api/v1/channels":                   `{"kind":"webhook","url":"https://hooks.example.com/all"}`,
		"PATCH /api/v1/channels/:channel":         `{"enabled":false}`,
	}, func(t *testing.T, db *store.DB, fx *permFixture) {
		p, err := db.GetProject(context.Background(), fx.project)
		must(t, err)
		ch := &store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/p", Events: store.ChannelEvents, Enabled: true}
		must(t, db.CreateChannel(context.Background(), ch))
		fx.params["channel"] = strconv.FormatInt(ch.ID, 10)
	})
}

const chanToken = "0123456789abcdef0123456789abcdef"

// fakeNotifier answers test messages as told.
type fakeNotifier struct {
	test func(ctx context.Context, ch *store.Channel) error
}

func (f fakeNotifier) Test(ctx context.Context, ch *store.Channel) error { return f.test(ctx, ch) }

type channelJSON struct {
	ID         int64    `json:"id"`
	Project    string   `json:"project"`
	Kind       string   `json:"kind"`
	URL        string   `json:"url"`
	HasSecret  bool     `json:"has_secret"`
	Events     []string `json:"events"`
	Recipients []string `json:"recipients"`
	Enabled    bool     `json:"enabled"`
}

func TestChannelsAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		var tested *store.Channel
		notifier := fakeNotifier{test: func(_ context.Context, ch *store.Channel) error {
			tested = ch
			if ch.Secret == "SECwrong" {
				return errors.New("DingTalk: answered errcode 310000: sign not match")
			}
			return nil
		}}
		h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL, Notifier: notifier}).Handler()
		admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
		member := mustUser(t, db, "mem", false)
		mem := tokenClient(t, h, db, member)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"g/orders","clone_url":"https://x/y.git"}`)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/members", `{"user":"mem"}`)

		robotURL := "https://oapi.dingtalk.com/robot/send?access_token=" + chanToken
		var created channelJSON
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/channels",
			`{"kind":"dingtalk","url":"`+robotURL+`","secret":"SECsign","keyword":"ferry","events":["build.failed","deployment.failed"]}`).decode(t, &created)
		if created.URL != "https://oapi.dingtalk.com/robot/send?access_token=****" || !created.HasSecret || created.Project != "orders" || !created.Enabled {
			t.Errorf("created channel = %+v", created)
		}
		list := mem.must(http.StatusOK, "GET", "/api/v1/projects/orders/channels", "")
		if strings.Contains(list.body, chanToken) || strings.Contains(list.body, "SECsign") || !strings.Contains(list.body, `"events":["build.failed","deployment.failed"]`) {
			t.Errorf("channel list = %s", list.body)
		}
		path := fmt.Sprintf("/api/v1/channels/%d", created.ID)
		mem.must(http.StatusForbidden, "PATCH", path, `{"enabled":false}`)

		// The masked URL sent back keeps the stored one.
		admin.must(http.StatusOK, "PATCH", path, `{"url":"https://oapi.dingtalk.com/robot/send?access_token=****","events":["build.failed"]}`)
		if ch, _ := db.GetChannel(context.Background(), created.ID); ch.URL != robotURL || len(ch.Events) != 1 {
			t.Errorf("after PATCH the channel is %+v", ch)
		}

		for _, tt := range []struct{ body, field string }{
			{`{"kind":"pager","url":"https://x"}`, "kind:"},
			{`{"kind":"email","url":"https://mail.example.com"}`, "url:"},
			{`{"kind":"webhook","url":"https://x","events":["build.exploded"]}`, "events:"},
			{`{"kind":"webhook","url":"https://x","events":[]}`, "events:"},
			{`{"kind":"email","url":"smtp://mail.example.com","recipients":["nope"]}`, "recipients:"},
			{`{"kind":"wecom","url":"https://x","keyword":"k"}`, "keyword:"},
		} {
			r := admin.must(http.StatusBadRequest, "POST", "/api/v1/projects/orders/channels", tt.body)
			if !strings.HasPrefix(r.errorText(t), tt.field) {
				t.Errorf("POST %s: error %q does not start with %q", tt.body, r.errorText(t), tt.field)
			}
		}

		r := admin.must(http.StatusOK, "POST", path+"/test", "")
		if !strings.Contains(r.body, `"sent":true`) || tested == nil || tested.URL != robotURL || tested.Secret != "SECsign" {
			t.Errorf("test answered %s; the notifier got %+v", r.body, tested)
		}
		admin.must(http.StatusOK, "PATCH", path, `{"secret":"SECwrong"}`)
		r = admin.must(http.StatusBadGateway, "POST", path+"/test", "")
		if !strings.Contains(r.errorText(t), "errcode 310000: sign not match") {
			t.Errorf("failed test answered %s", r.body)
		}
		admin.must(http.StatusNotFound, "GET", "/api/v1/channels/999999", "")
		admin.must(http.StatusNoContent, "DELETE", path, "")
		admin.must(http.StatusNotFound, "GET", path, "")
	})
}

func TestGlobalChannelsAreForAdministrators(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
		plain := tokenClient(t, h, db, mustUser(t, db, "plain", false))
		var ch channelJSON
		admin.must(http.StatusCreated, "POST", "/api/v1/channels",
			`{"kind":"email","url":"smtps://ops:pw-123456@mail.example.com:465","recipients":["ops@example.com"]}`).decode(t, &ch)
		if ch.Project != "" || ch.URL != "smtps://ops:****@mail.example.com:465" || len(ch.Events) != len(store.ChannelEvents) {
			t.Errorf("global channel = %+v", ch)
		}
		path := fmt.Sprintf("/api/v1/channels/%d", ch.ID)
		plain.must(http.StatusForbidden, "GET", path, "")
		plain.must(http.StatusForbidden, "DELETE", path, "")
		plain.must(http.StatusForbidden, "GET", "/api/v1/channels", "")
		if r := admin.must(http.StatusOK, "GET", "/api/v1/channels", ""); strings.Contains(r.body, "pw-123456") {
			t.Errorf("global list shows the password: %s", r.body)
		}
		admin.must(http.StatusOK, "GET", path, "")
		admin.must(http.StatusNoContent, "DELETE", path, "")
	})
}

func TestDeliveriesShowFailures(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"g/orders","clone_url":"https://x/y.git"}`)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/channels", `{"kind":"webhook","url":"https://hooks.example.com/x","events":["build.failed"]}`)
		p, _ := db.GetProject(ctx, "orders")
		b, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: p.ID, Ref: "main", Branch: "main", SHA: "3f2a9c1e5b7d9f00112233445566778899aabbcc"})
		must(t, err)
		_, err = db.ClaimBuild(ctx, "w", time.Minute)
		must(t, err)
		_, err = db.FinishBuild(ctx, b.ID, "w", store.BuildResult{Status: store.BuildFailed, Error: "exit 1"})
		must(t, err)
		_, err = db.QueueDeliveries(ctx, 0)
		must(t, err)
		ds, _ := db.ListDeliveries(ctx, store.DeliveryFilter{ProjectID: p.ID})
		must(t, db.RecordDelivery(ctx, []int64{ds[0].ID}, store.DeliveryOutcome{Error: "webhook: answered HTTP 410 Gone"}))

		var got []struct {
			Status, Event, Error string
			ChannelKind          string `json:"channel_kind"`
			JobID                int64  `json:"job_id"`
			Attempts             int    `json:"attempts"`
		}
		admin.must(http.StatusOK, "GET", "/api/v1/projects/orders/deliveries?status=failed", "").decode(t, &got)
		if len(got) != 1 || got[0].Error != "webhook: answered HTTP 410 Gone" || got[0].JobID != b.ID || got[0].Attempts != 1 {
			t.Errorf("deliveries = %+v", got)
		}
		admin.must(http.StatusBadRequest, "GET", "/api/v1/projects/orders/deliveries?status=lost", "")
	})
}

// TestDeliveryAnswersShownToAdministratorsOnly: what a server answered in its own words can
// be anything the address ferry was pointed at returns. Members (who see the deliveries of
// their project, on the API and the settings page) get the status; administrators the answer.
func TestDeliveryAnswersShownToAdministratorsOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
		mem := tokenClient(t, h, db, mustUser(t, db, "mem", false))
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"g/orders","clone_url":"https://x/y.git"}`)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/members", `{"user":"mem"}`)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/channels", `{"kind":"webhook","url":"https://hooks.example.com/x","events":["build.failed"]}`)
		p, _ := db.GetProject(ctx, "orders")
		storetest.FinishedBuild(t, db, p, store.BuildFailed)
		_, err := db.QueueDeliveries(ctx, 0)
		must(t, err)
		ds, _ := db.ListDeliveries(ctx, store.DeliveryFilter{ProjectID: p.ID})
		must(t, db.RecordDelivery(ctx, []int64{ds[0].ID}, store.DeliveryOutcome{
			Error:  "webhook: answered HTTP 403 Forbidden (the answer's text is shown to administrators only)",
			Answer: "webhook: answered HTTP 403 Forbidden: ami-id=ami-0abc secret-from-metadata"}))

		memView := mem.must(http.StatusOK, "GET", "/api/v1/projects/orders/deliveries", "")
		if strings.Contains(memView.body, "secret-from-metadata") || !strings.Contains(memView.body, "HTTP 403") {
			t.Errorf("a member sees %s; want the status without the answer", memView.body)
		}
		adminView := admin.must(http.StatusOK, "GET", "/api/v1/projects/orders/deliveries", "")
		if !strings.Contains(adminView.body, "secret-from-metadata") {
			t.Errorf("an administrator sees %s; want the answer too", adminView.body)
		}
	})
}

// TestChannelURLsToThisMachineRefused: a channel URL naming this machine or a cloud metadata
// address is refused when saved (400 naming the url), on create and on update; a private
// network address is fine.
func TestChannelURLsToThisMachineRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL, ChannelURLCheck: notify.AddressPolicy{}.CheckURL}).Handler()
		admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"g/orders","clone_url":"https://x/y.git"}`)
		for _, u := range []string{
			"http://169.254.169.254/latest/meta-data/iam/security-credentials/",
			"http://127.0.0.1:6379/",
			"http://localhost:8080/admin",
			"http://[::1]/x",
		} {
			r := admin.must(http.StatusBadRequest, "POST", "/api/v1/projects/orders/channels", `{"kind":"webhook","url":"`+u+`"}`)
			if !strings.HasPrefix(r.errorText(t), "url:") {
				t.Errorf("POST %s: error %q does not name the url", u, r.errorText(t))
			}
		}
		admin.must(http.StatusBadRequest, "POST", "/api/v1/channels", `{"kind":"email","url":"smtp://127.0.0.1:25","recipients":["ops@example.com"]}`)
		var ch channelJSON
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/channels", `{"kind":"webhook","url":"http://10.20.30.40:8080/hook"}`).decode(t, &ch)
		path := fmt.Sprintf("/api/v1/channels/%d", ch.ID)
		r := admin.must(http.StatusBadRequest, "PATCH", path, `{"url":"http://169.254.169.254/latest/meta-data/"}`)
		if !strings.HasPrefix(r.errorText(t), "url:") {
			t.Errorf("PATCH: error %q does not name the url", r.errorText(t))
		}
		if got, _ := db.GetChannel(context.Background(), ch.ID); got.URL != "http://10.20.30.40:8080/hook" {
			t.Errorf("the refused PATCH changed the URL to %s", got.URL)
		}
		admin.must(http.StatusOK, "PATCH", path, `{"enabled":false}`) // other fields still change
	})
}
