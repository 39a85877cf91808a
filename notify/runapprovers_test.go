package notify

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/jmoiron/sqlx"
	"golang.org/x/crypto/ssh"

	"ferry/store"
	"ferry/store/storetest"
)

// A job run reaching an environment that needs approval is mailed to the people who may
// approve it (not the person it acts for, not a member without the right), and when nobody
// approves it within the approval expiry it ends canceled, saying so, with run.rejected sent.
func TestRunApprovalMailedAndExpires(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		srv, clientTLS := startMailServer(t, startTLSSMTP, &mailServer{mechanisms: []string{sasl.Plain}})
		p := testProject(t, db)
		users := map[string]*store.User{}
		for _, name := range []string{"alice", "bob", "carol", "dave"} {
			u := &store.User{Name: storetest.Name(name), Email: name + "@example.com", Admin: name == "carol"}
			must(t, db.CreateUser(ctx, u, "long-enough-password"))
			users[name] = u
		}
		for name, production := range map[string]bool{"alice": true, "bob": false, "dave": true} {
			_, err := db.SetMember(ctx, p.ID, users[name].Name, production)
			must(t, err)
		}
		host := &store.Host{Name: storetest.Name("web"), Address: "127.0.0.1", User: "deploy"}
		must(t, db.CreateHost(ctx, host))
		env := &store.Environment{ProjectID: p.ID, Name: "prod", Hosts: []string{host.Name}, Protected: true, ApprovalsRequired: 1}
		must(t, db.CreateEnvironment(ctx, env))
		asCarol := store.WithActor(ctx, store.Actor{UserID: users["carol"].ID, Name: users["carol"].Name})
		must(t, db.CreateExecAccount(asCarol, &store.ExecAccount{ProjectID: p.ID, Name: "ops", User: "deploy", PrivateKey: newKey(t)}))
		_, err := db.SaveScript(asCarol, &store.Script{ProjectID: p.ID, Name: "hello", Language: store.LangBash, Body: "echo hi"})
		must(t, err)
		j, err := db.SaveScriptJob(asCarol, &store.ScriptJob{ProjectID: p.ID, Name: "restart", Steps: []store.JobStepDef{{Name: "hello",
			Kind: store.StepScript, Script: "hello", Account: "ops", Target: store.JobTarget{Environment: "prod"}}}})
		must(t, err)
		addChannel(t, db, store.Channel{ProjectID: &p.ID, Kind: store.ChannelEmail, URL: mailURL("smtp", srv.addr, "starttls=required"),
			Events: []string{store.OutboxRunAwaitingApproval}})

		db.ApprovalExpiry = 2 * time.Second
		asAlice := store.WithActor(ctx, store.Actor{UserID: users["alice"].ID, Name: users["alice"].Name})
		r, err := db.CreateJobRun(asAlice, store.NewJobRun{JobID: j.ID, TriggeredBy: "api by alice", AsUserID: users["alice"].ID})
		must(t, err)
		if r.Status != store.RunAwaitingApproval || r.ApprovalExpiresAt == nil {
			t.Fatalf("run: status %s, expires %v", r.Status, r.ApprovalExpiresAt)
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
		if !strings.Contains(data, "run of job restart awaits your approval") {
			t.Errorf("the mail does not ask for approval of the run:\n%s", data)
		}

		storetest.WaitFor(t, 30*time.Second, "the run's approval to expire", func() bool {
			_, err := db.PromoteDeployments(ctx)
			must(t, err)
			r, err = db.GetJobRun(ctx, r.ID)
			must(t, err)
			return r.Status != store.RunAwaitingApproval
		})
		if r.Status != store.RunCanceled || !strings.HasPrefix(r.Error, "expired: only 0 of 1 approvals") {
			t.Errorf("expired run: status %s, error %q", r.Status, r.Error)
		}
		if _, err := db.DecideJobRun(ctx, r.ID, users["dave"].ID, true, ""); store.ErrorCode(err) != store.ECONFLICT {
			t.Errorf("approving an expired run: %v", err)
		}
		var events []string
		must(t, db.Transact(ctx, func(tx *sqlx.Tx) error {
			return tx.SelectContext(ctx, &events, tx.Rebind(`SELECT event FROM outbox WHERE job_kind = 'run' AND job_id = ? ORDER BY id`), r.ID)
		}))
		if strings.Join(events, ",") != store.OutboxRunAwaitingApproval+","+store.OutboxRunRejected {
			t.Errorf("outbox of the run: %v", events)
		}
	})
}

func newKey(t *testing.T) string {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "test")
	must(t, err)
	return string(pem.EncodeToMemory(block))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
