package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// TestNoResponseHoldsASecret creates everything with known secrets, reads everything back as
// an administrator and as a member, and looks for the secrets in every response body.
func TestNoResponseHoldsASecret(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		pem, hostKey := testKeys(t)
		const (
			password      = "Sup3r-Secret-Passw0rd"
			webhookSecret = "whsec-0123456789-known"
			gitlabToken   = "glpat-known-gitlab-token"
			newToken      = "glpat-rotated-gitlab-token"
		)
		var bodies []string
		record := func(r response) response { bodies = append(bodies, r.body); return r }

		record(admin.must(http.StatusCreated, "POST", "/api/v1/users", fmt.Sprintf(`{"name":"ann","password":%q}`, password)))
		record(admin.must(http.StatusOK, "PATCH", "/api/v1/users/ann", `{"password":"An0ther-Secret-Pw"}`))
		record(admin.must(http.StatusCreated, "POST", "/api/v1/projects", fmt.Sprintf(
			`{"name":"orders","gitlab_path":"shop/orders","clone_url":"https://x/y.git","webhook_secret":%q,"gitlab_token":%q}`, webhookSecret, gitlabToken)))
		record(admin.must(http.StatusOK, "PATCH", "/api/v1/projects/orders", fmt.Sprintf(`{"gitlab_token":%q}`, newToken)))
		generated := admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"web","gitlab_path":"shop/web","clone_url":"https://x/w.git"}`)
		var gen struct {
			WebhookSecret string `json:"webhook_secret"`
		}
		generated.decode(t, &gen)
		record(admin.must(http.StatusCreated, "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":"web1","address":"10.0.0.1","user":"deploy","private_key":%s,"host_key":%s}`, jsonString(pem), jsonString(hostKey))))
		record(admin.must(http.StatusOK, "PATCH", "/api/v1/hosts/web1", fmt.Sprintf(`{"private_key":%s}`, jsonString(pem))))
		record(admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/environments", `{"name":"prod","hosts":["web1"]}`))
		record(admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/members", `{"user":"ann","production":true}`))
		ann := mustGetUser(t, db, "ann")
		annTok := tokenClient(t, h, db, ann)
		var tok struct{ Token string }
		annTok.must(http.StatusCreated, "POST", "/api/v1/user/tokens", `{"name":"ci"}`).decode(t, &tok)
		annSession := sessionClient(t, h, db, ann)

		for _, c := range []*client{admin, annTok, annSession} {
			for _, path := range []string{"/api/v1/projects", "/api/v1/projects/orders", "/api/v1/projects/web",
				"/api/v1/projects/orders/environments", "/api/v1/projects/orders/environments/prod",
				"/api/v1/projects/orders/members", "/api/v1/hosts", "/api/v1/hosts/web1", "/api/v1/users",
				"/api/v1/user", "/api/v1/user/tokens", "/api/v1/audit?limit=1000", "/", "/projects/orders"} {
				if r := c.do("GET", path, ""); r.status < 400 {
					bodies = append(bodies, r.body)
				}
			}
		}

		tokens, err := db.ListTokens(t.Context(), ann.ID)
		must(t, err)
		secrets := map[string]string{
			"password":                    password,
			"new password":                "An0ther-Secret-Pw",
			"password hash":               ann.PasswordHash,
			"webhook secret":              webhookSecret,
			"generated webhook secret":    gen.WebhookSecret,
			"GitLab token":                gitlabToken,
			"new GitLab token":            newToken,
			"API token":                   tok.Token,
			"API token used by the tests": annTok.bearer,
			"session cookie":              annSession.session,
			"private key":                 strings.Split(pem, "\n")[2],
		}
		for _, tk := range tokens {
			secrets["token hash "+tk.Name] = tk.Hash
		}
		for what, secret := range secrets {
			if len(secret) < 8 {
				t.Fatalf("test secret %s is too short to search for: %q", what, secret)
			}
			for _, body := range bodies {
				if strings.Contains(body, secret) {
					t.Errorf("a response holds the %s:\n%.400s", what, body)
				}
			}
		}
	})
}
