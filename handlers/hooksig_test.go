package handlers_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// newSigningToken returns a Standard Webhooks signing token as GitLab takes it.
func newSigningToken(t testing.TB) string {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// signedHook is a webhook delivery with Standard Webhooks headers, as GitLab sends it when
// the hook has a signing token.
type signedHook struct {
	token, body, id, idempotencyKey string
	at                              time.Time
	signingToken                    string // "" sends no signature headers
}

func (e *buildEnv) sendSigned(d signedHook) response {
	e.t.Helper()
	req := httptest.NewRequest("POST", "/hooks/gitlab", strings.NewReader(d.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", d.token)
	if d.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", d.idempotencyKey)
	}
	if d.signingToken != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(d.signingToken, "whsec_"))
		must(e.t, err)
		ts := strconv.FormatInt(d.at.Unix(), 10)
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(d.id + "." + ts + "." + d.body))
		req.Header.Set("webhook-id", d.id)
		req.Header.Set("webhook-timestamp", ts)
		req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return (&client{t: e.t, h: e.h}).send(req)
}

func TestWebhookSigningToken(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newBuildEnv(t, db)
		sha := e.commit("ship it [devops]", "one")
		body := pushBody(t, "group/app", "main", sha, "ship it [devops]")
		signing := newSigningToken(t)

		// Write-only: set with the PATCH, shown as set, never echoed, kept encrypted.
		r := e.admin.must(http.StatusOK, "PATCH", "/api/v1/projects/app", `{"webhook_signing_token":"`+signing+`"}`)
		var view map[string]any
		r.decode(t, &view)
		if view["has_webhook_signing_token"] != true || strings.Contains(r.body, signing) {
			t.Fatalf("PATCH answer %s: want has_webhook_signing_token and no token", r.body)
		}
		if g := e.admin.must(http.StatusOK, "GET", "/api/v1/projects/app", ""); strings.Contains(g.body, strings.TrimPrefix(signing, "whsec_")) {
			t.Fatalf("GET shows the signing token: %s", g.body)
		}
		bad := e.admin.do("PATCH", "/api/v1/projects/app", `{"webhook_signing_token":"hunter2"}`)
		if bad.status != http.StatusBadRequest || !strings.Contains(bad.errorText(t), "whsec_") {
			t.Errorf("a signing token that is not whsec_…: %d %s", bad.status, bad.body)
		}

		now := time.Now()
		for _, c := range []struct {
			name string
			d    signedHook
			want string
		}{
			{"unsigned", signedHook{token: "hook-secret", body: body}, "not signed"},
			{"forged", signedHook{token: "hook-secret", body: body, id: "msg_1", at: now, signingToken: newSigningToken(t)}, "signature does not match"},
			{"stale", signedHook{token: "hook-secret", body: body, id: "msg_2", at: now.Add(-6 * time.Minute), signingToken: signing}, "timestamp"},
			{"from the future", signedHook{token: "hook-secret", body: body, id: "msg_3", at: now.Add(6 * time.Minute), signingToken: signing}, "timestamp"},
			{"body changed after signing", signedHook{token: "hook-secret", body: body, id: "msg_4", at: now, signingToken: signing}, "signature does not match"},
		} {
			d := c.d
			if c.name == "body changed after signing" {
				// Sign one body, send another: the signature covers the body.
				signed := e.signature(d, body)
				d.body = pushBody(t, "group/app", "main", sha, "evil [devops]")
				r = e.sendWithSignature(d, signed)
			} else {
				r = e.sendSigned(d)
			}
			if r.status != http.StatusUnauthorized || !strings.Contains(r.errorText(t), c.want) {
				t.Errorf("%s delivery: %d %s, want 401 saying %q", c.name, r.status, r.body, c.want)
			}
		}
		var events []store.Event
		e.admin.must(http.StatusOK, "GET", "/api/v1/projects/app/events", "").decode(t, &events)
		if len(events) != 0 {
			t.Fatalf("refused deliveries were recorded: %+v", events)
		}

		good := signedHook{token: "hook-secret", body: body, id: "msg_ok", idempotencyKey: "msg_ok", at: now.Add(-4 * time.Minute), signingToken: signing}
		var first, replay hookAnswer
		r = e.sendSigned(good)
		r.decode(t, &first)
		if r.status != http.StatusOK || first.Build == 0 || first.Duplicate {
			t.Fatalf("validly signed delivery: %d %s", r.status, r.body)
		}
		// A replay of the same signed delivery, even with another Idempotency-Key, is a no-op.
		good.idempotencyKey = "something-new"
		r = e.sendSigned(good)
		r.decode(t, &replay)
		if r.status != http.StatusOK || !replay.Duplicate || replay.Build != first.Build || replay.Event != first.Event {
			t.Errorf("replayed webhook-id: %d %s, want the first answer marked duplicate", r.status, r.body)
		}
		var builds []store.Build
		e.admin.must(http.StatusOK, "GET", "/api/v1/projects/app/builds", "").decode(t, &builds)
		if len(builds) != 1 {
			t.Errorf("%d builds after a signed delivery and its replay, want 1", len(builds))
		}

		// The GitLab registration sends the signing token along.
		e.admin.must(http.StatusOK, "POST", "/api/v1/projects/app/gitlab-hook", "")
		if hooks := e.gitlab.Hooks("group/app"); len(hooks) != 1 || hooks[0].SigningToken != signing || hooks[0].Token != "hook-secret" {
			t.Errorf("GitLab hooks = %+v, want ferry's with the secret and the signing token", hooks)
		}
		// Removing the signing token: unsigned deliveries are taken again.
		e.admin.must(http.StatusOK, "PATCH", "/api/v1/projects/app", `{"webhook_signing_token":""}`).decode(t, &view)
		if view["has_webhook_signing_token"] != false {
			t.Errorf("after removing: %v", view)
		}
		if r := e.sendSigned(signedHook{token: "hook-secret", body: body, idempotencyKey: "plain"}); r.status != http.StatusOK {
			t.Errorf("unsigned delivery without a signing token: %d %s", r.status, r.body)
		}
	})
}

func (e *buildEnv) signature(d signedHook, body string) string {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(d.signingToken, "whsec_"))
	must(e.t, err)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(d.id + "." + strconv.FormatInt(d.at.Unix(), 10) + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func (e *buildEnv) sendWithSignature(d signedHook, sig string) response {
	req := httptest.NewRequest("POST", "/hooks/gitlab", strings.NewReader(d.body))
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", d.token)
	req.Header.Set("webhook-id", d.id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(d.at.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	return (&client{t: e.t, h: e.h}).send(req)
}

// An unknown project is refused exactly as a wrong token is, so the answer does not tell
// which GitLab paths ferry has; and webhook errors are JSON.
func TestWebhookUnknownProjectLikeWrongToken(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newBuildEnv(t, db)
		sha := e.commit("x", "one")
		noSecret := &store.Project{Name: "quiet", GitLabPath: "group/quiet", CloneURL: e.repo, KeepVersions: 20}
		must(t, db.CreateProject(t.Context(), noSecret))
		wrong := e.hook("Push Hook", "guess", "", pushBody(t, "group/app", "main", sha, "devops"))
		for name, r := range map[string]response{
			"unknown project, wrong token": e.hook("Push Hook", "guess", "", pushBody(t, "nobody/here", "main", sha, "devops")),
			"unknown project, real token":  e.hook("Push Hook", "hook-secret", "", pushBody(t, "nobody/here", "main", sha, "devops")),
			"project without a secret":     e.hook("Push Hook", "guess", "", pushBody(t, "group/quiet", "main", sha, "devops")),
		} {
			if r.status != wrong.status || r.body != wrong.body {
				t.Errorf("%s: %d %s; a wrong token gets %d %s", name, r.status, r.body, wrong.status, wrong.body)
			}
		}
		if wrong.status != http.StatusUnauthorized || !strings.HasPrefix(wrong.header.Get("Content-Type"), "application/json") || wrong.errorText(t) == "" {
			t.Errorf("wrong token: %d %q %s, want a JSON 401", wrong.status, wrong.header.Get("Content-Type"), wrong.body)
		}
		for _, body := range []string{`{"project": `, strings.Repeat(" ", 20<<20)} {
			r := e.hook("Push Hook", "hook-secret", "", body)
			if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || r.errorText(t) == "" {
				t.Errorf("webhook error %d is not JSON: %q %.100s", r.status, r.header.Get("Content-Type"), r.body)
			}
		}
	})
}
