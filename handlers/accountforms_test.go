package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// Execution accounts from the forms' side: ferry generates a key and answers only its public
// half; a key both pasted and asked to be generated is refused at private_key; an edit with
// an empty key keeps the stored one; a member can neither add, change (even by generating a
// key) nor remove an account, and the jobs page offers members no account form nor public
// key, in either language.
func TestAccountFormsAndTheirRights(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL}).Handler()
		ctx := context.Background()
		boss := mustUser(t, db, "boss", true)
		mem := mustUser(t, db, "mem", false)
		key, _ := testKeys(t)
		p := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
		must(t, db.CreateProject(ctx, p))
		_, err := db.SetMember(ctx, p.ID, "mem", true)
		must(t, err)
		admin, member := sessionClient(t, h, db, boss), sessionClient(t, h, db, mem)
		const accounts = "/api/v1/projects/shop/accounts"

		r := admin.must(http.StatusCreated, "POST", accounts, `{"name":"ops","user":"deploy","generate_key":true}`)
		var a struct {
			PublicKey string `json:"public_key"`
			HasKey    bool   `json:"has_key"`
		}
		r.decode(t, &a)
		if !strings.HasPrefix(a.PublicKey, "ssh-ed25519 ") || !strings.HasSuffix(a.PublicKey, " ferry@ops") || !a.HasKey || strings.Contains(r.body, "PRIVATE") {
			t.Errorf("the answer to a generated key: %s", r.body)
		}
		stored, err := db.GetExecAccount(ctx, p.ID, "ops")
		must(t, err)
		if r := admin.do("POST", accounts, `{"name":"ops","user":"deploy","private_key":`+jsonString(key)+`,"generate_key":true}`); r.status != http.StatusBadRequest || !strings.Contains(r.body, "private_key: ") {
			t.Errorf("a key both pasted and generated: %d %s", r.status, r.body)
		}
		if r := admin.do("POST", accounts, `{"name":"ops","user":"Bad User"}`); r.status != http.StatusBadRequest || !strings.Contains(r.body, "user: ") {
			t.Errorf("a bad user: %d %s", r.status, r.body)
		}
		admin.must(http.StatusOK, "POST", accounts, `{"name":"ops","user":"app"}`)
		if b, err := db.GetExecAccount(ctx, p.ID, "ops"); err != nil || b.User != "app" || b.PrivateKey != stored.PrivateKey {
			t.Errorf("an edit with an empty key: %+v %v", b, err)
		}

		for _, body := range []string{`{"name":"ops","user":"root","generate_key":true}`, `{"name":"new","user":"root","generate_key":true}`} {
			if r := member.do("POST", accounts, body); r.status != http.StatusForbidden {
				t.Errorf("a member posts %s: %d %s", body, r.status, r.body)
			}
		}
		if r := member.do("DELETE", accounts+"/ops", ""); r.status != http.StatusForbidden {
			t.Errorf("a member removes an account: %d", r.status)
		}
		if b, _ := db.GetExecAccount(ctx, p.ID, "ops"); b == nil || b.User != "app" || b.PrivateKey != stored.PrivateKey {
			t.Errorf("the account changed: %+v", b)
		}
		for _, lang := range []string{"en", "zh"} {
			req := httptest.NewRequest("GET", "/projects/shop/jobs", nil)
			req.AddCookie(&http.Cookie{Name: "ferry_lang", Value: lang})
			page := member.send(req)
			if page.status != http.StatusOK || !strings.Contains(page.body, `data-account="ops"`) ||
				strings.Contains(page.body, "new-account-form") || strings.Contains(page.body, "account-edit") || strings.Contains(page.body, "ssh-ed25519") {
				t.Errorf("%s: the member's jobs page shows account forms or keys: %d", lang, page.status)
			}
			req = httptest.NewRequest("GET", "/projects/shop/jobs", nil)
			req.AddCookie(&http.Cookie{Name: "ferry_lang", Value: lang})
			page = admin.send(req)
			if !strings.Contains(page.body, "new-account-form") || !strings.Contains(page.body, "ssh-ed25519 AAAA") || !strings.Contains(page.body, " ferry@ops</code>") || !strings.Contains(page.body, `id="job-form"`) {
				t.Errorf("%s: the administrator's jobs page lacks the account forms or the public key", lang)
			}
		}
		admin.must(http.StatusNoContent, "DELETE", accounts+"/ops", "")
	})
}
