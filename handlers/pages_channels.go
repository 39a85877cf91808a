package handlers

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The channel forms: a project's channels on its settings page, the global ones (which hear
// about every project) on /channels, both built from the "channel-form" partial.

// channelForm is what a channel form offers: the kinds, the events as checkboxes, the formats,
// and where a new channel is posted.
type channelForm struct {
	Kinds, Events, Formats []string
	CreateURL              string
	CSRFToken              string
}

// channelFormats are the formats any kind takes ("" is the kind's default); the API says
// which fit a kind when one does not.
var channelFormats = []string{"markdown", "actionCard", "interactive", "post", "text"}

func newChannelForm(c *gin.Context, createURL string) channelForm {
	return channelForm{Kinds: store.ChannelKinds, Events: store.ChannelEvents, Formats: channelFormats,
		CreateURL: createURL, CSRFToken: csrfToken(c)}
}

// newChannelRow is a channel as the pages show it: the URL masked, whether it has a secret.
func newChannelRow(ch *store.Channel) channelRow {
	target := store.ShownURL(ch.URL)
	if ch.Kind == store.ChannelEmail && len(ch.Recipients) > 0 {
		target = strings.Join(ch.Recipients, ", ") + " · " + target
	}
	return channelRow{ID: ch.ID, Kind: ch.Kind, Target: target, Events: ch.Events, Enabled: ch.Enabled,
		URL: store.ShownURL(ch.URL), Keyword: ch.Keyword, Format: ch.Format, Recipients: ch.Recipients, HasSecret: ch.Secret != ""}
}

// globalChannelsData is the data of channels.html.
type globalChannelsData struct {
	Channels    []channelRow
	ChannelForm channelForm
}

// globalChannelsPage lists the global channels with their forms, for administrators.
func (s *Server) globalChannelsPage(c *gin.Context) {
	list, err := s.db.ListChannels(c.Request.Context(), 0)
	if err != nil {
		s.fail(c, fmt.Errorf("list global channels: %w", err))
		return
	}
	d := globalChannelsData{ChannelForm: newChannelForm(c, "/api/v1/channels")}
	for _, ch := range list {
		d.Channels = append(d.Channels, newChannelRow(ch))
	}
	s.render(c, http.StatusOK, "channels.html", "channels", d)
}

// Has reports whether the channel chose event, to check its box.
func (r channelRow) Has(event string) bool {
	for _, e := range r.Events {
		if e == event {
			return true
		}
	}
	return false
}

// RecipientList is the recipients one a line, for the form's text area.
func (r channelRow) RecipientList() string { return strings.Join(r.Recipients, "\n") }

// New is a channel not made yet as the create form starts it: every event, enabled, as the
// API makes a channel without them.
func (f channelForm) New() channelRow {
	return channelRow{Kind: store.ChannelDingTalk, Events: store.ChannelEvents, Enabled: true}
}
