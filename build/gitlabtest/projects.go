package gitlabtest

import (
	"net/http"
	"path"
	"sort"
	"strings"
)

// searchProjects answers GET /projects?search=: the projects whose path holds search
// (case-insensitive), by path, as GitLab's simple project objects.
func (s *Server) searchProjects(w http.ResponseWriter, search string) {
	out := []map[string]any{}
	paths := make([]string, 0, len(s.projects))
	for p := range s.projects {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if !strings.Contains(strings.ToLower(p), strings.ToLower(search)) {
			continue
		}
		out = append(out, map[string]any{
			"id": s.projects[p].id, "name": path.Base(p), "path": path.Base(p), "path_with_namespace": p,
			"http_url_to_repo": s.URL + "/" + p + ".git", "ssh_url_to_repo": "git@gitlab.test:" + p + ".git",
			"web_url": s.URL + "/" + p,
		})
	}
	writeJSON(w, http.StatusOK, out)
}
