package store_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ferry/store"
	"ferry/store/storetest"
)

// MustKeyPair returns a new PEM private key and its authorized_keys line.
func MustKeyPair(tb testing.TB) (privatePEM, public string) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
}

func actorCtx() context.Context {
	return store.WithActor(context.Background(), store.Actor{Name: "tester", RemoteAddr: "192.0.2.1"})
}

func TestUsersAndAuthentication(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		u := &store.User{Name: "alice", Email: "alice@example.com"}
		if err := db.CreateUser(ctx, u, "correct horse"); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateUser(ctx, &store.User{Name: "alice"}, "another pass"); store.ErrorCode(err) != store.ECONFLICT {
			t.Fatalf("duplicate user: got %v, want conflict", err)
		}
		if err := db.CreateUser(ctx, &store.User{Name: "bob"}, "short"); store.ErrorCode(err) != store.EINVALID {
			t.Fatalf("short password: got %v, want invalid", err)
		}
		got, err := db.Authenticate(ctx, "alice", "correct horse")
		if err != nil || got.ID != u.ID {
			t.Fatalf("Authenticate = %v, %v", got, err)
		}
		for _, pw := range []string{"wrong horse", ""} {
			if _, err := db.Authenticate(ctx, "alice", pw); store.ErrorCode(err) != store.EUNAUTHORIZED {
				t.Fatalf("wrong password %q: got %v", pw, err)
			}
		}
		if _, err := db.Authenticate(ctx, "nobody", "correct horse"); store.ErrorMessage(err) != "wrong user name or password" {
			t.Fatalf("unknown user: got %v", err)
		}
		if strings.Contains(u.PasswordHash, "correct horse") || !strings.HasPrefix(u.PasswordHash, "$2") {
			t.Fatalf("password stored as %q, want a bcrypt hash", u.PasswordHash)
		}
		pw := "new password 1"
		if _, err := db.UpdateUser(ctx, "alice", store.UserUpdate{Password: &pw}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Authenticate(ctx, "alice", pw); err != nil {
			t.Fatalf("new password refused: %v", err)
		}
	})
}

func TestEnsureAdminOnlyOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		pw, created, err := db.EnsureAdmin(ctx)
		if err != nil || !created || len(pw) < 16 {
			t.Fatalf("first EnsureAdmin = %q, %v, %v", pw, created, err)
		}
		if _, err := db.Authenticate(ctx, "admin", pw); err != nil {
			t.Fatalf("admin cannot log in with the printed password: %v", err)
		}
		if _, created, _ := db.EnsureAdmin(ctx); created {
			t.Fatal("second EnsureAdmin created another admin")
		}
	})
}

func TestTokensAndSessions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		u := &store.User{Name: "ci-bot"}
		if err := db.CreateUser(ctx, u, "long enough pw"); err != nil {
			t.Fatal(err)
		}
		tok, secret, err := db.CreateToken(ctx, u.ID, "deploy script")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, store.TokenPrefix) || strings.Contains(tok.Hash, secret) {
			t.Fatalf("token secret %q hash %q", secret, tok.Hash)
		}
		if got, err := db.UserByToken(ctx, secret); err != nil || got.ID != u.ID {
			t.Fatalf("UserByToken = %v, %v", got, err)
		}
		if _, err := db.UserByToken(ctx, secret+"x"); store.ErrorCode(err) != store.EUNAUTHORIZED {
			t.Fatalf("wrong token: %v", err)
		}
		if err := db.DeleteToken(ctx, u.ID, tok.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.UserByToken(ctx, secret); store.ErrorCode(err) != store.EUNAUTHORIZED {
			t.Fatalf("revoked token still works: %v", err)
		}

		sess, cookie, err := db.CreateSession(ctx, u.ID, time.Hour)
		if err != nil || sess.CSRFToken == "" {
			t.Fatal(err)
		}
		if _, got, err := db.SessionUser(ctx, cookie); err != nil || got.ID != u.ID {
			t.Fatalf("SessionUser = %v, %v", got, err)
		}
		db.DeleteSession(ctx, cookie)
		if _, _, err := db.SessionUser(ctx, cookie); store.ErrorCode(err) != store.EUNAUTHORIZED {
			t.Fatalf("session after logout: %v", err)
		}
		_, expired, _ := db.CreateSession(ctx, u.ID, -time.Second)
		if _, _, err := db.SessionUser(ctx, expired); store.ErrorCode(err) != store.EUNAUTHORIZED {
			t.Fatalf("expired session accepted: %v", err)
		}
	})
}

func mustProject(t *testing.T, db *store.DB, name string) *store.Project {
	t.Helper()
	p := &store.Project{Name: name, GitLabPath: "team/" + name, CloneURL: "https://gitlab.example.com/team/" + name + ".git",
		WebhookSecret: "hook-secret-" + name, Trigger: store.DefaultTrigger()}
	if err := db.CreateProject(actorCtx(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProjects(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		p := mustProject(t, db, "orders")
		if p.KeepVersions != 20 {
			t.Fatalf("KeepVersions default = %d", p.KeepVersions)
		}
		got, err := db.GetProjectByGitLabPath(ctx, "team/orders")
		if err != nil || got.WebhookSecret != "hook-secret-orders" || got.Trigger.Keyword != "devops" {
			t.Fatalf("read back %+v, %v", got, err)
		}
		dup := &store.Project{Name: "orders2", GitLabPath: "team/orders", CloneURL: "https://x/y.git"}
		if err := db.CreateProject(ctx, dup); store.ErrorCode(err) != store.ECONFLICT || !strings.Contains(err.Error(), "gitlab_path") {
			t.Fatalf("duplicate path: %v", err)
		}
		for _, bad := range []string{"x'; DROP TABLE projects;--", "项目", "", "-x", strings.Repeat("a", 64)} {
			err := db.CreateProject(ctx, &store.Project{Name: bad, GitLabPath: "a/b", CloneURL: "https://x/y.git"})
			if store.ErrorCode(err) != store.EINVALID {
				t.Errorf("name %q: got %v, want invalid", bad, err)
			}
		}
		name, kw := "orders-svc", "release"
		upd, err := db.UpdateProject(ctx, "orders", store.ProjectUpdate{Name: &name, Trigger: &store.Trigger{Keyword: kw, Branches: []string{"main", "release/*"}}})
		if err != nil || upd.Name != name || upd.WebhookSecret != "hook-secret-orders" {
			t.Fatalf("update: %+v, %v", upd, err)
		}
		if _, err := db.GetProject(ctx, "orders"); !store.IsNotFound(err) {
			t.Fatalf("old name still found: %v", err)
		}
		list, _ := db.ListProjects(ctx, store.ProjectFilter{})
		if len(list) != 1 || list[0].Trigger.Branches[1] != "release/*" {
			t.Fatalf("list = %+v", list)
		}
		if err := db.DeleteProject(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteProject(ctx, name); !store.IsNotFound(err) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestMembersFilterProjects(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		a, b := mustProject(t, db, "a"), mustProject(t, db, "b")
		_ = b
		u := &store.User{Name: "dev"}
		db.CreateUser(ctx, u, "password123")
		if _, err := db.SetMember(ctx, a.ID, "dev", false); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SetMember(ctx, a.ID, "dev", true); err != nil {
			t.Fatal(err)
		}
		m, err := db.GetMember(ctx, a.ID, u.ID)
		if err != nil || !m.Production {
			t.Fatalf("member = %+v, %v", m, err)
		}
		if _, err := db.GetMember(ctx, b.ID, u.ID); !store.IsNotFound(err) {
			t.Fatalf("non-member: %v", err)
		}
		mine, _ := db.ListProjects(ctx, store.ProjectFilter{MemberID: u.ID})
		if len(mine) != 1 || mine[0].Name != "a" {
			t.Fatalf("member's projects = %v", mine)
		}
		if _, err := db.SetMember(ctx, a.ID, "ghost", false); store.ErrorCode(err) != store.EINVALID {
			t.Fatalf("unknown user: %v", err)
		}
	})
}

func TestHostsAndEnvironments(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		priv, pub := MustKeyPair(t)
		h := &store.Host{Name: "web-1", Address: "10.0.0.5", User: "deploy", PrivateKey: priv}
		if err := db.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		if h.Port != 22 {
			t.Fatalf("port default = %d", h.Port)
		}
		bad := []*store.Host{
			{Name: "h2", Address: "10.0.0.6", User: "deploy", PrivateKey: "not a key"},
			{Name: "h2", Address: "10.0.0.6", User: "deploy", HostKey: "ssh-ed25519 garbage"},
			{Name: "h2", Address: "a b", User: "deploy"},
			{Name: "h2", Address: "10.0.0.6", User: "deploy", Port: 70000},
			{Name: "h2", Address: "10.0.0.6", User: "$(id)"},
		}
		for i, b := range bad {
			if err := db.CreateHost(ctx, b); store.ErrorCode(err) != store.EINVALID {
				t.Errorf("bad host %d: got %v, want invalid", i, err)
			}
		}
		got, err := db.GetHost(ctx, "web-1")
		if err != nil || got.PrivateKey != priv {
			t.Fatalf("private key did not read back: %v", err)
		}
		if err := db.PinHostKey(ctx, h.ID, pub); err != nil {
			t.Fatal(err)
		}
		_, other := MustKeyPair(t)
		if err := db.PinHostKey(ctx, h.ID, other); store.ErrorCode(err) != store.ECONFLICT {
			t.Fatalf("second key pinned over the first: %v", err)
		}
		db.CreateHost(ctx, &store.Host{Name: "web-2", Address: "web-2.internal", User: "deploy", HostKey: pub})

		p := mustProject(t, db, "shop")
		env := &store.Environment{ProjectID: p.ID, Name: "prod", Hosts: []string{"web-2", "web-1"}, Protected: true,
			Strategy: store.Strategy{Kind: "rolling", Batch: "50%"}}
		if err := db.CreateEnvironment(ctx, env); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "test", Hosts: []string{"nope"}}); store.ErrorCode(err) != store.EINVALID {
			t.Fatalf("unknown host: %v", err)
		}
		e, err := db.GetEnvironment(ctx, p.ID, "prod")
		if err != nil || strings.Join(e.Hosts, ",") != "web-2,web-1" || !e.Protected || e.Strategy.Batch != "50%" {
			t.Fatalf("environment read back %+v, %v", e, err)
		}
		if err := db.DeleteHost(ctx, "web-1"); store.ErrorCode(err) != store.ECONFLICT || !strings.Contains(err.Error(), "shop/prod") {
			t.Fatalf("delete host in use: %v", err)
		}
		hosts := []string{"web-1"}
		if _, err := db.UpdateEnvironment(ctx, p.ID, "prod", store.EnvironmentUpdate{Hosts: &hosts}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteHost(ctx, "web-2"); err != nil {
			t.Fatalf("delete unused host: %v", err)
		}
		audit, _ := db.ListAudit(ctx, store.AuditFilter{})
		if len(audit) < 6 || audit[0].Action != "host.delete" || audit[0].UserName != "tester" || audit[0].RemoteAddr != "192.0.2.1" {
			t.Fatalf("audit = %+v", audit[0])
		}
	})
}

func TestSecretsEncryptedAtRest(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			u := storetest.URL(t, d)
			db := storetest.OpenURL(t, u)
			priv, _ := MustKeyPair(t)
			ctx := actorCtx()
			mustProject(t, db, "vault")
			db.CreateHost(ctx, &store.Host{Name: "h", Address: "h.local", User: "app", PrivateKey: priv})
			db.Close()

			// A store opened with another key cannot read the secrets, and the plain text is nowhere.
			other, err := store.Open(ctx, store.Options{URL: u, Key: []byte("another key of thirty-two bytes!")})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := other.GetHost(ctx, "h"); err == nil || !strings.Contains(err.Error(), "FERRY_SECRET_KEY") {
				t.Fatalf("wrong key read the private key: %v", err)
			}
			// The same key after a restart reads everything back: nothing is lost.
			again := storetest.OpenURL(t, u)
			h, err := again.GetHost(ctx, "h")
			if err != nil || h.PrivateKey != priv {
				t.Fatalf("after restart: %v", err)
			}
		})
	}
}
