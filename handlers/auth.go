package handlers

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// Cookie and header names.
const (
	sessionCookie   = "ferry_session"    // the browser session's secret
	loginCSRFCookie = "ferry_login_csrf" // double-submit token of the login form
	csrfHeader      = "X-CSRF-Token"
	csrfField       = "csrf_token"
)

const authKey = "ferry.auth"

// auth is who made a request and how: with an API token (session nil) or a browser session.
type auth struct {
	user    *store.User
	session *store.Session
}

// authenticate finds the user behind the request, from an "Authorization: Bearer" token or
// the session cookie, and records them as the actor of the request's store changes. A wrong
// token is refused at once; a stale session cookie is cleared and the request goes on
// anonymously, so that pages can send the user to the login form.
func (s *Server) authenticate(c *gin.Context) {
	ctx := c.Request.Context()
	a, err := s.identify(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	actor := store.Actor{Name: "anonymous", RemoteAddr: c.ClientIP()}
	if a != nil {
		c.Set(authKey, a)
		actor.UserID, actor.Name = a.user.ID, a.user.Name
	}
	c.Request = c.Request.WithContext(store.WithActor(ctx, actor))
	c.Next()
}

// identify returns the request's credentials, nil for none, or an error for a bad token.
func (s *Server) identify(c *gin.Context) (*auth, error) {
	ctx := c.Request.Context()
	if h := c.GetHeader("Authorization"); h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			return nil, store.Errorf(store.EUNAUTHORIZED, `Authorization header: want "Bearer <token>"`)
		}
		u, err := s.db.UserByToken(ctx, token)
		if err != nil {
			return nil, err
		}
		return &auth{user: u}, nil
	}
	secret, err := c.Cookie(sessionCookie)
	if err != nil || secret == "" {
		return nil, nil
	}
	sess, u, err := s.db.SessionUser(ctx, secret)
	if store.ErrorCode(err) == store.EUNAUTHORIZED {
		s.clearCookie(c, sessionCookie)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &auth{user: u, session: sess}, nil
}

// currentAuth returns the request's credentials, or nil when it is anonymous.
func currentAuth(c *gin.Context) *auth {
	a, _ := c.Get(authKey)
	v, _ := a.(*auth)
	return v
}

// currentUser returns the user making the request, or nil when it is anonymous.
func currentUser(c *gin.Context) *store.User {
	if a := currentAuth(c); a != nil {
		return a.user
	}
	return nil
}

// csrfToken returns the session's form token, or "" for requests without a session.
func csrfToken(c *gin.Context) string {
	if a := currentAuth(c); a != nil && a.session != nil {
		return a.session.CSRFToken
	}
	return ""
}

// checkCSRF refuses a state-changing request made with the session cookie unless it carries
// the session's CSRF token, in the X-CSRF-Token header or the csrf_token form field. Requests
// with an API token need none: a browser never adds that header by itself.
func checkCSRF(c *gin.Context) error {
	a := currentAuth(c)
	if a == nil || a.session == nil || safeMethod(c.Request.Method) {
		return nil
	}
	if !sameSecret(requestCSRF(c), a.session.CSRFToken) {
		return store.Errorf(store.EFORBIDDEN, "missing or wrong CSRF token; reload the page and try again")
	}
	return nil
}

// requestCSRF returns the CSRF token the request carries.
func requestCSRF(c *gin.Context) string {
	if t := c.GetHeader(csrfHeader); t != "" {
		return t
	}
	ct := c.ContentType()
	if ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data" {
		return c.PostForm(csrfField)
	}
	return ""
}

// sameSecret compares two secrets in constant time; empty never matches.
func sameSecret(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// setCookie sets an HttpOnly, SameSite=Lax cookie on path /; maxAge 0 makes it last for the
// browser session.
func (s *Server) setCookie(c *gin.Context, name, value string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
}

// clearCookie tells the browser to forget a cookie.
func (s *Server) clearCookie(c *gin.Context, name string) {
	s.setCookie(c, name, "", -1)
}
