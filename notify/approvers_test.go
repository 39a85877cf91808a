package notify

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"ferry/store"
	"ferry/store/storetest"
)

// The notice that a deployment awaits approval is mailed to the people who may approve it:
// not its requester, not a member without the production right, but an administrator who is
// no member and a member with the right.
func TestWorkerMailsApprovers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		srv, clientTLS := startMailServer(t, startTLSSMTP, &mailServer{mechanisms: []string{sasl.Plain}})
		p := testProject(t, db)
		users := map[string]*store.User{}
		for _, name := range []string{"alice", "bob", "carol", "dave"} {
			u := &store.User{Name: storetest.Name(name), Email: name + "@example.com", Admin: name == "carol"}
			if err := db.CreateUser(ctx, u, "long-enough-password"); err != nil {
				t.Fatal(err)
			}
			users[name] = u
		}
		for name, production := range map[string]bool{"alice": true, "bob": false, "dave": true} {
			if _, err := db.SetMember(ctx, p.ID, users[name].Name, production); err != nil {
				t.Fatal(err)
			}
		}
		host := &store.Host{Name: storetest.Name("web"), Address: "127.0.0.1", User: "deploy"}
		if err := db.CreateHost(ctx, host); err != nil {
			t.Fatal(err)
		}
		env := &store.Environment{ProjectID: p.ID, Name: "prod", Hosts: []string{host.Name}, Protected: true, ApprovalsRequired: 1}
		if err := db.CreateEnvironment(ctx, env); err != nil {
			t.Fatal(err)
		}
		b := storetest.FinishedBuild(t, db, p, store.BuildSuccess)
		addChannel(t, db, store.Channel{ProjectID: &p.ID, Kind: store.ChannelEmail, URL: mailURL("smtp", srv.addr, "starttls=required"),
			Events: []string{store.OutboxDeploymentAwaitingApproval}})
		asAlice := store.WithActor(ctx, store.Actor{UserID: users["alice"].ID, Name: users["alice"].Name})
		if _, err := db.CreateDeployment(asAlice, store.NewDeployment{ProjectID: p.ID, EnvironmentID: env.ID, VersionID: *b.VersionID,
			TriggeredBy: "api by alice"}); err != nil {
			t.Fatal(err)
		}
		if n := runOnce(t, newWorker(db, clientTLS)); n != 1 {
			t.Fatalf("RunOnce made %d sends, want 1", n)
		}
		srv.mu.Lock()
		rcpts, data := slices.Clone(srv.rcpts), string(srv.data)
		srv.mu.Unlock()
		slices.Sort(rcpts)
		if strings.Join(rcpts, ",") != "carol@example.com,dave@example.com" {
			t.Errorf("the approval request went to %v, want the administrator and the member with the production right", rcpts)
		}
		if !strings.Contains(data, "awaits your approval") {
			t.Errorf("the mail does not ask for approval:\n%s", data)
		}
	})
}
