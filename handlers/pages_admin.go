package handlers

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The pages of administration: project settings, hosts, users, tokens and the audit log. The
// data handed to templates leaves out private keys, token hashes and password hashes, so that
// no template can show them by mistake.

// settingsData is the data of settings.html.
type settingsData struct {
	Project        *store.Project
	HookURL        string
	HasSecret      bool
	Secret         string // the webhook secret, for the administrator to paste into GitLab
	HasGitLabToken bool
	Members        []*store.Member
	Environments   []*store.Environment
	Hosts          []hostRow
	Channels       []channelRow
	Failed         []*store.Delivery // failed deliveries, newest first
	// ChannelForm is what the channel forms offer (pages_channels.go).
	ChannelForm channelForm
	// StrategyKinds are the rollout strategies the environment form offers; "" is serial.
	StrategyKinds []string
}

// channelRow is a notification channel as the settings page shows it: the URL with its
// password or access token masked, never the signing secret.
type channelRow struct {
	ID      int64
	Kind    string
	Target  string
	Events  []string
	Enabled bool
	// What the channel's edit form shows (pages_channels.go): the masked URL, never the secret.
	URL, Keyword, Format string
	Recipients           []string
	HasSecret            bool
}

// failedShown is how many failed deliveries the settings page lists.
const failedShown = 20

// settingsPage shows a project's webhook, members, environments and notification channels.
func (s *Server) settingsPage(c *gin.Context) {
	ctx, p := c.Request.Context(), projectOf(c)
	d := settingsData{Project: p, HookURL: s.publicURL(c) + "/hooks/gitlab",
		HasSecret: p.WebhookSecret != "", Secret: p.WebhookSecret, HasGitLabToken: p.GitLabToken != ""}
	var err error
	if d.Members, err = s.db.ListMembers(ctx, p.ID); err != nil {
		s.fail(c, fmt.Errorf("list members of %s: %w", p.Name, err))
		return
	}
	if d.Environments, err = s.db.ListEnvironments(ctx, p.ID); err != nil {
		s.fail(c, fmt.Errorf("list environments of %s: %w", p.Name, err))
		return
	}
	if d.Hosts, err = s.hostRows(c); err != nil {
		s.fail(c, err)
		return
	}
	d.StrategyKinds = []string{"", store.StrategyParallel, store.StrategyRolling, store.StrategyCanary}
	d.ChannelForm = newChannelForm(c, "/api/v1/projects/"+url.PathEscape(p.Name)+"/channels")
	if err = s.channelRows(c, p, &d); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "settings.html", "projects", d)
}

// channelRows loads p's channels and failed deliveries into d.
func (s *Server) channelRows(c *gin.Context, p *store.Project, d *settingsData) error {
	ctx := c.Request.Context()
	channels, err := s.db.ListChannels(ctx, p.ID)
	if err != nil {
		return fmt.Errorf("list channels of %s: %w", p.Name, err)
	}
	for _, ch := range channels {
		d.Channels = append(d.Channels, newChannelRow(ch))
	}
	d.Failed, err = s.db.ListDeliveries(ctx, store.DeliveryFilter{ProjectID: p.ID, Status: store.DeliveryFailed, Limit: failedShown})
	hideAnswers(c, d.Failed)
	if err != nil {
		return fmt.Errorf("list failed deliveries of %s: %w", p.Name, err)
	}
	return nil
}

// publicURL is the address users and GitLab reach ferry at: Config.BaseURL, or else the one
// this request came to.
func (s *Server) publicURL(c *gin.Context) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host
}

// hostRow is a host as the pages show it: whether it has a key, never the key.
type hostRow struct {
	Name, Address, User string
	Port                int
	HasKey              bool
	Fingerprint         string
	// Offered is the fingerprint of a key the host offered and ferry refused, to accept.
	Offered string
	// PublicKey is the public half of the host's private key, for its authorized_keys.
	PublicKey string
}

// hostRows lists every host for the pages.
func (s *Server) hostRows(c *gin.Context) ([]hostRow, error) {
	hosts, err := s.db.ListHosts(c.Request.Context())
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	rows := make([]hostRow, 0, len(hosts))
	for _, h := range hosts {
		rows = append(rows, hostRow{Name: h.Name, Address: h.Address, User: h.User, Port: h.Port,
			HasKey: h.PrivateKey != "", Fingerprint: fingerprint(h.HostKey), Offered: h.OfferedFingerprint(),
			PublicKey: publicKeyOf(h.PrivateKey, h.Name)})
	}
	return rows, nil
}

// hostsData is the data of hosts.html.
type hostsData struct{ Hosts []hostRow }

// hostsPage lists the hosts; administrators also get the form to add one.
func (s *Server) hostsPage(c *gin.Context) {
	rows, err := s.hostRows(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "hosts.html", "hosts", hostsData{Hosts: rows})
}

// userRow is a user as the users page shows it.
type userRow struct {
	ID          int64
	Name, Email string
	Admin       bool
	CreatedAt   any
}

// usersData is the data of users.html.
type usersData struct{ Users []userRow }

// usersPage lists the users for administrators, with the form to add one.
func (s *Server) usersPage(c *gin.Context) {
	users, err := s.db.ListUsers(c.Request.Context())
	if err != nil {
		s.fail(c, fmt.Errorf("list users: %w", err))
		return
	}
	rows := make([]userRow, 0, len(users))
	for _, u := range users {
		rows = append(rows, userRow{ID: u.ID, Name: u.Name, Email: u.Email, Admin: u.Admin, CreatedAt: u.CreatedAt})
	}
	s.render(c, http.StatusOK, "users.html", "users", usersData{Users: rows})
}

// tokenRow is an API token as the tokens page shows it: its prefix, never its hash.
type tokenRow struct {
	ID                    int64
	Name, Prefix          string
	CreatedAt, LastUsedAt any
}

// tokensData is the data of tokens.html.
type tokensData struct{ Tokens []tokenRow }

// tokensPage lists the user's own API tokens, with the form to make one.
func (s *Server) tokensPage(c *gin.Context) {
	u := currentUser(c)
	tokens, err := s.db.ListTokens(c.Request.Context(), u.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("list tokens of %s: %w", u.Name, err))
		return
	}
	rows := make([]tokenRow, 0, len(tokens))
	for _, t := range tokens {
		row := tokenRow{ID: t.ID, Name: t.Name, Prefix: t.Prefix, CreatedAt: t.CreatedAt}
		if t.LastUsedAt != nil {
			row.LastUsedAt = *t.LastUsedAt
		}
		rows = append(rows, row)
	}
	s.render(c, http.StatusOK, "tokens.html", "tokens", tokensData{Tokens: rows})
}

// auditPageSize is how many audit entries one page shows.
const auditPageSize = 100

// auditData is the data of audit.html.
type auditData struct {
	Entries []*store.AuditEntry
	Next    int64 // the id to page on from; 0 on the last page
}

// auditPage shows the audit log newest first, ?before=ID for older entries.
func (s *Server) auditPage(c *gin.Context) {
	f := store.AuditFilter{Limit: auditPageSize}
	if v := c.Query("before"); v != "" {
		id, err := parseID("before", v)
		if err != nil {
			s.fail(c, err)
			return
		}
		f.BeforeID = id
	}
	entries, err := s.db.ListAudit(c.Request.Context(), f)
	if err != nil {
		s.fail(c, fmt.Errorf("list audit entries: %w", err))
		return
	}
	d := auditData{Entries: entries}
	if len(entries) == auditPageSize {
		d.Next = entries[len(entries)-1].ID
	}
	s.render(c, http.StatusOK, "audit.html", "audit", d)
}
