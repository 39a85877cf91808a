// Package gitlabtest is a fake GitLab for tests: an httptest.Server answering the API
// endpoints ferry calls (commit statuses, tags, project hooks) with GitLab's JSON, checking
// the PRIVATE-TOKEN header, and recording every call.
package gitlabtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a fake GitLab. Its zero value is not usable; call New.
type Server struct {
	// URL is the base address to give an API client, such as http://127.0.0.1:40123.
	URL string
	// Token is the PRIVATE-TOKEN every call must carry.
	Token string

	srv      *httptest.Server
	mu       sync.Mutex
	projects map[string]*project
	calls    []Call
	failNext int
	nextID   int64
	stall    chan struct{} // while not nil, requests wait for it to close
	stalled  int           // requests waiting now
}

// Call is one request the fake received.
type Call struct {
	Method string
	// Path is the request path as sent, with the project path still URL-encoded.
	Path string
	// Project is the decoded project path (or id) the call was about, if any.
	Project string
	// Body holds the JSON or form fields sent.
	Body map[string]any
	// Status is the HTTP status the fake answered.
	Status int
}

// Status is a commit status set through the API.
type Status struct {
	SHA, State, Name, TargetURL, Description string
}

// Tag is a tag in a fake project.
type Tag struct {
	Name, SHA, Message string
}

// Hook is a project webhook. Token is kept though GitLab never shows it.
type Hook struct {
	ID                    int64
	URL, Token            string
	PushEvents            bool
	TagPushEvents         bool
	EnableSSLVerification bool

	// SigningToken is the hook's signing_token (Standard Webhooks), kept though GitLab never
	// shows it.
	SigningToken string
}

type project struct {
	id       int64
	path     string
	statuses []Status
	tags     []Tag
	hooks    []Hook
}

// New starts a fake GitLab that accepts token and closes it when the test ends.
func New(tb testing.TB, token string) *Server {
	tb.Helper()
	s := &Server{Token: token, projects: map[string]*project{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	tb.Cleanup(s.srv.Close)
	return s
}

// AddProject creates a project with the path "group/app" and returns its id. Calls about
// projects not added answer 404 like GitLab does.
func (s *Server) AddProject(path string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.projects[path] = &project{id: s.nextID, path: path}
	return s.nextID
}

// AddTag puts a tag into a project, as if pushed.
func (s *Server) AddTag(projectPath, name, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.mustProject(projectPath)
	p.tags = append(p.tags, Tag{Name: name, SHA: sha})
}

// AddHook adds a webhook to a project, as if made by hand, and returns its id.
func (s *Server) AddHook(projectPath string, h Hook) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.mustProject(projectPath)
	s.nextID++
	h.ID = s.nextID
	p.hooks = append(p.hooks, h)
	return h.ID
}

// FailNext makes the next n calls answer 500 Internal Server Error.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

// Stall makes every request wait, as a GitLab that hangs does, until release is called or
// the client gives up. Pending requests are released when the test ends.
func (s *Server) Stall(tb testing.TB) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.stall = ch
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			s.stall = nil
			s.mu.Unlock()
			close(ch)
		})
	}
	tb.Cleanup(release)
	return release
}

// Stalled returns how many requests are waiting for Stall's release now.
func (s *Server) Stalled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalled
}

// Calls returns every call received so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Statuses returns the commit statuses set in a project, oldest first.
func (s *Server) Statuses(projectPath string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.mustProject(projectPath).statuses...)
}

// Tags returns the tags of a project.
func (s *Server) Tags(projectPath string) []Tag {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Tag(nil), s.mustProject(projectPath).tags...)
}

// Hooks returns the webhooks of a project.
func (s *Server) Hooks(projectPath string) []Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Hook(nil), s.mustProject(projectPath).hooks...)
}

func (s *Server) mustProject(path string) *project {
	p, ok := s.projects[path]
	if !ok {
		panic(fmt.Sprintf("gitlabtest: project %q was not added", path))
	}
	return p
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if stall := s.stall; stall != nil {
		s.stalled++
		s.mu.Unlock()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
		s.mu.Lock()
		s.stalled--
	}
	defer s.mu.Unlock()
	call := Call{Method: r.Method, Path: r.URL.EscapedPath(), Body: readBody(r)}
	rec := &recorder{ResponseWriter: w}
	defer func() {
		call.Status = rec.status
		s.calls = append(s.calls, call)
	}()
	if s.failNext > 0 {
		s.failNext--
		writeJSON(rec, http.StatusInternalServerError, map[string]any{"message": "500 Internal Server Error"})
		return
	}
	if r.Header.Get("PRIVATE-TOKEN") != s.Token {
		writeJSON(rec, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
		return
	}
	if call.Path == "/api/v4/projects" && r.Method == http.MethodGet {
		s.searchProjects(rec, r.URL.Query().Get("search"))
		return
	}
	rest, ok := strings.CutPrefix(call.Path, "/api/v4/projects/")
	if !ok {
		notFound(rec)
		return
	}
	segs := strings.Split(rest, "/")
	for i := range segs {
		segs[i], _ = url.PathUnescape(segs[i])
	}
	call.Project = segs[0]
	p := s.findProject(segs[0])
	if p == nil {
		writeJSON(rec, http.StatusNotFound, map[string]any{"message": "404 Project Not Found"})
		return
	}
	s.route(rec, r.Method, p, segs[1:], call.Body)
}

func (s *Server) findProject(idOrPath string) *project {
	if p, ok := s.projects[idOrPath]; ok {
		return p
	}
	for _, p := range s.projects {
		if strconv.FormatInt(p.id, 10) == idOrPath {
			return p
		}
	}
	return nil
}

func (s *Server) route(w http.ResponseWriter, method string, p *project, segs []string, body map[string]any) {
	switch {
	case len(segs) == 2 && segs[0] == "statuses" && method == http.MethodPost:
		s.setStatus(w, p, segs[1], body)
	case len(segs) == 2 && segs[0] == "repository" && segs[1] == "tags" && method == http.MethodPost:
		s.createTag(w, p, body)
	case len(segs) == 3 && segs[0] == "repository" && segs[1] == "tags" && method == http.MethodGet:
		s.getTag(w, p, segs[2])
	case len(segs) == 1 && segs[0] == "hooks" && method == http.MethodGet:
		s.listHooks(w, p)
	case len(segs) == 1 && segs[0] == "hooks" && method == http.MethodPost:
		s.addHook(w, p, body)
	case len(segs) == 2 && segs[0] == "hooks" && method == http.MethodPut:
		s.editHook(w, p, segs[1], body)
	default:
		notFound(w)
	}
}

var validStates = map[string]bool{"pending": true, "running": true, "success": true, "failed": true, "canceled": true, "skipped": true}

func (s *Server) setStatus(w http.ResponseWriter, p *project, sha string, body map[string]any) {
	st := Status{SHA: sha, State: str(body, "state"), Name: str(body, "name"), TargetURL: str(body, "target_url"), Description: str(body, "description")}
	if st.Name == "" {
		st.Name = "default"
	}
	if !validStates[st.State] {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "state does not have a valid value"})
		return
	}
	for i := len(p.statuses) - 1; i >= 0; i-- {
		prev := p.statuses[i]
		if prev.SHA == sha && prev.Name == st.Name {
			if prev.State == st.State {
				msg := fmt.Sprintf("Cannot transition status via :%s from :%s (Reason(s): Status cannot transition via \"%s\")", st.State, prev.State, st.State)
				writeJSON(w, http.StatusBadRequest, map[string]any{"message": msg})
				return
			}
			break
		}
	}
	p.statuses = append(p.statuses, st)
	s.nextID++
	writeJSON(w, http.StatusCreated, map[string]any{
		"id": s.nextID, "sha": sha, "ref": "", "status": st.State, "name": st.Name,
		"target_url": nullable(st.TargetURL), "description": nullable(st.Description),
		"created_at": time.Now().UTC().Format(time.RFC3339), "allow_failure": false,
		"author": map[string]any{"id": 1, "username": "ferry", "name": "ferry"},
	})
}

func (s *Server) createTag(w http.ResponseWriter, p *project, body map[string]any) {
	t := Tag{Name: str(body, "tag_name"), SHA: str(body, "ref"), Message: str(body, "message")}
	if t.Name == "" || t.SHA == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "tag_name is missing, ref is missing"})
		return
	}
	for _, old := range p.tags {
		if old.Name == t.Name {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Tag " + t.Name + " already exists"})
			return
		}
	}
	p.tags = append(p.tags, t)
	writeJSON(w, http.StatusCreated, tagJSON(t))
}

func (s *Server) getTag(w http.ResponseWriter, p *project, name string) {
	for _, t := range p.tags {
		if t.Name == name {
			writeJSON(w, http.StatusOK, tagJSON(t))
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Tag Not Found"})
}

func tagJSON(t Tag) map[string]any {
	short := t.SHA
	if len(short) > 8 {
		short = short[:8]
	}
	return map[string]any{
		"name": t.Name, "message": t.Message, "target": t.SHA, "protected": false, "release": nil,
		"commit": map[string]any{"id": t.SHA, "short_id": short, "title": "", "message": ""},
	}
}

func (s *Server) listHooks(w http.ResponseWriter, p *project) {
	list := []map[string]any{}
	for _, h := range p.hooks {
		list = append(list, hookJSON(p, h))
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) addHook(w http.ResponseWriter, p *project, body map[string]any) {
	if str(body, "url") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "url is missing"})
		return
	}
	s.nextID++
	h := Hook{ID: s.nextID}
	applyHook(&h, body)
	p.hooks = append(p.hooks, h)
	writeJSON(w, http.StatusCreated, hookJSON(p, h))
}

func (s *Server) editHook(w http.ResponseWriter, p *project, id string, body map[string]any) {
	for i := range p.hooks {
		if strconv.FormatInt(p.hooks[i].ID, 10) == id {
			applyHook(&p.hooks[i], body)
			writeJSON(w, http.StatusOK, hookJSON(p, p.hooks[i]))
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
}

func applyHook(h *Hook, body map[string]any) {
	if v, ok := body["url"]; ok {
		h.URL = fmt.Sprint(v)
	}
	if v, ok := body["token"]; ok {
		h.Token = fmt.Sprint(v)
	}
	if v, ok := body["signing_token"]; ok {
		h.SigningToken = fmt.Sprint(v)
	}
	h.PushEvents = boolField(body, "push_events", h.PushEvents)
	h.TagPushEvents = boolField(body, "tag_push_events", h.TagPushEvents)
	h.EnableSSLVerification = boolField(body, "enable_ssl_verification", h.EnableSSLVerification)
}

func hookJSON(p *project, h Hook) map[string]any {
	return map[string]any{
		"id": h.ID, "url": h.URL, "project_id": p.id, "push_events": h.PushEvents,
		"tag_push_events": h.TagPushEvents, "enable_ssl_verification": h.EnableSSLVerification,
		"created_at": time.Now().UTC().Format(time.RFC3339),
	}
}

func readBody(r *http.Request) map[string]any {
	body := map[string]any{}
	for k, v := range r.URL.Query() {
		body[k] = v[0]
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		json.Unmarshal(data, &body)
		return body
	}
	if form, err := url.ParseQuery(string(data)); err == nil {
		for k, v := range form {
			body[k] = v[0]
		}
	}
	return body
}

func str(body map[string]any, key string) string {
	if v, ok := body[key]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

func boolField(body map[string]any, key string, def bool) bool {
	switch v := body[key].(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return def
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]any{"error": "404 Not Found"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
