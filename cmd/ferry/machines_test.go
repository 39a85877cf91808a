package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// TestBuildOnOneMachineDeployFromAnother runs two ferry "machines" on one PostgreSQL, each
// with a data dir of its own, as a team that outgrew one machine does: machine A builds a
// push and stops; machine B, whose data dir never held the artifact file, deploys that version
// to a real sshd host and serves its download. The host verified the artifact's sha256 as it
// unpacked it, and B keeps a checked copy for the next deployment.
func TestBuildOnOneMachineDeployFromAnother(t *testing.T) {
	dbURL := storetest.URL(t, store.Postgres)
	machine := func(name string) instance {
		dataDir := filepath.Join(t.TempDir(), name)
		return instance{dataDir: dataDir, env: ferryEnv("FERRY_DATA_DIR="+dataDir, "FERRY_ADDR=127.0.0.1:0",
			"FERRY_DATABASE_URL="+dbURL, "FERRY_SECRET_KEY=shared-by-every-machine")}
	}
	a, b := machine("machine-a"), machine("machine-b")
	cluster := sshtest.Start(t, 1, sshtest.Options{})
	host := cluster.Hosts()[0]
	repo := newGitRepo(t)

	srvA := startServer(t, a.env)
	res := runFerry(t, a.env, "", "token", "add", "admin")
	if res.code != 0 {
		t.Fatalf("ferry token add admin: exit %d: %s", res.code, res.stderr)
	}
	token := strings.TrimSpace(res.stdout)
	api := newClient(t, srvA.URL, token)
	api.api(http.StatusCreated, "POST", "/api/v1/hosts", map[string]any{"name": host.Name, "address": host.Addr(),
		"port": host.Port(), "user": "root", "private_key": string(cluster.ClientKeyPEM), "host_key": host.HostKey()}, nil)
	api.api(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "orders", "gitlab_path": "shop/orders",
		"clone_url": repo.dir, "webhook_secret": "hook-secret-123456",
		"trigger": map[string]any{"keyword": "devops", "branches": []string{"main"}}}, nil)
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/environments",
		map[string]any{"name": "staging", "hosts": []string{host.Name}}, nil)

	built := waitBuild(t, api, pushBuild(t, srvA, repo, repo.commit("first release devops"), "deliver-1"))
	if built.Status != store.BuildSuccess || built.Version == "" {
		t.Fatalf("the build on machine A ended %+v, want success with a version\n%s", built, srvA.logs.String())
	}
	var versions []store.Version
	api.api(http.StatusOK, "GET", "/api/v1/projects/orders/versions", nil, &versions)
	if len(versions) != 1 || versions[0].Name != built.Version {
		t.Fatalf("versions after the build: %+v, want %s", versions, built.Version)
	}
	v := versions[0]
	if got := fileSHA256(t, filepath.Join(a.dataDir, "artifacts", "orders", v.Name+".tar.gz")); got != v.SHA256 {
		t.Fatalf("machine A's artifact file has sha256 %s, want %s", got, v.SHA256)
	}
	if code := srvA.stop(); code != 0 {
		t.Fatalf("machine A exited %d after SIGTERM", code)
	}
	// Both "machines" share this test's disk: what only machine A holds goes with it.
	if err := os.RemoveAll(a.dataDir); err != nil {
		t.Fatal(err)
	}

	srvB := startServer(t, b.env)
	if _, err := os.Stat(filepath.Join(b.dataDir, "artifacts", "orders", v.Name+".tar.gz")); err == nil {
		t.Fatal("machine B holds the artifact file before deploying: the test would prove nothing")
	}
	apiB := newClient(t, srvB.URL, token)
	var d store.Deployment
	apiB.api(http.StatusCreated, "POST", "/api/v1/projects/orders/deployments",
		map[string]any{"environment": "staging", "version": v.Name}, &d)
	if done := waitDeployment(t, apiB, d.ID); done.Status != store.DeploymentSuccess {
		t.Fatalf("the deployment of %s by machine B ended %s: %s\n%s", v.Name, done.Status, done.Error, srvB.logs.String())
	}
	assertRunning(t, host, v.Name)
	recorded, err := os.ReadFile(host.Path(fmt.Sprintf("releases/.%s.sha256", v.Name)))
	if err != nil || strings.TrimSpace(string(recorded)) != v.SHA256 {
		t.Errorf("the host recorded sha256 %q (%v) for the release, want %s", recorded, err, v.SHA256)
	}
	if got := fileSHA256(t, filepath.Join(b.dataDir, "artifacts", "orders", v.Name+".tar.gz")); got != v.SHA256 {
		t.Errorf("machine B's copy of the artifact has sha256 %s, want %s", got, v.SHA256)
	}

	download := apiB.get(fmt.Sprintf("/api/v1/versions/%d/artifact", v.ID))
	sum := sha256.Sum256([]byte(download.body))
	if download.status != http.StatusOK || hex.EncodeToString(sum[:]) != v.SHA256 || int64(len(download.body)) != v.Size {
		t.Errorf("download from machine B: status %d, %d bytes with sha256 %x; want 200, %d bytes with %s",
			download.status, len(download.body), sum, v.Size, v.SHA256)
	}
	if code := srvB.stop(); code != 0 {
		t.Fatalf("machine B exited %d after SIGTERM", code)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
