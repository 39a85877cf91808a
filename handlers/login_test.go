package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// browser is a tiny cookie-keeping client for the page flow.
type browser struct {
	t       *testing.T
	h       http.Handler
	cookies map[string]string
}

func (b *browser) request(method, path string, form url.Values, header map[string]string) *httptest.ResponseRecorder {
	b.t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return rec
}

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// formToken returns the csrf_token of the first form in a page.
func formToken(t *testing.T, html string) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no csrf_token in the page:\n%s", html)
	}
	return m[1]
}

func expect(t *testing.T, what string, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("%s: status %d, want %d; body %.300s", what, rec.Code, status, rec.Body.String())
	}
}

func TestLoginLogoutFlow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		mustUser(t, db, "ann", false)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"shop/orders","clone_url":"https://x/y.git"}`)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/members", `{"user":"ann"}`)
		b := &browser{t: t, h: h, cookies: map[string]string{}}

		rec := b.request("GET", "/projects/orders", nil, nil)
		expect(t, "a page without login", rec, http.StatusSeeOther)
		if loc := rec.Header().Get("Location"); loc != "/login?next=%2Fprojects%2Forders" {
			t.Errorf("redirect to %q", loc)
		}
		rec = b.request("GET", "/login?next=/projects/orders", nil, nil)
		expect(t, "login page", rec, http.StatusOK)
		for h, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"} {
			if got := rec.Header().Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("Content-Security-Policy = %q", csp)
		}
		loginToken := formToken(t, rec.Body.String())

		// A login posted from another site has no login cookie: refused, no session.
		stranger := &browser{t: t, h: h, cookies: map[string]string{}}
		rec = stranger.request("POST", "/login", url.Values{"name": {"ann"}, "password": {"password-ann"}, "csrf_token": {loginToken}}, nil)
		expect(t, "login without the login cookie", rec, http.StatusForbidden)
		if stranger.cookies["ferry_session"] != "" {
			t.Fatal("a cross-site login got a session")
		}

		rec = b.request("POST", "/login", url.Values{"name": {"ann"}, "password": {"wrong-password"}, "csrf_token": {loginToken}, "next": {"/projects/orders"}}, nil)
		expect(t, "wrong password", rec, http.StatusUnauthorized)
		if !strings.Contains(rec.Body.String(), "wrong user name or password") || !strings.Contains(rec.Body.String(), `name="password"`) {
			t.Errorf("a failed login must show the form and the reason: %s", rec.Body.String())
		}
		var audit []map[string]any
		admin.must(http.StatusOK, "GET", "/api/v1/audit?limit=1", "").decode(t, &audit)
		if audit[0]["action"] != "login.failed" || audit[0]["target"] != "user/ann" {
			t.Errorf("the failed login is not in the audit log: %v", audit)
		}

		loginToken = formToken(t, rec.Body.String())
		rec = b.request("POST", "/login", url.Values{"name": {"ann"}, "password": {"password-ann"}, "csrf_token": {loginToken}, "next": {"/projects/orders"}}, nil)
		expect(t, "login", rec, http.StatusSeeOther)
		if loc := rec.Header().Get("Location"); loc != "/projects/orders" {
			t.Errorf("after login: redirect to %q", loc)
		}
		cookie := rec.Header().Get("Set-Cookie")
		for _, part := range []string{"ferry_session=", "Path=/", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(strings.Join(rec.Header().Values("Set-Cookie"), "\n"), part) {
				t.Errorf("session cookie %q lacks %s", cookie, part)
			}
		}
		if strings.Contains(cookie, "Secure") {
			t.Errorf("cookie is Secure without SecureCookies: %q", cookie)
		}

		rec = b.request("GET", "/", nil, nil)
		expect(t, "projects page", rec, http.StatusOK)
		page := rec.Body.String()
		if !strings.Contains(page, `href="/projects/orders"`) || !strings.Contains(page, "ann") {
			t.Errorf("projects page lacks the project link or the user: %s", page)
		}
		csrf := formToken(t, page)
		expect(t, "project page", b.request("GET", "/projects/orders", nil, nil), http.StatusOK)

		// State changes with the session cookie need the CSRF token.
		rec = b.request("POST", "/api/v1/user/tokens", nil, nil)
		expect(t, "API POST with the cookie but no CSRF token", rec, http.StatusForbidden)
		rec = b.request("POST", "/api/v1/user/tokens", nil, map[string]string{"X-CSRF-Token": "wrong"})
		expect(t, "API POST with a wrong CSRF token", rec, http.StatusForbidden)
		if r := b.request("GET", "/api/v1/user/tokens", nil, nil); r.Code != 200 || r.Body.String() != "[]" {
			t.Errorf("refused requests made tokens: %d %s", r.Code, r.Body.String())
		}
		expect(t, "logout without the token", b.request("POST", "/logout", url.Values{}, nil), http.StatusForbidden)
		expect(t, "still logged in", b.request("GET", "/", nil, nil), http.StatusOK)

		session := b.cookies["ferry_session"]
		rec = b.request("POST", "/logout", url.Values{"csrf_token": {csrf}}, nil)
		expect(t, "logout", rec, http.StatusSeeOther)
		if b.cookies["ferry_session"] != "" {
			t.Error("logout did not clear the cookie")
		}
		// The old cookie no longer works anywhere.
		old := &browser{t: t, h: h, cookies: map[string]string{"ferry_session": session}}
		expect(t, "page with a deleted session", old.request("GET", "/", nil, nil), http.StatusSeeOther)
		old.cookies["ferry_session"] = session
		expect(t, "API with a deleted session", old.request("GET", "/api/v1/user", nil, nil), http.StatusUnauthorized)
	})
}

func TestExpiredSessionIsRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		c := sessionClient(t, h, db, mustUser(t, db, "ann", false))
		c.must(http.StatusOK, "GET", "/api/v1/user", "")
		db.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		c.must(http.StatusUnauthorized, "GET", "/api/v1/user", "")
		r := c.do("GET", "/", "")
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login") {
			t.Errorf("page with an expired session: %d %v", r.status, r.header)
		}
	})
}

func TestCSRFOnFormsAndBearerNeedsNone(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		u := mustUser(t, db, "root", true)
		sess := sessionClient(t, h, db, u)
		token := sessionClient(t, h, db, u).csrf
		// A form field carries the token as well as the header does.
		form := url.Values{"csrf_token": {sess.csrf}}
		req := httptest.NewRequest("POST", "/api/v1/projects/nope/members", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		noHeader := *sess
		noHeader.csrf = ""
		if r := noHeader.send(req); r.status != http.StatusNotFound {
			t.Errorf("form csrf_token: status %d (%s), want 404 (past the CSRF check)", r.status, r.body)
		}
		// Another session's token does not do.
		noHeader.csrf = token
		noHeader.must(http.StatusForbidden, "POST", "/api/v1/user/tokens", `{"name":"x"}`)
		// A bearer token needs no CSRF token.
		tokenClient(t, h, db, u).must(http.StatusCreated, "POST", "/api/v1/user/tokens", `{"name":"x"}`)
		// A bad bearer token is refused even with a good cookie.
		bad := *sess
		bad.bearer = "nonsense"
		bad.must(http.StatusUnauthorized, "GET", "/api/v1/user", "")
	})
}

func TestLoginThrottleAndRedirects(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := handlers.New(handlers.Config{DB: db, SecureCookies: true}).Handler()
		mustUser(t, db, "ann", false)
		b := &browser{t: t, h: h, cookies: map[string]string{}}
		post := func(password, next string) *httptest.ResponseRecorder {
			tok := formToken(t, b.request("GET", "/login", nil, nil).Body.String())
			return b.request("POST", "/login", url.Values{"name": {"ann"}, "password": {password}, "csrf_token": {tok}, "next": {next}}, nil)
		}
		for i := range 5 {
			expect(t, "failed login "+string(rune('1'+i)), post("nope-nope", ""), http.StatusUnauthorized)
		}
		rec := post("password-ann", "")
		expect(t, "login after 5 failures", rec, http.StatusTooManyRequests)
		if !strings.Contains(rec.Body.String(), "try again in 15 minutes") {
			t.Errorf("throttled login page: %s", rec.Body.String())
		}

		// A restart (a new server on the same database) remembers the failures.
		h = handlers.New(handlers.Config{DB: db, SecureCookies: true}).Handler()
		b = &browser{t: t, h: h, cookies: map[string]string{}}
		expect(t, "login after a restart", post("password-ann", ""), http.StatusTooManyRequests)

		// Once the window has passed, the right password works.
		db.Now = func() time.Time { return time.Now().Add(store.DefaultLoginLimits.Window + time.Second) }
		rec = post("password-ann", "//evil.example.com/x")
		expect(t, "login with a foreign next after the window", rec, http.StatusSeeOther)
		if loc := rec.Header().Get("Location"); loc != "/" {
			t.Errorf("open redirect to %q", loc)
		}
		if c := strings.Join(rec.Header().Values("Set-Cookie"), "\n"); !strings.Contains(c, "Secure") {
			t.Errorf("SecureCookies: cookie not Secure: %s", c)
		}
		rec = b.request("GET", "/login?next=/projects", nil, nil)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/projects" {
			t.Errorf("login page when logged in: %d %s", rec.Code, rec.Header().Get("Location"))
		}
	})
}

// tryLogin posts one login form from the peer 192.0.2.1 (httptest's), with X-Forwarded-For
// set when xff is not empty, and returns the status.
func tryLogin(t *testing.T, h http.Handler, name, password, xff string) int {
	t.Helper()
	form := url.Values{"name": {name}, "password": {password}, "csrf_token": {"login-token"}}
	req := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "ferry_login_csrf", Value: "login-token"})
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestParallelWrongPasswordsGetOnlyTheLimitOfChecks(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		mustUser(t, db, "ann", false)
		// The attack: 40 wrong passwords at once. Every 401 is a password checked with bcrypt
		// (a refused try answers 429 before any check); the old throttle gave 39 checks.
		statuses := make([]int, 40)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = tryLogin(t, h, "ann", fmt.Sprintf("guess-%d", i), "")
			}()
		}
		wg.Wait()
		count := map[int]int{}
		for _, s := range statuses {
			count[s]++
		}
		limit := store.DefaultLoginLimits.PerUserAddress
		if count[http.StatusUnauthorized] > limit || count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != 40 {
			t.Errorf("40 parallel wrong passwords: %v (status: count), want at most %d password checks (401) and the rest 429", count, limit)
		}
		if n, err := db.FailedLogins(context.Background(), "ann", time.Hour); err != nil || n > limit {
			t.Errorf("attempts reserved for ann: %d %v, want at most %d", n, err, limit)
		}
	})
}

func TestSprayingUserNamesIsStoppedPerAddress(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		mustUser(t, db, "zoe", false)
		// Real users, so each check is a real (test-cost) bcrypt rather than the full-cost one
		// an unknown name gets.
		for i := range 50 {
			mustUser(t, db, fmt.Sprintf("user%d", i), false)
		}
		checked := 0
		for i := range 50 {
			if tryLogin(t, h, fmt.Sprintf("user%d", i), "Password1", "") == http.StatusUnauthorized {
				checked++
			}
		}
		if checked != store.DefaultLoginLimits.PerAddress {
			t.Errorf("50 user names from one address: %d passwords checked, want the per-address limit %d", checked, store.DefaultLoginLimits.PerAddress)
		}
		if got := tryLogin(t, h, "zoe", "password-zoe", ""); got != http.StatusTooManyRequests {
			t.Errorf("a new name from the spraying address: status %d, want 429", got)
		}
	})
}

func TestLoginThrottleBehindAProxy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		mustUser(t, db, "ann", false)
		// Without FERRY_TRUSTED_PROXIES, X-Forwarded-For is not believed: a new made-up
		// address on every try does not dodge the limit.
		direct := newServer(t, db)
		for i := range 6 {
			got := tryLogin(t, direct, "ann", "wrong-password", fmt.Sprintf("203.0.113.%d", i))
			if want := map[bool]int{true: 401, false: 429}[i < 5]; got != want {
				t.Fatalf("try %d with a forged X-Forwarded-For: status %d, want %d", i+1, got, want)
			}
		}
		// Behind a trusted proxy (the peer 192.0.2.1), two clients are counted apart: one
		// guessing does not lock the other out.
		proxied := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL, TrustedProxies: []string{"192.0.2.0/24"}}).Handler()
		for i := range 6 {
			got := tryLogin(t, proxied, "ann", "wrong-password", "198.51.100.1")
			if want := map[bool]int{true: 401, false: 429}[i < 5]; got != want {
				t.Fatalf("client 1 try %d: status %d, want %d", i+1, got, want)
			}
		}
		if got := tryLogin(t, proxied, "ann", "password-ann", "198.51.100.2"); got != http.StatusSeeOther {
			t.Errorf("client 2 behind the same proxy: status %d, want a login (303)", got)
		}
	})
}

func TestPagesErrorsAndStatic(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	h := newServer(t, db)
	c := sessionClient(t, h, db, mustUser(t, db, "ann", false))
	r := c.must(http.StatusNotFound, "GET", "/projects/nope", "")
	if !strings.Contains(r.header.Get("Content-Type"), "text/html") || !strings.Contains(r.body, `project &#34;nope&#34; not found`) {
		t.Errorf("page 404: %s %s", r.header.Get("Content-Type"), r.body)
	}
	r = c.must(http.StatusNotFound, "GET", "/api/v1/nothing", "")
	if r.errorText(t) == "" {
		t.Errorf("API 404 is not JSON: %s", r.body)
	}
	r = c.must(http.StatusOK, "GET", "/static/style.css", "")
	if !strings.Contains(r.header.Get("Content-Type"), "text/css") || !strings.Contains(r.body, ".nav") {
		t.Errorf("style.css: %s", r.header.Get("Content-Type"))
	}
	c.must(http.StatusNotFound, "GET", "/static/../templates.go", "")
}
