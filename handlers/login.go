package handlers

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerLogin(r gin.IRouter) {
	r.GET("/login", s.need(public), s.loginPage)
	r.POST("/login", s.need(public), s.login)
	r.POST("/logout", s.need(public), s.logout)
}

// loginForm is the data of login.html.
type loginForm struct {
	LoginCSRF string
	Next      string
	Name      string
	Error     string
}

// loginPage shows the login form, or sends a logged-in user on to where they were going.
func (s *Server) loginPage(c *gin.Context) {
	next := safeNext(c.Query("next"))
	if currentUser(c) != nil {
		c.Redirect(http.StatusSeeOther, next)
		return
	}
	s.renderLogin(c, http.StatusOK, loginForm{Next: next})
}

// renderLogin renders the form with a fresh double-submit token in a cookie and in the form,
// so that another site cannot log a browser in to an account of its choosing.
func (s *Server) renderLogin(c *gin.Context, status int, form loginForm) {
	form.LoginCSRF = store.RandomSecret(24)
	s.setCookie(c, loginCSRFCookie, form.LoginCSRF, 0)
	s.render(c, status, "login.html", "", form)
}

// login checks the form and starts a browser session.
func (s *Server) login(c *gin.Context) {
	ctx := c.Request.Context()
	name := strings.TrimSpace(c.PostForm("name"))
	form := loginForm{Next: safeNext(c.PostForm("next")), Name: name}
	cookie, _ := c.Cookie(loginCSRFCookie)
	if !sameSecret(c.PostForm(csrfField), cookie) {
		form.Error = "The login form expired or came from another site; please try again."
		s.renderLogin(c, http.StatusForbidden, form)
		return
	}
	// The attempt is counted before the password is checked: it stays counted as failed
	// unless the password turns out right.
	attempt, wait, err := s.db.ReserveLogin(ctx, name, c.ClientIP(), s.loginLimits)
	if err != nil {
		s.fail(c, fmt.Errorf("log in %q: %w", clip(name, 64), err))
		return
	}
	if wait > 0 {
		s.log.Warn("login refused: too many failures", "user", clip(name, 64), "remote", c.ClientIP())
		form.Error = tooManyLogins(wait)
		s.renderLogin(c, http.StatusTooManyRequests, form)
		return
	}
	u, err := s.db.Authenticate(ctx, name, c.PostForm("password"))
	if store.ErrorCode(err) == store.EUNAUTHORIZED {
		s.loginFailed(c, name, err)
		return
	}
	if err != nil {
		s.fail(c, fmt.Errorf("log in %q: %w", clip(name, 64), err))
		return
	}
	if err := s.db.LoginSucceeded(ctx, attempt); err != nil {
		s.log.Error("record a good login", "user", u.Name, "err", err)
	}
	s.startSession(c, u, form.Next)
}

// loginFailed counts and records a failed login and shows the form again.
func (s *Server) loginFailed(c *gin.Context, name string, err error) {
	s.log.Warn("failed login", "user", clip(name, 64), "remote", c.ClientIP())
	if aerr := s.db.RecordAudit(c.Request.Context(), "login.failed", "user/"+clip(name, 64), ""); aerr != nil {
		s.log.Error("record failed login", "err", aerr)
	}
	form := loginForm{Next: safeNext(c.PostForm("next")), Name: name, Error: store.ErrorMessage(err)}
	s.renderLogin(c, http.StatusUnauthorized, form)
}

// startSession logs u in: a new session, its cookie, an audit entry, and on to next.
func (s *Server) startSession(c *gin.Context, u *store.User, next string) {
	ctx := store.WithActor(c.Request.Context(), store.Actor{UserID: u.ID, Name: u.Name, RemoteAddr: c.ClientIP()})
	_, secret, err := s.db.CreateSession(ctx, u.ID, s.sessionTTL)
	if err != nil {
		s.fail(c, fmt.Errorf("start a session for %s: %w", u.Name, err))
		return
	}
	if err := s.db.RecordAudit(ctx, "login", "user/"+u.Name, ""); err != nil {
		s.log.Error("record login", "err", err)
	}
	s.setCookie(c, sessionCookie, secret, int(s.sessionTTL.Seconds()))
	s.clearCookie(c, loginCSRFCookie)
	c.Redirect(http.StatusSeeOther, next)
}

// logout ends the browser session. It needs the session's CSRF token, so another site cannot
// log the user out.
func (s *Server) logout(c *gin.Context) {
	a := currentAuth(c)
	if a != nil && a.session != nil {
		if err := checkCSRF(c); err != nil {
			s.fail(c, err)
			return
		}
		secret, _ := c.Cookie(sessionCookie)
		if err := s.db.DeleteSession(c.Request.Context(), secret); err != nil && !store.IsNotFound(err) {
			s.fail(c, fmt.Errorf("end the session of %s: %w", a.user.Name, err))
			return
		}
		if err := s.db.RecordAudit(c.Request.Context(), "logout", "user/"+a.user.Name, ""); err != nil {
			s.log.Error("record logout", "err", err)
		}
	}
	s.clearCookie(c, sessionCookie)
	c.Redirect(http.StatusSeeOther, "/login")
}

// safeNext returns next if it is a path on this site, else "/": the login form must not send
// users on to another site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

// clip shortens s to at most n bytes, for names typed by strangers.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
