package store_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

// rawExec runs statements on the database at u past the store, as someone with write access
// to the database (or a restored backup) could.
func rawExec(t *testing.T, d store.Dialect, u string, statements ...string) {
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
	for _, s := range statements {
		if _, err := raw.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestSecretsBoundToTheirRow copies sealed secrets between rows and columns in SQL: host A's
// SSH key into host B, project A's webhook secret into project B, a GitLab token into the
// webhook secret column, channel A's URL into channel B. Each copy must fail to open with an
// error naming the row, never hand out the other row's secret.
func TestSecretsBoundToTheirRow(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := actorCtx()
			u := storetest.URL(t, d)
			db := storetest.OpenURL(t, u)
			keyA, _ := MustKeyPair(t)
			keyB, _ := MustKeyPair(t)
			hostA := &store.Host{Name: "a", Address: "a.local", User: "app", PrivateKey: keyA}
			hostB := &store.Host{Name: "b", Address: "b.local", User: "app", PrivateKey: keyB}
			for _, h := range []*store.Host{hostA, hostB} {
				if err := db.CreateHost(ctx, h); err != nil {
					t.Fatal(err)
				}
			}
			projA, projB := mustProject(t, db, "alpha"), mustProject(t, db, "beta")
			if _, err := db.UpdateProject(ctx, "alpha", store.ProjectUpdate{GitLabToken: secretPtr("glpat-alpha-token")}); err != nil {
				t.Fatal(err)
			}
			chA := notifyChannel(t, db, &store.Channel{ProjectID: &projA.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/a?token=alpha-secret",
				Events: []string{store.OutboxBuildFailed}, Enabled: true})
			chB := notifyChannel(t, db, &store.Channel{ProjectID: &projB.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/b?token=beta-secret",
				Events: []string{store.OutboxBuildFailed}, Enabled: true})
			// Before any swap, every secret reads back (so the failures below are the swaps').
			if h, err := db.GetHost(ctx, "b"); err != nil || h.PrivateKey != keyB {
				t.Fatalf("host b before the swap: %v", err)
			}

			rawExec(t, d, u,
				`UPDATE hosts SET private_key_enc = (SELECT private_key_enc FROM hosts WHERE name = 'a') WHERE name = 'b'`,
				`UPDATE projects SET webhook_secret_enc = (SELECT webhook_secret_enc FROM projects WHERE name = 'alpha') WHERE name = 'beta'`,
				`UPDATE projects SET webhook_secret_enc = gitlab_token_enc WHERE name = 'alpha'`,
				`UPDATE channels SET url_enc = (SELECT url_enc FROM channels c WHERE c.id = `+itoa(chA.ID)+`) WHERE id = `+itoa(chB.ID))

			// The untouched row still reads.
			if h, err := db.GetHost(ctx, "a"); err != nil || h.PrivateKey != keyA {
				t.Fatalf("host a (not swapped): %v", err)
			}
			check := func(what string, err error, got, foreign, place string) {
				t.Helper()
				if err == nil {
					t.Errorf("%s: read a secret swapped in from another row (%q)", what, got)
					return
				}
				if strings.Contains(err.Error(), foreign) {
					t.Errorf("%s: the error shows the other row's secret: %v", what, err)
				}
				if !strings.Contains(err.Error(), place) || !strings.Contains(err.Error(), "another row") {
					t.Errorf("%s: error %q does not say the value does not belong to %s", what, err, place)
				}
			}
			h, err := db.GetHost(ctx, "b")
			check("host b's key", err, field(h, func(h *store.Host) string { return h.PrivateKey }), keyA, store.SecretPlace("hosts", "private_key_enc", hostB.ID))
			p, err := db.GetProject(ctx, "beta")
			check("project beta's webhook secret", err, field(p, func(p *store.Project) string { return p.WebhookSecret }), "hook-secret-alpha", store.SecretPlace("projects", "webhook_secret_enc", projB.ID))
			p, err = db.GetProject(ctx, "alpha")
			check("project alpha's webhook secret from its token column", err, field(p, func(p *store.Project) string { return p.WebhookSecret }), "glpat-alpha-token", store.SecretPlace("projects", "webhook_secret_enc", projA.ID))
			ch, err := db.GetChannel(ctx, chB.ID)
			check("channel b's url", err, field(ch, func(c *store.Channel) string { return c.URL }), "alpha-secret", store.SecretPlace("channels", "url_enc", chB.ID))
		})
	}
}

// TestOldFormatSecretsReadAndResealed: a secret written by an earlier ferry ("v1:", no
// associated data) still reads, and the next Migrate (every start) reseals it bound to its
// row, after which copying it to another row fails like any other.
func TestOldFormatSecretsReadAndResealed(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := actorCtx()
			u := storetest.URL(t, d)
			db := storetest.OpenURL(t, u)
			keyA, _ := MustKeyPair(t)
			keyB, _ := MustKeyPair(t)
			for _, h := range []*store.Host{{Name: "a", Address: "a.local", User: "app", PrivateKey: keyA}, {Name: "b", Address: "b.local", User: "app", PrivateKey: keyB}} {
				if err := db.CreateHost(ctx, h); err != nil {
					t.Fatal(err)
				}
			}
			p := mustProject(t, db, "old")
			rawExec(t, d, u,
				`UPDATE hosts SET private_key_enc = '`+sealV1(t, keyA)+`' WHERE name = 'a'`,
				// Sealed under another key: left alone, and the start does not fail for it.
				`UPDATE hosts SET private_key_enc = '`+sealV1With(t, []byte("another key of thirty-two bytes!"), keyB)+`' WHERE name = 'b'`,
				`UPDATE projects SET webhook_secret_enc = '`+sealV1(t, "old-hook-secret")+`' WHERE id = `+itoa(p.ID))
			h, err := db.GetHost(ctx, "a")
			if err != nil || h.PrivateKey != keyA {
				t.Fatalf("old-format host key: %v", err)
			}
			if got, err := db.GetProject(ctx, "old"); err != nil || got.WebhookSecret != "old-hook-secret" {
				t.Fatalf("old-format webhook secret: %v", err)
			}

			n, err := db.ResealSecrets(ctx)
			if err != nil || n != 2 {
				t.Fatalf("ResealSecrets = %d, %v; want 2 values resealed", n, err)
			}
			if _, err := db.GetHost(ctx, "b"); err == nil || !strings.Contains(err.Error(), "FERRY_SECRET_KEY") {
				t.Fatalf("a key sealed with another key: %v", err)
			}
			dump := notifyRawDump(t, d, u, `SELECT private_key_enc FROM hosts WHERE name = 'a' UNION ALL SELECT webhook_secret_enc FROM projects`)
			if strings.Contains(dump, "v1:") {
				t.Fatalf("old-format values left after resealing:\n%s", dump)
			}
			again := storetest.OpenURL(t, u) // a restart: Migrate reseals nothing more, everything reads
			if h, err := again.GetHost(ctx, "a"); err != nil || h.PrivateKey != keyA {
				t.Fatalf("resealed host key: %v", err)
			}
			if got, err := again.GetProject(ctx, "old"); err != nil || got.WebhookSecret != "old-hook-secret" {
				t.Fatalf("resealed webhook secret: %v", err)
			}
			rawExec(t, d, u, `UPDATE hosts SET private_key_enc = (SELECT private_key_enc FROM hosts WHERE name = 'a') WHERE name = 'b'`)
			if h, err := again.GetHost(ctx, "b"); err == nil {
				t.Fatalf("a resealed key copied to host b was read: %q", h.PrivateKey[:20])
			}
		})
	}
}

// sealV1 seals plain as ferry did before secrets were bound to rows: "v1:" and base64 of
// nonce || AES-256-GCM(plain) without associated data.
func sealV1(t *testing.T, plain string) string {
	t.Helper()
	return sealV1With(t, storetest.Key, plain)
}

func sealV1With(t *testing.T, key []byte, plain string) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return "v1:" + base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(plain), nil))
}

func field[T any](v *T, get func(*T) string) string {
	if v == nil {
		return ""
	}
	return get(v)
}

func secretPtr(s string) *string { return &s }

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
