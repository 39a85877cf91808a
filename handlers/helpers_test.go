package handlers_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ferry/handlers"
	"ferry/store"
)

const testBaseURL = "https://ferry.example.com"

// newServer returns the handler of a server on db.
func newServer(t testing.TB, db *store.DB) http.Handler {
	t.Helper()
	return handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL}).Handler()
}

// client makes requests to a handler as one user: with an API token, a session cookie and
// its CSRF token, or as nobody.
type client struct {
	t       testing.TB
	h       http.Handler
	bearer  string
	session string
	csrf    string
}

// response is what a request returned.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) decode(t testing.TB, dst any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), dst); err != nil {
		t.Fatalf("decode response %q: %v", r.body, err)
	}
}

// errorText returns the "error" of a JSON error body.
func (r response) errorText(t testing.TB) string {
	t.Helper()
	var e struct{ Error string }
	r.decode(t, &e)
	return e.Error
}

// do sends method path with a JSON body (none if body is "").
func (c *client) do(method, path, body string) response {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req)
}

// send adds the client's credentials to req and serves it.
func (c *client) send(req *http.Request) response {
	c.t.Helper()
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.session != "" {
		req.AddCookie(&http.Cookie{Name: "ferry_session", Value: c.session})
	}
	if c.csrf != "" && req.Header.Get("X-CSRF-Token") == "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

// must sends a request and fails the test unless it answers want.
func (c *client) must(want int, method, path, body string) response {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != want {
		c.t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, r.status, want, r.body)
	}
	return r
}

// mustUser creates a user whose password is "password-" + name.
func mustUser(t testing.TB, db *store.DB, name string, admin bool) *store.User {
	t.Helper()
	u := &store.User{Name: name, Email: name + "@example.com", Admin: admin}
	if err := db.CreateUser(context.Background(), u, "password-"+name); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	return u
}

// tokenClient returns a client that authenticates as u with a new API token.
func tokenClient(t testing.TB, h http.Handler, db *store.DB, u *store.User) *client {
	t.Helper()
	_, secret, err := db.CreateToken(context.Background(), u.ID, "test")
	if err != nil {
		t.Fatalf("create token for %s: %v", u.Name, err)
	}
	return &client{t: t, h: h, bearer: secret}
}

// sessionClient returns a client that authenticates as u with a new browser session.
func sessionClient(t testing.TB, h http.Handler, db *store.DB, u *store.User) *client {
	t.Helper()
	sess, secret, err := db.CreateSession(context.Background(), u.ID, time.Hour)
	if err != nil {
		t.Fatalf("create session for %s: %v", u.Name, err)
	}
	return &client{t: t, h: h, session: secret, csrf: sess.CSRFToken}
}

// testKeys returns a PEM private key and an authorized_keys host key line.
func testKeys(t testing.TB) (privatePEM, hostKey string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
