package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
)

// maxProjectListBytes bounds the memory projectLists holds; past it the lists are dropped and
// read again on demand.
const maxProjectListBytes = 16 << 20

// projectLists keeps the encoded answer of GET /api/v1/projects per viewer for as long as the
// database's projects generation stays the same: the list is read often (dashboards, scripts)
// and changes seldom, and one small read of the generation tells whether any process changed
// a project or a membership since. Administrators share one list; a member's list is their own.
type projectLists struct {
	mu    sync.Mutex
	lists map[int64]projectList // by member id; 0 for administrators
	bytes int
}

type projectList struct {
	generation int64
	body       []byte
}

func (l *projectLists) get(viewer, generation int64) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.lists[viewer]
	if !ok || e.generation != generation {
		return nil, false
	}
	return e.body, true
}

func (l *projectLists) put(viewer, generation int64, body []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lists == nil || l.bytes+len(body) > maxProjectListBytes {
		l.lists, l.bytes = map[int64]projectList{}, 0
	}
	if old, ok := l.lists[viewer]; ok {
		l.bytes -= len(old.body)
	}
	l.lists[viewer] = projectList{generation: generation, body: body}
	l.bytes += len(body)
}

// listProjects answers the projects the caller sees, from projectLists when nothing changed.
// The generation is read before the list, so a list is never kept under a newer generation
// than the one it was read at.
func (s *Server) listProjects(c *gin.Context) {
	ctx := c.Request.Context()
	viewer := int64(0)
	if u := currentUser(c); !u.Admin {
		viewer = u.ID
	}
	generation, err := s.db.ProjectsGeneration(ctx)
	if err != nil {
		s.fail(c, err)
		return
	}
	if body, ok := s.projectLists.get(viewer, generation); ok {
		c.Data(http.StatusOK, "application/json; charset=utf-8", body)
		return
	}
	projects, err := s.visibleProjects(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	views := make([]projectView, 0, len(projects))
	for _, p := range projects {
		views = append(views, s.projectView(p))
	}
	body, err := json.Marshal(views)
	if err != nil {
		s.fail(c, fmt.Errorf("encode the project list: %w", err))
		return
	}
	s.projectLists.put(viewer, generation, body)
	c.Data(http.StatusOK, "application/json; charset=utf-8", body)
}
