package handlers

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The user's own account: the page with "change my password", and the API call behind it.
// Changing one's own password asks for the current one, so that a session left open on a
// shared computer, or a stolen token, cannot lock its owner out; wrong guesses count as failed
// logins (store.ReserveLogin), so the check cannot be used to guess the password either.

// registerAccount registers the account page and its API call, and the page of global
// channels (pages_channels.go), so that the pages added for issue 14 register in one place.
func (s *Server) registerAccount(r gin.IRouter) {
	r.GET("/account", s.need(loggedIn), s.accountPage)
	r.PUT("/api/v1/user/password", s.need(loggedIn), s.changeOwnPassword)
	r.GET("/channels", s.need(adminOnly), s.globalChannelsPage)
}

// passwordInput is the body of a change of one's own password.
type passwordInput struct {
	Current string `json:"current_password"`
	New     string `json:"new_password"`
}

// changeOwnPassword sets the caller's password after checking the current one. A new password
// ends every browser session of the user, this one too: the page sends them to log in again.
func (s *Server) changeOwnPassword(c *gin.Context) {
	var in passwordInput
	if !s.bindJSON(c, &in) {
		return
	}
	ctx, u := c.Request.Context(), currentUser(c)
	if in.Current == "" {
		s.fail(c, store.Errorf(store.EINVALID, "current_password: give your current password to change it"))
		return
	}
	if in.New == "" {
		s.fail(c, store.Errorf(store.EINVALID, "new_password: give the new password"))
		return
	}
	attempt, wait, err := s.db.ReserveLogin(ctx, u.Name, c.ClientIP(), s.loginLimits)
	if err != nil {
		s.fail(c, fmt.Errorf("change the password of %s: %w", u.Name, err))
		return
	}
	if wait > 0 {
		c.AbortWithStatusJSON(http.StatusTooManyRequests, gin.H{"error": "current_password: " + tooManyLogins(wait)})
		return
	}
	if _, err := s.db.Authenticate(ctx, u.Name, in.Current); store.ErrorCode(err) == store.EUNAUTHORIZED {
		s.fail(c, store.Errorf(store.EFORBIDDEN, "current_password: this is not your current password"))
		return
	} else if err != nil {
		s.fail(c, fmt.Errorf("change the password of %s: %w", u.Name, err))
		return
	}
	if err := s.db.LoginSucceeded(ctx, attempt); err != nil {
		s.log.Error("record a good password check", "user", u.Name, "err", err)
	}
	if _, err := s.db.UpdateUser(ctx, u.Name, store.UserUpdate{Password: &in.New}); err != nil {
		if store.ErrorCode(err) == store.EINVALID {
			err = store.Errorf(store.EINVALID, "new_password: %s", strings.TrimPrefix(store.ErrorMessage(err), "password: "))
		}
		s.fail(c, fmt.Errorf("change the password of %s: %w", u.Name, err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"changed": true})
}

// accountData is the data of account.html.
type accountData struct {
	Name, Email string
	Admin       bool
}

// accountPage shows the user's own account with the form to change their password.
func (s *Server) accountPage(c *gin.Context) {
	u := currentUser(c)
	s.render(c, http.StatusOK, "account.html", "account", accountData{Name: u.Name, Email: u.Email, Admin: u.Admin})
}
