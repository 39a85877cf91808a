package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"ferry/build"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// TestConcurrentPushesToOneProject sends 50 pushes to one project at once over HTTP, as GitLab
// does when people push at the same moment: every push is stored, each as its own build, and
// the builds are numbered 1 to 50 without a gap or a repeat. GitLab's redeliveries of ten of
// them, sent at once, store nothing new and are answered with the first delivery's build; the
// next push is number 51. Two deliveries of one event at the very same moment store it once.
func TestConcurrentPushesToOneProject(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db := storetest.Open(t, d)
			ctx := context.Background()
			p := &store.Project{Name: "app", GitLabPath: "group/app", CloneURL: "/nowhere.git", Trigger: store.DefaultTrigger(), KeepVersions: 20, WebhookSecret: "hook-secret"}
			must(t, db.CreateProject(ctx, p))
			w := build.NewWorker(build.WorkerConfig{DB: db, DataDir: t.TempDir()}) // not run: builds stay queued
			srv := httptest.NewServer(handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL, GitLab: build.NewFrontend(w)}).Handler())
			defer srv.Close()
			push := func(i int) string {
				return pushBody(t, "group/app", "main", fmt.Sprintf("%040x", i+1), fmt.Sprintf("change %d devops", i))
			}

			const n = 50
			var deliveries []concurrentDelivery
			for i := range n {
				deliveries = append(deliveries, concurrentDelivery{key: fmt.Sprintf("uuid-%d", i), body: push(i)})
			}
			first := deliverAtOnce(t, srv.URL, deliveries)
			builds := map[int64]string{} // build → delivery key
			for i, a := range first {
				if a.Duplicate || a.Build == 0 || a.Decision != store.EventBuild {
					t.Fatalf("push %d answered %+v, want a new build", i, a)
				}
				builds[a.Build] = deliveries[i].key
			}
			if len(builds) != n {
				t.Fatalf("%d pushes got %d distinct builds", n, len(builds))
			}
			wantNumbers(t, db, p.ID, n, true)

			// GitLab redelivers ten of them, all at once: nothing new, the first build again.
			again := deliverAtOnce(t, srv.URL, deliveries[:10])
			for i, a := range again {
				if !a.Duplicate || a.Build != first[i].Build || a.Event != first[i].Event {
					t.Fatalf("redelivery of %s answered %+v, want duplicate of %+v", deliveries[i].key, a, first[i])
				}
			}
			wantNumbers(t, db, p.ID, n, true)
			next := deliverAtOnce(t, srv.URL, []concurrentDelivery{{key: "uuid-next", body: push(n)}})
			if b, err := db.GetBuild(ctx, next[0].Build); err != nil || b.Number != n+1 {
				t.Fatalf("the push after the redeliveries: build %+v, %v; want number %d", b, err, n+1)
			}

			// Two deliveries of one event at the very same moment: stored once. On PostgreSQL the
			// one found to be a redelivery may have taken a number first (a gap, see
			// store/buildnumbers.go); numbers still never repeat.
			var pairs []concurrentDelivery
			for i := range 5 {
				d := concurrentDelivery{key: fmt.Sprintf("twice-%d", i), body: push(n + 1 + i)}
				pairs = append(pairs, d, d)
			}
			twice := deliverAtOnce(t, srv.URL, pairs)
			for i := 0; i < len(twice); i += 2 {
				a, b := twice[i], twice[i+1]
				if a.Build != b.Build || a.Event != b.Event || a.Duplicate == b.Duplicate {
					t.Fatalf("one event delivered twice at once answered %+v and %+v, want one new and one duplicate of it", a, b)
				}
			}
			wantNumbers(t, db, p.ID, n+1+5, d == store.SQLite)
		})
	}
}

type concurrentDelivery struct {
	key, body string
}

// deliverAtOnce sends every delivery as a push webhook, all at the same moment, and returns
// the answers in order. Any answer other than 200 fails the test.
func deliverAtOnce(t *testing.T, base string, deliveries []concurrentDelivery) []hookAnswer {
	t.Helper()
	answers := make([]hookAnswer, len(deliveries))
	errs := make([]error, len(deliveries))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range deliveries {
		wg.Go(func() {
			<-start
			answers[i], errs[i] = deliverPush(base, d)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("delivery %s: %v", deliveries[i].key, err)
		}
	}
	return answers
}

func deliverPush(base string, d concurrentDelivery) (hookAnswer, error) {
	var a hookAnswer
	req, err := http.NewRequest("POST", base+"/hooks/gitlab", strings.NewReader(d.body))
	if err != nil {
		return a, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", "hook-secret")
	req.Header.Set("X-Gitlab-Event-UUID", d.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return a, err
	}
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return a, json.Unmarshal(body, &a)
}

// wantNumbers checks that the project has n builds and n events, one build per event, with
// distinct numbers: exactly 1 to n when consecutive.
func wantNumbers(t *testing.T, db *store.DB, projectID int64, n int, consecutive bool) {
	t.Helper()
	ctx := context.Background()
	builds, err := db.ListBuilds(ctx, store.BuildFilter{ProjectID: projectID, Limit: 1000})
	must(t, err)
	events, err := db.ListEvents(ctx, projectID, 1000)
	must(t, err)
	if len(builds) != n || len(events) != n {
		t.Fatalf("%d builds and %d events stored, want %d of each", len(builds), len(events), n)
	}
	var numbers []int
	for _, b := range builds {
		numbers = append(numbers, b.Number)
	}
	slices.Sort(numbers)
	if len(slices.Compact(slices.Clone(numbers))) != n {
		t.Fatalf("build numbers repeat: %v", numbers)
	}
	if consecutive && (numbers[0] != 1 || numbers[n-1] != n) {
		t.Fatalf("build numbers %v, want 1 to %d", numbers, n)
	}
	perEvent := map[int64]bool{}
	for _, e := range events {
		if e.BuildID == nil || perEvent[*e.BuildID] {
			t.Fatalf("event %d has build %v, want a build of its own", e.ID, e.BuildID)
		}
		perEvent[*e.BuildID] = true
	}
}
