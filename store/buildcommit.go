package store

import (
	"context"
	"fmt"
	"time"
)

// FillBuildCommit records the commit's title and author on the build with id where they are
// empty, as a build started from a page or the API (or a webhook that named none) learns them
// from git. Fields already set (from GitLab's push) are kept. The title is cut to 500
// characters.
func (db *DB) FillBuildCommit(ctx context.Context, id int64, title, author string) error {
	_, err := db.db.ExecContext(ctx, db.q(`UPDATE builds SET
		commit_title = CASE WHEN commit_title = '' THEN ? ELSE commit_title END,
		commit_author = CASE WHEN commit_author = '' THEN ? ELSE commit_author END WHERE id = ?`),
		truncate(title, 500), truncate(author, 200), id)
	if err != nil {
		return fmt.Errorf("record the commit of build %d: %w", id, err)
	}
	return nil
}

// CommitSummary is one commit as a list of changes shows it.
type CommitSummary struct {
	SHA    string    `json:"sha"`
	Title  string    `json:"title"`
	Author string    `json:"author"`
	Time   time.Time `json:"time"`
	// URL is the commit's page on GitLab, when ferry can tell it.
	URL string `json:"url,omitempty"`
}

// GitLabProject is a project on GitLab, to pick when creating a ferry project.
type GitLabProject struct {
	Path    string `json:"path_with_namespace"`
	Name    string `json:"name"`
	HTTPURL string `json:"http_url_to_repo"`
	SSHURL  string `json:"ssh_url_to_repo"`
	WebURL  string `json:"web_url"`
}
