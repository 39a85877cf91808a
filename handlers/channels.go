package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerChannels(r *gin.RouterGroup) {
	s.finders["channel"] = channelProject
	r.GET("/projects/:project/channels", s.need(projectRead), s.listChannels)
	r.POST("/projects/:project/channels", s.need(projectAdmin), s.createChannel)
	r.GET("/projects/:project/deliveries", s.need(projectRead), s.listDeliveries)
	r.GET("/channels", s.need(adminOnly), s.listChannels)
	r.POST("/channels", s.need(adminOnly), s.createChannel)
	r.GET("/channels/:channel", s.needChannel(projectRead), s.getChannel)
	r.PATCH("/channels/:channel", s.needChannel(projectAdmin), s.updateChannel)
	r.DELETE("/channels/:channel", s.needChannel(projectAdmin), s.deleteChannel)
	r.POST("/channels/:channel/test", s.needChannel(projectAdmin), s.testChannel)
}

// Notifier is what the channels API needs of the notify package: a test message sent now.
// Test returns nil when the platform accepted the message, a *store.Error when the channel
// cannot be used as configured, and otherwise an error whose text is the platform's answer,
// fit to show to administrators (secrets redacted). When that error has a Public method (see
// publicError), everyone else is shown only what Public returns.
type Notifier interface {
	Test(ctx context.Context, ch *store.Channel) error
}

// publicError is an error that can say itself without what the remote server answered in its
// own words (notify.SendError): the HTTP status or reply code, not the body.
type publicError interface {
	error
	Public() string
}

// answerFor returns err as the current user may read it: whole for an administrator, and for
// anyone else without the server's words. A channel URL can point at any address ferry
// reaches, so showing the answer's body to whoever may set one would let them read it.
func answerFor(c *gin.Context, err error) string {
	var pe publicError
	if u := currentUser(c); (u == nil || !u.Admin) && errors.As(err, &pe) {
		return pe.Public()
	}
	return err.Error()
}

// hideAnswers removes what servers said from deliveries unless the current user is an
// administrator (see answerFor).
func hideAnswers(c *gin.Context, list []*store.Delivery) {
	if u := currentUser(c); u != nil && u.Admin {
		return
	}
	for _, d := range list {
		d.LastAnswer = ""
	}
}

const channelKey = "ferry.channel"

// channelProject is the ProjectFinder of /channels/:channel. A global channel has no project:
// needChannel lets only administrators at it before this is asked.
func channelProject(ctx context.Context, db *store.DB, id int64) (int64, string, error) {
	ch, err := db.GetChannel(ctx, id)
	if err != nil {
		return 0, "", err
	}
	if ch.ProjectID == nil {
		return 0, "", store.Errorf(store.ENOTFOUND, "channel %d not found", id)
	}
	return *ch.ProjectID, "", nil
}

// needChannel is need(a) for a project's channel and need(adminOnly) for a global one.
func (s *Server) needChannel(a access) gin.HandlerFunc {
	project, admin := s.need(a), s.need(adminOnly)
	return func(c *gin.Context) {
		id, err := strconv.ParseInt(c.Param("channel"), 10, 64)
		if err == nil && id > 0 {
			if ch, err := s.db.GetChannel(c.Request.Context(), id); err == nil && ch.ProjectID == nil {
				admin(c)
				return
			}
		}
		project(c)
	}
}

// channel returns the route's channel, loaded once.
func (s *Server) channel(c *gin.Context) (*store.Channel, error) {
	if ch, ok := c.Get(channelKey); ok {
		return ch.(*store.Channel), nil
	}
	id, err := parseID("channel", c.Param("channel"))
	if err != nil {
		return nil, err
	}
	ch, err := s.db.GetChannel(c.Request.Context(), id)
	if err != nil {
		return nil, err
	}
	c.Set(channelKey, ch)
	return ch, nil
}

// channelInput is the body of a channel create or update; absent fields are nil.
type channelInput struct {
	Kind       *string   `json:"kind"`
	URL        *string   `json:"url"`
	Secret     *string   `json:"secret"`
	Events     *[]string `json:"events"`
	Recipients *[]string `json:"recipients"`
	Keyword    *string   `json:"keyword"`
	Format     *string   `json:"format"`
	Enabled    *bool     `json:"enabled"`
}

// channelView is a channel as the API shows it: the URL masked, never the secret.
type channelView struct {
	*store.Channel
	URL       string `json:"url"`
	HasSecret bool   `json:"has_secret"`
}

func newChannelView(ch *store.Channel) channelView {
	return channelView{Channel: ch, URL: store.ShownURL(ch.URL), HasSecret: ch.Secret != ""}
}

// scopeOf returns the project of a project route, or nil for the global /channels routes.
func scopeOf(c *gin.Context) *store.Project {
	if c.Param("project") == "" {
		return nil
	}
	return projectOf(c)
}

func (s *Server) listChannels(c *gin.Context) {
	var projectID int64
	if p := scopeOf(c); p != nil {
		projectID = p.ID
	}
	list, err := s.db.ListChannels(c.Request.Context(), projectID)
	if err != nil {
		s.fail(c, err)
		return
	}
	views := make([]channelView, 0, len(list))
	for _, ch := range list {
		views = append(views, newChannelView(ch))
	}
	c.JSON(http.StatusOK, views)
}

// createChannel makes a channel; events default to all of them, enabled to true.
func (s *Server) createChannel(c *gin.Context) {
	var in channelInput
	if !s.bindJSON(c, &in) {
		return
	}
	ch := &store.Channel{Enabled: true, Events: append([]string(nil), store.ChannelEvents...)}
	if p := scopeOf(c); p != nil {
		ch.ProjectID = &p.ID
	}
	applyChannelInput(ch, in)
	if err := s.checkChannelURL(in.URL); err != nil {
		s.fail(c, fmt.Errorf("create channel: %w", err))
		return
	}
	if err := s.db.CreateChannel(c.Request.Context(), ch); err != nil {
		s.fail(c, fmt.Errorf("create channel: %w", err))
		return
	}
	c.JSON(http.StatusCreated, newChannelView(ch))
}

// checkChannelURL refuses a new channel URL that points where channels may not reach (this
// machine, link-local and cloud metadata addresses, unless allowed): 400 naming the url.
func (s *Server) checkChannelURL(raw *string) error {
	if raw == nil || s.channelURLCheck == nil {
		return nil
	}
	return s.channelURLCheck(*raw)
}

func applyChannelInput(ch *store.Channel, in channelInput) {
	for dst, src := range map[*string]*string{&ch.Kind: in.Kind, &ch.URL: in.URL, &ch.Secret: in.Secret, &ch.Keyword: in.Keyword, &ch.Format: in.Format} {
		if src != nil {
			*dst = *src
		}
	}
	if in.Events != nil {
		ch.Events = *in.Events
	}
	if in.Recipients != nil {
		ch.Recipients = *in.Recipients
	}
	if in.Enabled != nil {
		ch.Enabled = *in.Enabled
	}
}

func (s *Server) getChannel(c *gin.Context) {
	ch, err := s.channel(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, newChannelView(ch))
}

// updateChannel changes the fields given. A url equal to the masked one shown keeps the stored
// URL, so a form can send back what it was shown.
func (s *Server) updateChannel(c *gin.Context) {
	var in channelInput
	if !s.bindJSON(c, &in) {
		return
	}
	ch, err := s.channel(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if in.URL != nil && *in.URL == store.ShownURL(ch.URL) {
		in.URL = nil
	}
	if err := s.checkChannelURL(in.URL); err != nil {
		s.fail(c, fmt.Errorf("update channel %d: %w", ch.ID, err))
		return
	}
	upd := store.ChannelUpdate{Kind: in.Kind, URL: in.URL, Secret: in.Secret, Keyword: in.Keyword, Format: in.Format,
		Events: in.Events, Recipients: in.Recipients, Enabled: in.Enabled}
	updated, err := s.db.UpdateChannel(c.Request.Context(), ch.ID, upd)
	if err != nil {
		s.fail(c, fmt.Errorf("update channel %d: %w", ch.ID, err))
		return
	}
	c.JSON(http.StatusOK, newChannelView(updated))
}

func (s *Server) deleteChannel(c *gin.Context) {
	ch, err := s.channel(c)
	if err == nil {
		err = s.db.DeleteChannel(c.Request.Context(), ch.ID)
	}
	if err != nil {
		s.fail(c, fmt.Errorf("delete channel %s: %w", c.Param("channel"), err))
		return
	}
	c.Status(http.StatusNoContent)
}

// testChannel sends a test message now and answers with the platform's result: 200 when it
// was accepted, 502 with the platform's answer when not (for non-administrators its status or
// code only, see answerFor).
func (s *Server) testChannel(c *gin.Context) {
	ch, err := s.channel(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if s.notifier == nil {
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": "this ferry process sends no notifications (no notifier configured)"})
		return
	}
	err = s.notifier.Test(c.Request.Context(), ch)
	var se *store.Error
	switch {
	case err == nil:
		c.JSON(http.StatusOK, gin.H{"sent": true, "result": fmt.Sprintf("the %s channel accepted the test message", ch.Kind)})
	case errors.As(err, &se):
		s.fail(c, err)
	default:
		c.JSON(http.StatusBadGateway, gin.H{"sent": false, "error": answerFor(c, err)})
	}
}

// listDeliveries lists a project's recent deliveries, newest first: ?status= filters,
// ?limit= (at most 500, default 50).
func (s *Server) listDeliveries(c *gin.Context) {
	f := store.DeliveryFilter{ProjectID: projectOf(c).ID, Status: c.Query("status")}
	if v := c.Query("limit"); v != "" {
		n, err := parseID("limit", v)
		if err != nil {
			s.fail(c, err)
			return
		}
		f.Limit = int(n)
	}
	switch f.Status {
	case "", store.DeliveryPending, store.DeliverySent, store.DeliveryFailed, store.DeliveryMerged:
	default:
		s.fail(c, store.Errorf(store.EINVALID, "status: must be pending, sent, failed or merged"))
		return
	}
	list, err := s.db.ListDeliveries(c.Request.Context(), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	hideAnswers(c, list)
	c.JSON(http.StatusOK, list)
}
