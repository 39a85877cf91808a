package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Channel kinds.
const (
	ChannelEmail    = "email"
	ChannelDingTalk = "dingtalk"
	ChannelWeCom    = "wecom"
	ChannelFeishu   = "feishu"
	ChannelWebhook  = "webhook"
)

// ChannelKinds lists the kinds a channel can have.
var ChannelKinds = []string{ChannelEmail, ChannelDingTalk, ChannelWeCom, ChannelFeishu, ChannelWebhook}

// ChannelEvents lists the events a channel can choose, in the order they are shown.
var ChannelEvents = []string{OutboxBuildFailed, OutboxBuildSucceeded, OutboxDeploymentStarted,
	OutboxDeploymentSucceeded, OutboxDeploymentFailed, OutboxDeploymentCanceled,
	OutboxDeploymentAwaitingApproval, OutboxDeploymentApproved, OutboxDeploymentRejected,
	OutboxRunAwaitingApproval, OutboxRunRejected}

// maxRecipients bounds a mail channel's extra addresses.
const maxRecipients = 100

// Channel is where a project's notices go: a mailbox list, a chat robot or a webhook. A channel
// without a project is a global default that hears about every project.
type Channel struct {
	ID        int64  `db:"id" json:"id"`
	ProjectID *int64 `db:"project_id" json:"-"`
	Project   string `db:"project" json:"project,omitempty"` // name; "" for a global channel
	Kind      string `db:"kind" json:"kind"`
	// URL is the robot or webhook URL, or for email smtp://user:pass@host:port or smtps://….
	// It is stored encrypted, since it may hold a password or an access token; show ShownURL.
	URL string `db:"-" json:"-"`
	// Secret signs requests (DingTalk, Feishu, webhook); write-only, stored encrypted.
	Secret     string   `db:"-" json:"-"`
	Events     []string `db:"-" json:"events"`
	Recipients []string `db:"-" json:"recipients"`
	// Keyword is the word a DingTalk or Feishu robot requires in every message.
	Keyword string `db:"keyword" json:"keyword"`
	// Format is DingTalk's markdown or actionCard, Feishu's interactive, post or text; "" is the default.
	Format    string    `db:"format" json:"format"`
	Enabled   bool      `db:"enabled" json:"enabled"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
	UpdatedAt time.Time `db:"updated_at" json:"updated_at"`
}

// ChannelUpdate holds the fields of a channel to change; nil fields stay as they are.
type ChannelUpdate struct {
	Kind, URL, Secret, Keyword, Format *string
	Events, Recipients                 *[]string
	Enabled                            *bool
}

// Wants reports whether the channel is enabled and chose event.
func (ch *Channel) Wants(event string) bool {
	return ch.Enabled && slices.Contains(ch.Events, event)
}

// Validate checks a channel's fields; the error names the field and never shows a secret.
func (ch *Channel) Validate() error {
	if !slices.Contains(ChannelKinds, ch.Kind) {
		return Errorf(EINVALID, "kind: must be one of %s, got %q", strings.Join(ChannelKinds, ", "), truncate(ch.Kind, 40))
	}
	if err := ch.validateURL(); err != nil {
		return err
	}
	if err := validateEvents(ch.Events); err != nil {
		return err
	}
	if err := ch.validateRecipients(); err != nil {
		return err
	}
	return ch.validateExtras()
}

func (ch *Channel) validateURL() error {
	raw := strings.TrimSpace(ch.URL)
	if raw == "" {
		return Errorf(EINVALID, "url: required")
	}
	u, err := url.Parse(raw)
	if ch.Kind == ChannelEmail {
		if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
			return Errorf(EINVALID, "url: an email channel needs the SMTP server as smtp://user:pass@host:587 or smtps://user:pass@host:465, got %s", ShownURL(raw))
		}
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Errorf(EINVALID, "url: a %s channel needs an http(s) URL with a host, got %s", ch.Kind, ShownURL(raw))
	}
	if len(raw) > 2048 || strings.ContainsAny(raw, " \r\n\t") {
		return Errorf(EINVALID, "url: must be one URL of at most 2048 characters without spaces")
	}
	ch.URL = raw
	return nil
}

func validateEvents(events []string) error {
	if len(events) == 0 {
		return Errorf(EINVALID, "events: choose at least one of %s", strings.Join(ChannelEvents, ", "))
	}
	for _, e := range events {
		if !slices.Contains(ChannelEvents, e) {
			return Errorf(EINVALID, "events: unknown event %q (want %s)", truncate(e, 40), strings.Join(ChannelEvents, ", "))
		}
	}
	return nil
}

func (ch *Channel) validateRecipients() error {
	if len(ch.Recipients) > 0 && ch.Kind != ChannelEmail {
		return Errorf(EINVALID, "recipients: only an email channel has recipients")
	}
	if len(ch.Recipients) > maxRecipients {
		return Errorf(EINVALID, "recipients: at most %d addresses", maxRecipients)
	}
	for i, r := range ch.Recipients {
		a, err := mail.ParseAddress(r)
		if err != nil || strings.ContainsAny(r, "\r\n") {
			return Errorf(EINVALID, "recipients: %q is not a mail address", truncate(r, 80))
		}
		ch.Recipients[i] = a.Address
	}
	return nil
}

func (ch *Channel) validateExtras() error {
	signs := ch.Kind == ChannelDingTalk || ch.Kind == ChannelFeishu || ch.Kind == ChannelWebhook
	switch {
	case ch.Secret != "" && !signs:
		return Errorf(EINVALID, "secret: a %s channel signs nothing (an email channel takes its password in the url)", ch.Kind)
	case len(ch.Secret) > 512 || strings.ContainsAny(ch.Secret, "\r\n"):
		return Errorf(EINVALID, "secret: must be one line of at most 512 characters")
	case ch.Keyword != "" && ch.Kind != ChannelDingTalk && ch.Kind != ChannelFeishu:
		return Errorf(EINVALID, "keyword: only DingTalk and Feishu robots take a keyword")
	case len(ch.Keyword) > 100 || strings.ContainsAny(ch.Keyword, "\r\n"):
		return Errorf(EINVALID, "keyword: must be one line of at most 100 characters")
	}
	formats := map[string][]string{ChannelDingTalk: {"markdown", "actionCard"}, ChannelFeishu: {"interactive", "post", "text"}}[ch.Kind]
	if ch.Format != "" && !slices.Contains(formats, ch.Format) {
		if len(formats) == 0 {
			return Errorf(EINVALID, "format: a %s channel has one format; leave format empty", ch.Kind)
		}
		return Errorf(EINVALID, "format: a %s channel takes %s, got %q", ch.Kind, strings.Join(formats, " or "), truncate(ch.Format, 40))
	}
	return nil
}

// ShownURL returns a channel URL fit to show: the password of the user info, every query value
// (access_token, key, …) and every path segment that looks like a token (20 or more letters,
// digits, '-' or '_', as in Feishu's /hook/<token>) replaced by "****". Text that is not a URL
// with a host is replaced whole.
func ShownURL(raw string) string {
	const masked = "****"
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return masked
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), masked)
		}
	}
	q := u.Query()
	for k := range q {
		q[k] = []string{masked}
	}
	u.RawQuery = strings.ReplaceAll(q.Encode(), url.QueryEscape(masked), masked)
	segments := strings.Split(u.Path, "/")
	for i, s := range segments {
		if tokenLike(s) {
			segments[i] = masked
		}
	}
	u.Path, u.RawPath, u.Fragment = strings.Join(segments, "/"), "", ""
	return strings.ReplaceAll(u.String(), url.PathEscape(masked), masked)
}

func tokenLike(s string) bool {
	if len(s) < 20 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

type channelRow struct {
	Channel
	URLEnc     string `db:"url_enc"`
	SecretEnc  string `db:"secret_enc"`
	EventsJSON string `db:"events"`
	RecipJSON  string `db:"recipients"`
}

const channelQuery = `SELECT c.id, c.project_id, COALESCE(p.name, '') AS project, c.kind, c.url_enc, c.secret_enc,
	c.events, c.recipients, c.keyword, c.format, c.enabled, c.created_at, c.updated_at
	FROM channels c LEFT JOIN projects p ON p.id = c.project_id`

func (db *DB) sealChannel(ch *Channel) (*channelRow, error) {
	row := &channelRow{Channel: *ch}
	var err error
	if row.URLEnc, err = db.cipher.Seal(ch.URL, SecretPlace("channels", "url_enc", ch.ID)); err != nil {
		return nil, err
	}
	if row.SecretEnc, err = db.cipher.Seal(ch.Secret, SecretPlace("channels", "secret_enc", ch.ID)); err != nil {
		return nil, err
	}
	events, _ := json.Marshal(ch.Events)
	recipients, _ := json.Marshal(nonNil(ch.Recipients))
	row.EventsJSON, row.RecipJSON = string(events), string(recipients)
	return row, nil
}

func (db *DB) openChannel(row *channelRow) (*Channel, error) {
	ch := row.Channel
	var err error
	if ch.URL, err = db.cipher.Open(row.URLEnc, SecretPlace("channels", "url_enc", ch.ID)); err != nil {
		return nil, fmt.Errorf("channel %d url: %w", ch.ID, err)
	}
	if ch.Secret, err = db.cipher.Open(row.SecretEnc, SecretPlace("channels", "secret_enc", ch.ID)); err != nil {
		return nil, fmt.Errorf("channel %d secret: %w", ch.ID, err)
	}
	if err := json.Unmarshal([]byte(row.EventsJSON), &ch.Events); err != nil {
		return nil, fmt.Errorf("channel %d events: %w", ch.ID, err)
	}
	if err := json.Unmarshal([]byte(row.RecipJSON), &ch.Recipients); err != nil {
		return nil, fmt.Errorf("channel %d recipients: %w", ch.ID, err)
	}
	ch.Recipients = nonNil(ch.Recipients)
	ch.CreatedAt, ch.UpdatedAt = ch.CreatedAt.UTC(), ch.UpdatedAt.UTC()
	return &ch, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// channelTarget is the audit target of a channel: its project, or "channels" for a global one.
func channelTarget(ch *Channel) string {
	if ch.Project == "" {
		return "channels"
	}
	return "project/" + ch.Project
}

// CreateChannel validates and stores ch and fills its ID, project name and times. ProjectID nil
// makes a global channel. Audited.
func (db *DB) CreateChannel(ctx context.Context, ch *Channel) error {
	if err := ch.Validate(); err != nil {
		return err
	}
	row, err := db.sealChannel(ch)
	if err != nil {
		return err
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		if ch.ProjectID != nil {
			p, err := db.getProject(ctx, tx, `id = ?`, *ch.ProjectID, "project")
			if err != nil {
				return err
			}
			ch.Project = p.Name
		}
		ch.CreatedAt, ch.UpdatedAt = db.now(), db.now()
		err := tx.GetContext(ctx, &ch.ID, db.q(`INSERT INTO channels (project_id, kind, url_enc, secret_enc, events, recipients, keyword, format, enabled, created_at, updated_at)
			VALUES (?, ?, '', '', ?, ?, ?, ?, ?, ?, ?) RETURNING id`), ch.ProjectID, ch.Kind,
			row.EventsJSON, row.RecipJSON, ch.Keyword, ch.Format, ch.Enabled, ch.CreatedAt, ch.UpdatedAt)
		if err != nil {
			return formatError(err, "channel")
		}
		// Secrets are sealed for the row's id, which the INSERT just gave.
		for column, plain := range map[string]string{"url_enc": ch.URL, "secret_enc": ch.Secret} {
			if _, err := db.sealInto(ctx, tx, "channels", column, ch.ID, plain); err != nil {
				return err
			}
		}
		return db.audit(ctx, tx, "channel.create", channelTarget(ch), fmt.Sprintf("channel %d: %s %s", ch.ID, ch.Kind, ShownURL(ch.URL)))
	})
}

// GetChannel returns the channel with id, its URL and secret decrypted, or ENOTFOUND.
func (db *DB) GetChannel(ctx context.Context, id int64) (*Channel, error) {
	return db.getChannel(ctx, db.db, id)
}

func (db *DB) getChannel(ctx context.Context, q queryer, id int64) (*Channel, error) {
	var row channelRow
	if err := q.GetContext(ctx, &row, db.q(channelQuery+` WHERE c.id = ?`), id); err != nil {
		return nil, formatError(err, fmt.Sprintf("channel %d", id))
	}
	return db.openChannel(&row)
}

// ListChannels returns a project's channels by id, or with projectID 0 the global ones.
func (db *DB) ListChannels(ctx context.Context, projectID int64) ([]*Channel, error) {
	if projectID == 0 {
		return db.selectChannels(ctx, db.db, channelQuery+` WHERE c.project_id IS NULL ORDER BY c.id`)
	}
	return db.selectChannels(ctx, db.db, channelQuery+` WHERE c.project_id = ? ORDER BY c.id`, projectID)
}

func (db *DB) selectChannels(ctx context.Context, q queryer, query string, args ...any) ([]*Channel, error) {
	var rows []*channelRow
	if err := q.SelectContext(ctx, &rows, db.q(query), args...); err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	out := make([]*Channel, 0, len(rows))
	for _, r := range rows {
		ch, err := db.openChannel(r)
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// UpdateChannel changes the given fields of a channel and returns it as it is now. Audited.
func (db *DB) UpdateChannel(ctx context.Context, id int64, upd ChannelUpdate) (*Channel, error) {
	var out *Channel
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		ch, err := db.getChannel(ctx, tx, id)
		if err != nil {
			return err
		}
		applyChannelUpdate(ch, upd)
		if err := ch.Validate(); err != nil {
			return err
		}
		row, err := db.sealChannel(ch)
		if err != nil {
			return err
		}
		ch.UpdatedAt = db.now()
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE channels SET kind = ?, url_enc = ?, secret_enc = ?, events = ?, recipients = ?,
			keyword = ?, format = ?, enabled = ?, updated_at = ? WHERE id = ?`), ch.Kind, row.URLEnc, row.SecretEnc,
			row.EventsJSON, row.RecipJSON, ch.Keyword, ch.Format, ch.Enabled, ch.UpdatedAt, ch.ID); err != nil {
			return err
		}
		out = ch
		return db.audit(ctx, tx, "channel.update", channelTarget(ch), fmt.Sprintf("channel %d: %s", ch.ID, changedFields(
			upd.Kind != nil, "kind", upd.URL != nil, "url", upd.Secret != nil, "secret", upd.Events != nil, "events",
			upd.Recipients != nil, "recipients", upd.Keyword != nil, "keyword", upd.Format != nil, "format", upd.Enabled != nil, "enabled")))
	})
	return out, err
}

func applyChannelUpdate(ch *Channel, upd ChannelUpdate) {
	for dst, src := range map[*string]*string{&ch.Kind: upd.Kind, &ch.URL: upd.URL, &ch.Secret: upd.Secret, &ch.Keyword: upd.Keyword, &ch.Format: upd.Format} {
		if src != nil {
			*dst = *src
		}
	}
	if upd.Events != nil {
		ch.Events = slices.Clone(*upd.Events)
	}
	if upd.Recipients != nil {
		ch.Recipients = slices.Clone(*upd.Recipients)
	}
	if upd.Enabled != nil {
		ch.Enabled = *upd.Enabled
	}
}

// DeleteChannel removes a channel and its deliveries. Audited.
func (db *DB) DeleteChannel(ctx context.Context, id int64) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		ch, err := db.getChannel(ctx, tx, id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM deliveries WHERE channel_id = ?`), id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM channels WHERE id = ?`), id); err != nil {
			return err
		}
		return db.audit(ctx, tx, "channel.delete", channelTarget(ch), fmt.Sprintf("channel %d: %s %s", ch.ID, ch.Kind, ShownURL(ch.URL)))
	})
}

// MemberEmails returns the mail addresses of a project's members that have one, sorted.
func (db *DB) MemberEmails(ctx context.Context, projectID int64) ([]string, error) {
	emails := []string{}
	err := db.db.SelectContext(ctx, &emails, db.q(`SELECT u.email FROM project_members m JOIN users u ON u.id = m.user_id
		WHERE m.project_id = ? AND u.email <> '' ORDER BY u.email`), projectID)
	if err != nil {
		return nil, fmt.Errorf("member mail addresses of project %d: %w", projectID, err)
	}
	return emails, nil
}
