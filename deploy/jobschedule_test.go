package deploy_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"ferry/deploy"
	"ferry/store"
	"ferry/store/storetest"
)

// jobRunnerProcessEnv, set to a database URL, makes the test binary a job runner process on
// that database (firing schedules every 20ms) instead of running tests.
const jobRunnerProcessEnv = "FERRY_JOB_TEST_RUNNER_DB"

func runJobRunnerProcess(url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	db, err := store.Open(ctx, store.Options{URL: url, DataDir: os.TempDir(), Key: storetest.Key})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open the store:", err)
		return 1
	}
	defer db.Close()
	r := deploy.NewJobRunner(deploy.JobRunnerConfig{Store: db, Owner: fmt.Sprintf("process-%d", os.Getpid()), Workers: 1,
		Poll: 50 * time.Millisecond, SchedulePoll: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "job runner:", err)
		return 1
	}
	return 0
}

// A daily schedule whose last three runs were missed while ferry was down fires once, not
// three times, and once only although two processes look for due schedules every 20ms.
func TestScheduleFiresOnceWithTwoProcesses(t *testing.T) {
	url := storetest.URL(t, store.Postgres)
	db := storetest.OpenURL(t, url)
	ctx := context.Background()
	p := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://gitlab.example.com/g/shop.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(ctx, p))
	admin := &store.User{Name: "boss", Email: "boss@example.com", Admin: true}
	must(t, db.CreateUser(ctx, admin, "password-boss"))
	as := store.WithActor(ctx, store.Actor{UserID: admin.ID, Name: admin.Name})
	j, err := db.SaveScriptJob(as, &store.ScriptJob{ProjectID: p.ID, Name: "nightly", Steps: []store.JobStepDef{{Name: "wait", Kind: store.StepPause}}})
	must(t, err)
	s, err := db.CreateJobSchedule(as, &store.JobSchedule{ProjectID: p.ID, JobID: j.ID, Cron: "0 3 * * *", TimeZone: "Asia/Shanghai", Enabled: true})
	must(t, err)
	raw, err := sqlx.Open("postgres", url)
	must(t, err)
	defer raw.Close()
	// ferry was down for three days: three 03:00s went by.
	_, err = raw.Exec(`UPDATE job_schedules SET next_run_at = now() - interval '3 days' WHERE id = $1`, s.ID)
	must(t, err)

	for range 2 {
		proc := &workerProcess{cmd: exec.Command(os.Args[0]), out: &lockedBuffer{}, exited: make(chan struct{})}
		proc.cmd.Env = append(os.Environ(), jobRunnerProcessEnv+"="+url)
		proc.cmd.Stdout, proc.cmd.Stderr = proc.out, proc.out
		must(t, proc.cmd.Start())
		go func() { proc.cmd.Wait(); close(proc.exited) }()
		t.Cleanup(func() {
			proc.kill()
			if t.Failed() {
				t.Logf("runner process %d:\n%s", proc.cmd.Process.Pid, proc.out.String())
			}
		})
	}
	var runs []*store.JobRun
	storetest.WaitFor(t, 60*time.Second, "the schedule's run", func() bool {
		runs, err = db.ListJobRuns(ctx, p.ID, j.ID, 100)
		must(t, err)
		return len(runs) > 0
	})
	// Both processes keep looking every 20ms: give them a hundred more looks.
	time.Sleep(2 * time.Second)
	runs, err = db.ListJobRuns(ctx, p.ID, j.ID, 100)
	must(t, err)
	if len(runs) != 1 {
		t.Fatalf("%d runs, want 1: %+v", len(runs), runs)
	}
	if runs[0].ScheduleID == nil || *runs[0].ScheduleID != s.ID {
		t.Errorf("the run's schedule: %v, want %d", runs[0].ScheduleID, s.ID)
	}
	s, err = db.GetJobSchedule(ctx, p.ID, s.ID)
	must(t, err)
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	next := s.NextRunAt.In(shanghai)
	if next.Hour() != 3 || next.Minute() != 0 || !next.After(time.Now()) || next.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("next run at %s, want the next 03:00 in Shanghai", next)
	}
	if s.LastRunID == nil || *s.LastRunID != runs[0].ID {
		t.Errorf("last run %v, want %d", s.LastRunID, runs[0].ID)
	}
}

// Eight store handles (as eight processes would have) fire due schedules at the same instant,
// five times over: each time the schedule queues exactly one run.
func TestScheduleFiresOnceUnderARace(t *testing.T) {
	url := storetest.URL(t, store.Postgres)
	db := storetest.OpenURL(t, url)
	ctx := context.Background()
	p := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://gitlab.example.com/g/shop.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(ctx, p))
	admin := &store.User{Name: "boss", Email: "boss@example.com", Admin: true}
	must(t, db.CreateUser(ctx, admin, "password-boss"))
	as := store.WithActor(ctx, store.Actor{UserID: admin.ID, Name: admin.Name})
	j, err := db.SaveScriptJob(as, &store.ScriptJob{ProjectID: p.ID, Name: "nightly", Steps: []store.JobStepDef{{Name: "wait", Kind: store.StepPause}}})
	must(t, err)
	s, err := db.CreateJobSchedule(as, &store.JobSchedule{ProjectID: p.ID, JobID: j.ID, Cron: "@daily", TimeZone: "UTC", Enabled: true})
	must(t, err)
	raw, err := sqlx.Open("postgres", url)
	must(t, err)
	defer raw.Close()
	handles := make([]*store.DB, 8)
	for i := range handles {
		handles[i] = storetest.OpenURL(t, url)
	}
	for round := 1; round <= 5; round++ {
		_, err = raw.Exec(`UPDATE job_schedules SET next_run_at = now() - interval '1 hour' WHERE id = $1`, s.ID)
		must(t, err)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, h := range handles {
			wg.Go(func() {
				<-start
				if _, err := h.FireDueSchedules(ctx); err != nil {
					t.Errorf("fire: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		runs, err := db.ListJobRuns(ctx, p.ID, j.ID, 100)
		must(t, err)
		if len(runs) != round {
			t.Fatalf("round %d: %d runs in all, want %d", round, len(runs), round)
		}
	}
}
