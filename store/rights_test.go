package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

// Issue 11 item 3: a host of a protected environment of one project must not also sit in an
// unprotected environment, of another project or the same one.
func TestSharedHostCannotDiluteProtection(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db) // orders/staging, unprotected: web1, web2, web3
		for _, name := range []string{"db1", "spare"} {
			if err := db.CreateHost(ctx, &store.Host{Name: name, Address: "127.0.0.1", User: "deploy"}); err != nil {
				t.Fatal(err)
			}
		}
		shop := mustJobProject(t, db, "shop")
		prod := &store.Environment{ProjectID: shop.ID, Name: "prod", Hosts: []string{"db1"}, Protected: true}
		if err := db.CreateEnvironment(ctx, prod); err != nil {
			t.Fatal(err)
		}

		// Adding the protected host to an unprotected environment, new or existing.
		err := db.CreateEnvironment(ctx, &store.Environment{ProjectID: f.project.ID, Name: "scratch", Hosts: []string{"spare", "db1"}})
		wantCode(t, "new unprotected environment with shop/prod's host", err, store.EINVALID, "host db1 is in the protected environment shop/prod")
		hosts := []string{"web1", "db1"}
		_, err = db.UpdateEnvironment(ctx, f.project.ID, "staging", store.EnvironmentUpdate{Hosts: &hosts})
		wantCode(t, "staging given shop/prod's host", err, store.EINVALID, "host db1 is in the protected environment shop/prod")
		if e, _ := db.GetEnvironment(ctx, f.project.ID, "staging"); strings.Join(e.Hosts, ",") != "web1,web2,web3" {
			t.Errorf("refused update changed staging's hosts to %v", e.Hosts)
		}
		_, err = db.UpdateEnvironment(ctx, shop.ID, "prod", store.EnvironmentUpdate{Protected: ptr(false)})
		if err != nil {
			t.Fatalf("unprotecting prod, which shares nothing: %v", err)
		}
		_, err = db.UpdateEnvironment(ctx, shop.ID, "prod", store.EnvironmentUpdate{Protected: ptr(true)})
		if err != nil {
			t.Fatalf("protecting prod again: %v", err)
		}
		// The same project is no different.
		err = db.CreateEnvironment(ctx, &store.Environment{ProjectID: shop.ID, Name: "canary", Hosts: []string{"db1"}})
		wantCode(t, "shop/canary with shop/prod's host", err, store.EINVALID, "shop/prod")

		// The other direction: protecting an environment whose host an unprotected one has,
		// or giving a protected environment such a host.
		_, err = db.UpdateEnvironment(ctx, shop.ID, "prod", store.EnvironmentUpdate{Hosts: &[]string{"db1", "web2"}})
		wantCode(t, "shop/prod given orders/staging's host", err, store.EINVALID, "host web2 is also in the unprotected environment orders/staging")
		err = db.CreateEnvironment(ctx, &store.Environment{ProjectID: shop.ID, Name: "live", Hosts: []string{"web3"}, Protected: true})
		wantCode(t, "new protected environment with orders/staging's host", err, store.EINVALID, "host web3 is also in the unprotected environment orders/staging")
		other := &store.Environment{ProjectID: shop.ID, Name: "demo", Hosts: []string{"web1"}}
		if err := db.CreateEnvironment(ctx, other); err != nil {
			t.Fatal(err)
		}
		_, err = db.UpdateEnvironment(ctx, shop.ID, "demo", store.EnvironmentUpdate{Protected: ptr(true)})
		wantCode(t, "protecting shop/demo", err, store.EINVALID, "protected: host web1 is also in the unprotected environment orders/staging")
		if e, _ := db.GetEnvironment(ctx, shop.ID, "demo"); e.Protected {
			t.Error("the refused update protected shop/demo")
		}
		// Protection following the host everywhere is allowed.
		_, err = db.UpdateEnvironment(ctx, f.project.ID, "staging", store.EnvironmentUpdate{Hosts: &[]string{"web2"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.UpdateEnvironment(ctx, shop.ID, "demo", store.EnvironmentUpdate{Protected: ptr(true)}); err != nil {
			t.Fatalf("protecting shop/demo once web1 is in no unprotected environment: %v", err)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// The store's rule for a good build's deployments: a protected environment only for a push
// or for a person who holds the production right when the build ends.
func TestFinishBuildProtectedNeedsAuthority(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		if _, err := db.UpdateEnvironment(ctx, f.project.ID, "staging", store.EnvironmentUpdate{Protected: ptr(true)}); err != nil {
			t.Fatal(err)
		}
		bob := &store.User{Name: "bob"}
		if err := db.CreateUser(ctx, bob, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SetMember(ctx, f.project.ID, "bob", false); err != nil {
			t.Fatal(err)
		}
		asBob := store.WithActor(ctx, store.Actor{UserID: bob.ID, Name: "bob"})
		finish := func(b *store.Build, i int) []*store.Deployment {
			t.Helper()
			mustClaimBuild(t, db, "w", b.ID)
			v := newVersion("v"+strconv.Itoa(i), i)
			if _, err := db.FinishBuild(ctx, b.ID, "w", store.BuildResult{Status: store.BuildSuccess, Version: v,
				Deploy: []store.NewDeployment{{EnvironmentID: f.staging.ID}}}); err != nil {
				t.Fatal(err)
			}
			list, err := db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: f.project.ID})
			if err != nil {
				t.Fatal(err)
			}
			var mine []*store.Deployment
			for _, d := range list {
				if d.BuildID != nil && *d.BuildID == b.ID {
					mine = append(mine, d)
				}
			}
			return mine
		}

		b, err := db.CreateBuild(asBob, newBuild(f.project.ID, 1))
		if err != nil || b.Source != store.BuildSourceAPI || b.RequestedByID == nil || *b.RequestedByID != bob.ID {
			t.Fatalf("build by bob = %+v, %v", b, err)
		}
		if d := finish(b, 1); len(d) != 0 {
			t.Fatalf("bob without the production right: %d deployments to protected staging", len(d))
		}
		if log := logText(t, db, store.JobBuild, b.ID); !strings.Contains(log, "deployment not queued: staging is protected, and bob, who asked for this build, has no production right") {
			t.Errorf("log:\n%s", log)
		}

		b, _ = db.CreateBuild(asBob, newBuild(f.project.ID, 2))
		if _, err := db.SetMember(ctx, f.project.ID, "bob", true); err != nil {
			t.Fatal(err)
		}
		if d := finish(b, 2); len(d) != 1 {
			t.Fatalf("bob with the production right: %d deployments, want 1", len(d))
		}
		// The right counts as it is when the build ends: taken away meanwhile, it is gone.
		b, _ = db.CreateBuild(asBob, newBuild(f.project.ID, 5))
		if _, err := db.SetMember(ctx, f.project.ID, "bob", false); err != nil {
			t.Fatal(err)
		}
		if d := finish(b, 5); len(d) != 0 {
			t.Fatalf("bob, whose right was taken away while his build ran: %d deployments", len(d))
		}

		b, _ = db.CreateBuild(ctx, newBuild(f.project.ID, 3)) // nobody known asked
		if d := finish(b, 3); len(d) != 0 {
			t.Fatalf("a build nobody asked for: %d deployments to protected staging", len(d))
		}

		_, b, _, err = db.RecordEvent(ctx, &store.Event{Kind: "push", Ref: "refs/heads/main", SHA: sha(4)}, ptr(newBuild(f.project.ID, 4)))
		if err != nil || b.Source != store.BuildSourcePush {
			t.Fatalf("webhook build = %+v, %v", b, err)
		}
		if d := finish(b, 4); len(d) != 1 {
			t.Fatalf("a pushed build: %d deployments, want 1", len(d))
		}
	})
}

// The webhook signing token is write-only, kept encrypted in its own column, validated, and
// changed only when asked to.
func TestWebhookSigningTokenStoredEncrypted(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := mustJobProject(t, db, "signed")
		token := "whsec_" + strings.Repeat("QUJD", 11) // 33 bytes
		for _, bad := range []string{"plain", "whsec_!!", "whsec_" + strings.Repeat("QUJD", 4)} {
			_, err := db.UpdateProject(ctx, "signed", store.ProjectUpdate{WebhookSigningToken: &bad})
			wantCode(t, "signing token "+bad, err, store.EINVALID, "webhook_signing_token: must be whsec_")
		}
		if _, err := db.UpdateProject(ctx, "signed", store.ProjectUpdate{WebhookSigningToken: &token}); err != nil {
			t.Fatal(err)
		}
		var sealed string
		err := db.Transact(ctx, func(tx *sqlx.Tx) error {
			return tx.GetContext(ctx, &sealed, tx.Rebind(`SELECT webhook_signing_token_enc FROM projects WHERE id = ?`), p.ID)
		})
		if err != nil || sealed == "" || strings.Contains(sealed, strings.TrimPrefix(token, "whsec_")) {
			t.Fatalf("stored signing token %q, %v: want it sealed", sealed, err)
		}
		if plain, err := db.Cipher().Open(sealed, store.SecretPlace("projects", "webhook_signing_token_enc", p.ID)); err != nil || plain != token {
			t.Fatalf("sealed token opens to %q, %v", plain, err)
		}
		// Other changes leave it alone; "" removes it.
		tag := "v-{version}"
		got, err := db.UpdateProject(ctx, "signed", store.ProjectUpdate{TagTemplate: &tag})
		if err != nil || got.WebhookSigningToken != token {
			t.Fatalf("after another change: %q, %v", got.WebhookSigningToken, err)
		}
		none := ""
		if got, err = db.UpdateProject(ctx, "signed", store.ProjectUpdate{WebhookSigningToken: &none}); err != nil || got.WebhookSigningToken != "" {
			t.Fatalf("after removing: %q, %v", got.WebhookSigningToken, err)
		}
		created := &store.Project{Name: "born-signed", GitLabPath: "g/born", CloneURL: "https://x/y.git", WebhookSigningToken: token}
		if err := db.CreateProject(ctx, created); err != nil {
			t.Fatal(err)
		}
		if back, err := db.GetProject(ctx, "born-signed"); err != nil || back.WebhookSigningToken != token {
			t.Fatalf("created with a signing token, read back %q, %v", back.WebhookSigningToken, err)
		}
	})
}
