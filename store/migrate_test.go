package store_test

import (
	"context"
	"sync"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

func TestMigrateTwiceIsNoop(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n, err := db.Migrate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("second Migrate applied %d migrations, want 0", n)
		}
		pending, err := db.Pending(ctx)
		if err != nil || pending != 0 {
			t.Fatalf("Pending = %d, %v; want 0", pending, err)
		}
	})
}

func TestConcurrentMigrateAppliesOnce(t *testing.T) {
	u := storetest.URL(t, store.Postgres)
	all, err := store.Migrations(store.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	applied := make([]int, 4)
	errs := make([]error, 4)
	for i := range applied {
		db, err := store.Open(ctx, store.Options{URL: u, Key: storetest.Key})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = db.Migrate(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	if total != len(all) {
		t.Fatalf("four concurrent starts applied %d migrations in all, want %d (each once)", total, len(all))
	}
}
