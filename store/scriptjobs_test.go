package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

// An execution account's key is sealed at rest, bound to its row, and opens again.
func TestExecAccountKeySealedAtRest(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := actorCtx()
			u := storetest.URL(t, d)
			db := storetest.OpenURL(t, u)
			p := mustProject(t, db, "shop")
			key, _ := MustKeyPair(t)
			must(t, db.CreateExecAccount(ctx, &store.ExecAccount{ProjectID: p.ID, Name: "ops", User: "deploy", PrivateKey: key}))
			must(t, db.CreateExecAccount(ctx, &store.ExecAccount{ProjectID: p.ID, Name: "other", User: "tomcat", PrivateKey: key}))
			driver, dsn := "postgres", u
			if d == store.SQLite {
				driver, dsn = "sqlite", "file:"+strings.TrimPrefix(u, "sqlite:")
			}
			raw, err := sqlx.Open(driver, dsn)
			must(t, err)
			defer raw.Close()
			var stored string
			must(t, raw.Get(&stored, `SELECT private_key_enc FROM exec_accounts WHERE name = 'ops'`))
			if stored == "" || strings.Contains(stored, "PRIVATE KEY") || strings.Contains(stored, key[40:80]) {
				t.Fatalf("the key is stored in the clear: %.80q", stored)
			}
			a, err := db.GetExecAccount(ctx, p.ID, "ops")
			must(t, err)
			if a.PrivateKey != key || !a.HasKey {
				t.Fatal("the key does not open again")
			}
			// Another row's sealed key does not open in this one.
			rawExec(t, d, u, `UPDATE exec_accounts SET private_key_enc = (SELECT private_key_enc FROM exec_accounts WHERE name = 'ops') WHERE name = 'other'`)
			if _, err := db.GetExecAccount(ctx, p.ID, "other"); err == nil {
				t.Error("a key copied from another account opened")
			}
		})
	}
}

// Saving a script keeps every version; a job refuses bad parameters, and a schedule's next
// time is counted in its time zone.
func TestScriptVersionsJobChecksAndCronZones(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	ctx := actorCtx()
	p := mustProject(t, db, "shop")
	for _, body := range []string{"echo one", "echo two"} {
		_, err := db.SaveScript(ctx, &store.Script{ProjectID: p.ID, Name: "hello", Language: store.LangBash, Body: body})
		must(t, err)
	}
	versions, err := db.ListScriptVersions(ctx, p.ID, "hello")
	must(t, err)
	if len(versions) != 2 || versions[0].Version != 2 || versions[0].Body != "echo two" || versions[1].Body != "echo one" {
		t.Fatalf("versions: %+v", versions)
	}
	for _, tc := range []struct {
		name   string
		job    store.ScriptJob
		reason string
	}{
		{"reserved name", store.ScriptJob{Name: "a", Params: []store.ScriptParam{{Name: "PATH"}}, Steps: []store.JobStepDef{{Name: "p", Kind: store.StepPause}}}, "reserved"},
		{"lower-case name", store.ScriptJob{Name: "a", Params: []store.ScriptParam{{Name: "count"}}, Steps: []store.JobStepDef{{Name: "p", Kind: store.StepPause}}}, "upper-case"},
		{"FERRY_ prefix", store.ScriptJob{Name: "a", Params: []store.ScriptParam{{Name: "FERRY_HOST"}}, Steps: []store.JobStepDef{{Name: "p", Kind: store.StepPause}}}, "reserved"},
		{"no steps", store.ScriptJob{Name: "a"}, "steps"},
		{"unknown script", store.ScriptJob{Name: "a", Steps: []store.JobStepDef{{Name: "s", Kind: store.StepScript, Script: "nope", Account: "ops", Target: store.JobTarget{Environment: "x"}}}}, "account"},
		{"two targets", store.ScriptJob{Name: "a", Steps: []store.JobStepDef{{Name: "s", Kind: store.StepScript, Script: "hello", Account: "ops", Target: store.JobTarget{Environment: "x", Label: "web"}}}}, "exactly one"},
		{"relative path", store.ScriptJob{Name: "a", Steps: []store.JobStepDef{{Name: "d", Kind: store.StepDistribute, File: "f", Path: "srv/app", Account: "ops", Target: store.JobTarget{Label: "web"}}}}, "absolute"},
	} {
		tc.job.ProjectID = p.ID
		_, err := db.SaveScriptJob(ctx, &tc.job)
		if store.ErrorCode(err) != store.EINVALID || !strings.Contains(store.ErrorMessage(err), tc.reason) {
			t.Errorf("%s: %v, want EINVALID about %q", tc.name, err, tc.reason)
		}
	}
	from := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC) // 04:00 on 2 March in Shanghai
	next, err := store.NextCronTime("30 2 * * *", "Asia/Shanghai", from)
	must(t, err)
	if want := time.Date(2026, 3, 2, 18, 30, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next 02:30 in Shanghai after %s: %s, want %s", from, next, want)
	}
	for _, bad := range [][2]string{{"61 * * * *", "UTC"}, {"* * * * *", "Mars/Olympus"}, {"CRON_TZ=UTC * * * * *", "UTC"}} {
		if _, err := store.NextCronTime(bad[0], bad[1], from); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("%q in %q: %v, want EINVALID", bad[0], bad[1], err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A run's log is kept as long as other logs: purged once old and the run has ended, never
// while the run is queued, running or waiting at a pause.
func TestRunLogsFollowRetention(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		p := mustProject(t, db, "shop")
		admin := &store.User{Name: "boss", Email: "boss@example.com", Admin: true}
		must(t, db.CreateUser(ctx, admin, "password-boss"))
		j, err := db.SaveScriptJob(ctx, &store.ScriptJob{ProjectID: p.ID, Name: "wait", Steps: []store.JobStepDef{{Name: "wait", Kind: store.StepPause}}})
		must(t, err)
		queued, err := db.CreateJobRun(ctx, store.NewJobRun{JobID: j.ID, AsUserID: admin.ID})
		must(t, err)
		ended, err := db.CreateJobRun(ctx, store.NewJobRun{JobID: j.ID, AsUserID: admin.ID})
		must(t, err)
		_, err = db.CancelJobRun(ctx, ended.ID)
		must(t, err)
		realNow := db.Now
		db.Now = func() time.Time { return realNow().Add(-40 * 24 * time.Hour) }
		for _, id := range []int64{queued.ID, ended.ID} {
			w, err := db.OpenLog(ctx, store.JobRunLog, id)
			must(t, err)
			w.Write("stdout", store.RunLogHost(1, "web-1"), "old line")
			must(t, w.Close())
		}
		db.Now = realNow
		if _, err := db.PurgeOld(ctx, 30*24*time.Hour); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[int64]int{queued.ID: 1, ended.ID: 0} {
			lines, err := db.ReadRunLog(ctx, id, 0, 0, "", 100)
			must(t, err)
			n := 0
			for _, l := range lines {
				if l.Text == "old line" {
					n++
				}
			}
			if n != want {
				t.Errorf("run %d: %d old lines left, want %d", id, n, want)
			}
		}
	})
}
