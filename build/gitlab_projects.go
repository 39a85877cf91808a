package build

import (
	"context"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"ferry/store"
)

// SearchProjects lists (at most 20) GitLab projects the token can see whose name or path
// holds search.
func (g *GitLab) SearchProjects(ctx context.Context, search string) ([]store.GitLabProject, error) {
	opt := &gitlab.ListProjectsOptions{Search: gitlab.Ptr(search), Simple: gitlab.Ptr(true), SearchNamespaces: gitlab.Ptr(true),
		OrderBy: gitlab.Ptr("path"), Sort: gitlab.Ptr("asc"), ListOptions: gitlab.ListOptions{PerPage: 20}}
	projects, _, err := g.client.Projects.ListProjects(opt, gitlab.WithContext(ctx))
	if err != nil {
		return nil, g.apiError("search projects", "", err)
	}
	out := make([]store.GitLabProject, 0, len(projects))
	for _, p := range projects {
		out = append(out, store.GitLabProject{Path: p.PathWithNamespace, Name: p.Name, HTTPURL: p.HTTPURLToRepo, SSHURL: p.SSHURLToRepo, WebURL: p.WebURL})
	}
	return out, nil
}

// SearchProjects lists the GitLab projects (of FERRY_GITLAB_URL, with its token) whose name
// or path holds search. EINVALID when no GitLab is configured.
func (f *Frontend) SearchProjects(ctx context.Context, search string) ([]store.GitLabProject, error) {
	api, err := f.w.gitlabFor(&store.Project{})
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "GitLab: %v", err)
	}
	if api == nil {
		return nil, store.Errorf(store.EINVALID, "no GitLab address is configured: set FERRY_GITLAB_URL and FERRY_GITLAB_TOKEN to pick projects from GitLab")
	}
	projects, err := api.SearchProjects(ctx, search)
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "search: %v", err)
	}
	return projects, nil
}

// HasGitLab reports whether a GitLab address is configured (FERRY_GITLAB_URL).
func (f *Frontend) HasGitLab() bool { return f.w.cfg.GitLab.BaseURL != "" }
