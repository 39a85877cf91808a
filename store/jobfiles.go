package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Files uploaded for distribute steps, kept in the database, and host labels for step targets.

// SaveJobFile stores an uploaded file (replacing one of the same name). ETOOLARGE past
// MaxJobFileBytes. Audited.
func (db *DB) SaveJobFile(ctx context.Context, projectID int64, name string, content []byte) (*JobFile, error) {
	if err := ValidateName("name", name); err != nil {
		return nil, err
	}
	if len(content) > MaxJobFileBytes {
		return nil, Errorf(ETOOLARGE, "file: at most %d MiB", MaxJobFileBytes>>20)
	}
	sum := sha256.Sum256(content)
	f := &JobFile{ProjectID: projectID, Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content)), CreatedAt: db.now()}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM job_files WHERE project_id = ? AND name = ?`), projectID, name); err != nil {
			return err
		}
		if err := tx.GetContext(ctx, &f.ID, db.q(`INSERT INTO job_files (project_id, name, sha256, size, content, created_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`), projectID, name, f.SHA256, f.Size, content, f.CreatedAt); err != nil {
			return err
		}
		return db.audit(ctx, tx, "file.save", fmt.Sprintf("project/%d/file/%s", projectID, name), f.SHA256)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// ListJobFiles returns a project's uploaded files (without content) by name.
func (db *DB) ListJobFiles(ctx context.Context, projectID int64) ([]*JobFile, error) {
	out := []*JobFile{}
	err := db.db.SelectContext(ctx, &out, db.q(`SELECT id, project_id, name, sha256, size, created_at FROM job_files
		WHERE project_id = ? ORDER BY name`), projectID)
	return out, err
}

// ReadJobFile returns an uploaded file and its content, or ENOTFOUND.
func (db *DB) ReadJobFile(ctx context.Context, id int64) (*JobFile, []byte, error) {
	var row struct {
		JobFile
		Content []byte `db:"content"`
	}
	err := db.db.GetContext(ctx, &row, db.q(`SELECT id, project_id, name, sha256, size, created_at, content FROM job_files WHERE id = ?`), id)
	if err != nil {
		return nil, nil, formatError(err, fmt.Sprintf("file %d", id))
	}
	return &row.JobFile, row.Content, nil
}

// SetHostLabels replaces the labels of a host (each a name, see ValidateName). Audited.
func (db *DB) SetHostLabels(ctx context.Context, host string, labels []string) ([]string, error) {
	labels = dedupe(labels)
	for _, l := range labels {
		if err := ValidateName("labels", l); err != nil {
			return nil, err
		}
	}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		var id int64
		if err := tx.GetContext(ctx, &id, db.q(`SELECT id FROM hosts WHERE name = ?`), host); err != nil {
			return formatError(err, "host "+truncate(host, 80))
		}
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM host_labels WHERE host_id = ?`), id); err != nil {
			return err
		}
		for _, l := range labels {
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO host_labels (host_id, label) VALUES (?, ?)`), id, l); err != nil {
				return err
			}
		}
		return db.audit(ctx, tx, "host.labels", "host/"+host, strings.Join(labels, ", "))
	})
	return labels, err
}

// HostLabels returns the labels of a host, sorted.
func (db *DB) HostLabels(ctx context.Context, host string) ([]string, error) {
	out := []string{}
	err := db.db.SelectContext(ctx, &out, db.q(`SELECT l.label FROM host_labels l JOIN hosts h ON h.id = l.host_id
		WHERE h.name = ? ORDER BY l.label`), host)
	return out, err
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
