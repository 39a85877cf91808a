package handlers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// jobFilePermRoutes adds the raw file upload to the permission table.
func jobFilePermRoutes() {
	addPermRoutes(map[string][5]int{
		"PUT /api/v1/projects/:project/files/:file": {401, 404, 403, 403, 201},
	}, map[string]string{
		"PUT /api/v1/projects/:project/files/:file": `raw bytes`,
	}, func(t *testing.T, db *store.DB, fx *permFixture) {
		fx.params["file"] = "upload.bin"
	})
}

// A file of several MiB — more than a JSON body may carry — is uploaded as the raw body and
// kept byte for byte; one over 64 MiB is refused with 413 naming the limit, whether it says
// its length or not; and only administrators upload, however they ask.
func TestJobFileRawUpload(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL}).Handler()
		ctx := context.Background()
		admin := mustUser(t, db, "boss", true)
		mem := mustUser(t, db, "mem", false)
		outsider := mustUser(t, db, "outsider", false)
		p := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
		must(t, db.CreateProject(ctx, p))
		_, err := db.SetMember(ctx, p.ID, "mem", true)
		must(t, err)
		boss := tokenClient(t, h, db, admin)
		const path = "/api/v1/projects/shop/files/app.tar.gz"

		content := bytes.Repeat([]byte("ferry job file \x00\xff\n"), 3<<20/18)
		put := func(c *client, body io.Reader, length int64) response {
			req := httptest.NewRequest(http.MethodPut, path, body)
			req.ContentLength = length
			req.Header.Set("Content-Type", "application/octet-stream")
			return c.send(req)
		}
		r := put(boss, bytes.NewReader(content), int64(len(content)))
		if r.status != http.StatusCreated {
			t.Fatalf("upload of %d bytes: %d %s", len(content), r.status, r.body)
		}
		var f store.JobFile
		r.decode(t, &f)
		sum := sha256.Sum256(content)
		if f.Name != "app.tar.gz" || f.Size != int64(len(content)) || f.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("answer: %+v", f)
		}
		_, kept, err := db.ReadJobFile(ctx, f.ID)
		must(t, err)
		if !bytes.Equal(kept, content) {
			t.Errorf("kept %d bytes, not the %d uploaded", len(kept), len(content))
		}

		over := int64(store.MaxJobFileBytes + 1)
		for name, length := range map[string]int64{"with its length": over, "without a length": -1} {
			r := put(boss, io.LimitReader(zeros{}, over), length)
			if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "at most 64 MiB") {
				t.Errorf("a file over the limit %s: %d %s", name, r.status, r.body)
			}
		}

		small := func() io.Reader { return strings.NewReader("hi") }
		if r := put(tokenClient(t, h, db, mem), small(), 2); r.status != http.StatusForbidden {
			t.Errorf("a member (even with the production right) uploads: %d %s", r.status, r.body)
		}
		if r := put(tokenClient(t, h, db, outsider), small(), 2); r.status != http.StatusNotFound {
			t.Errorf("a non-member uploads: %d %s", r.status, r.body)
		}
		if r := put(&client{t: t, h: h}, small(), 2); r.status != http.StatusUnauthorized {
			t.Errorf("anonymous uploads: %d %s", r.status, r.body)
		}
		sess := sessionClient(t, h, db, admin)
		sess.csrf = ""
		if r := put(sess, small(), 2); r.status != http.StatusForbidden {
			t.Errorf("an administrator's session without the CSRF token uploads: %d %s", r.status, r.body)
		}
		// Other requests keep the 1 MiB limit: the JSON upload and a PUT elsewhere.
		big := `{"name":"x","content":"` + strings.Repeat("A", 2<<20) + `"}`
		if r := boss.do("POST", "/api/v1/projects/shop/files", big); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("a 2 MiB JSON upload: %d", r.status)
		}
		if r := boss.do("PUT", "/api/v1/hosts/nohost/labels", big); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("a 2 MiB body to another PUT: %d", r.status)
		}
	})
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
