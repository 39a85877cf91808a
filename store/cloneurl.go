package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/jmoiron/sqlx"
)

// SplitCloneURL takes the credentials out of an http(s) clone URL such as
// https://oauth2:TOKEN@gitlab.example.com/g/app.git: it returns the URL without them and the
// credentials as URL user info ("oauth2:TOKEN", escaped as in a URL), or the URL unchanged and
// "" when it has none or is not an http(s) URL (an ssh URL's user name is no secret).
func SplitCloneURL(raw string) (clean, credentials string) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return raw, ""
	}
	credentials = u.User.String()
	u.User = nil
	return u.String(), credentials
}

// ShownCloneURL returns a clone URL fit to show and log: without the user info of an http(s)
// URL and without any password.
func ShownCloneURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Not parseable, but it may still hold user info: keep only what follows the last '@'.
		scheme, rest, ok := strings.Cut(raw, "://")
		if at := strings.LastIndex(rest, "@"); ok && at >= 0 {
			return scheme + "://" + rest[at+1:]
		}
		return raw
	}
	if u.User == nil {
		return raw
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		u.User = nil
	} else if _, has := u.User.Password(); has {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}

// CloneUser returns the user name and password of clone credentials made by SplitCloneURL.
// A token alone, as GitHub takes it, is a user name without a password.
func CloneUser(credentials string) (user, password string) {
	if credentials == "" {
		return "", ""
	}
	u, err := url.Parse("https://" + credentials + "@host/")
	if err != nil || u.User == nil {
		// Not escaped as in a URL: take it as written.
		user, password, _ = strings.Cut(credentials, ":")
		return user, password
	}
	password, _ = u.User.Password()
	return u.User.Username(), password
}

// sameOrigin reports whether two clone URLs name the same scheme, host and port, so that
// credentials for one may go to the other.
func sameOrigin(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && ua.Host != "" && ua.Scheme == ub.Scheme && strings.EqualFold(ua.Host, ub.Host)
}

// setCloneURL changes p's clone URL to raw, keeping credentials raw carries apart from it. The
// stored credentials are dropped when the new URL points elsewhere, so that whoever edits the
// URL cannot send them to a server of their choosing.
func setCloneURL(p *Project, raw string) {
	clean, creds := SplitCloneURL(raw)
	switch {
	case creds != "":
		p.CloneCredentials = creds
	case !sameOrigin(p.CloneURL, clean):
		p.CloneCredentials = ""
	}
	p.CloneURL = clean
}

func validateCloneCredentials(p *Project) error {
	if (strings.HasPrefix(p.CloneURL, "https://") || strings.HasPrefix(p.CloneURL, "http://")) && strings.Contains(p.CloneURL, "@") {
		// Credentials that could not be split out (a '#', '/', '?' or bad '%' escape in them):
		// kept, they would be shown to every member. The message does not repeat the URL.
		return Errorf(EINVALID, "clone_url: an http(s) URL with '@' outside readable user info; if it carries credentials, percent-encode them (%% as %%25, # as %%23, / as %%2F, ? as %%3F, @ as %%40) or give them as clone_credentials")
	}
	if u, err := url.Parse(p.CloneURL); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return Errorf(EINVALID, "clone_url: only an http(s) URL may carry a password (ferry keeps it apart, encrypted); an ssh URL uses a deploy key")
		}
	}
	if p.CloneCredentials == "" {
		return nil
	}
	if len(p.CloneCredentials) > 1024 || strings.ContainsAny(p.CloneCredentials, "\x00\r\n") {
		return Errorf(EINVALID, "clone_credentials: must be one line of at most 1024 characters")
	}
	if !strings.HasPrefix(p.CloneURL, "https://") && !strings.HasPrefix(p.CloneURL, "http://") {
		return Errorf(EINVALID, "clone_credentials: only an http(s) clone URL takes credentials; an ssh URL uses a deploy key")
	}
	return nil
}

// splitStoredCloneURLs moves credentials that projects saved before ferry kept them apart out
// of clone_url into the encrypted column. It runs at every migration and finds nothing to do
// once done; SQL alone cannot do it, since the key is only known here.
func (db *DB) splitStoredCloneURLs(ctx context.Context) error {
	var rows []struct {
		ID       int64  `db:"id"`
		Name     string `db:"name"`
		CloneURL string `db:"clone_url"`
	}
	if err := db.db.SelectContext(ctx, &rows, `SELECT id, name, clone_url FROM projects WHERE clone_url LIKE '%@%'`); err != nil {
		return fmt.Errorf("read clone URLs: %w", err)
	}
	for _, r := range rows {
		clean, creds := SplitCloneURL(r.CloneURL)
		if creds == "" {
			continue
		}
		sealed, err := db.cipher.Seal(creds, SecretPlace("projects", "clone_credentials_enc", r.ID))
		if err != nil {
			return err
		}
		err = db.Transact(ctx, func(tx *sqlx.Tx) error {
			_, err := tx.ExecContext(ctx, db.q(`UPDATE projects SET clone_url = ?, clone_credentials_enc = ? WHERE id = ? AND clone_url = ?`),
				clean, sealed, r.ID, r.CloneURL)
			if err != nil {
				return err
			}
			return db.audit(ctx, tx, "project.update", "project/"+r.Name, "moved the clone URL's credentials to clone_credentials (encrypted)")
		})
		if err != nil {
			return fmt.Errorf("move the clone URL credentials of project %s: %w", r.Name, err)
		}
	}
	return nil
}
