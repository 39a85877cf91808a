package handlers

import (
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// access is what a route asks of the user making the request.
type access int

// The kinds of access routes ask for. Every route is registered with one (see need).
const (
	public        access = iota // anyone, logged in or not
	loggedIn                    // any logged-in user
	adminOnly                   // administrators
	projectRead                 // members of the :project (and administrators)
	projectBuild                // members of the :project: start and cancel builds
	projectDeploy               // members; for a protected :env, members with the production right
	projectAdmin                // administrators; members are refused, others do not see the project
)

// scoped reports whether the access is decided per project (the route has a :project).
func (a access) scoped() bool { return a >= projectRead }

// verdict is the outcome of decide.
type verdict int

const (
	allowed   verdict = iota
	needLogin         // anonymous: 401, or the login page
	hidden            // the user may not know the project exists: 404
	forbidden         // the user is known and sees the thing but may not do this: 403
)

// decide is the one place that says who may do what. u is the user (nil when anonymous), m
// their membership of the project the route is about (nil when none or not scoped), and
// protectedEnv whether the environment being deployed to is protected.
func decide(a access, u *store.User, m *store.Member, protectedEnv bool) verdict {
	switch {
	case a == public:
		return allowed
	case u == nil:
		return needLogin
	case u.Admin, a == loggedIn:
		return allowed
	case a == adminOnly:
		return forbidden
	case m == nil:
		return hidden
	case a == projectRead, a == projectBuild:
		return allowed
	case a == projectDeploy && (!protectedEnv || m.Production):
		return allowed
	default:
		return forbidden
	}
}

// Keys of what need loads for the handlers.
const (
	projectKey = "ferry.project"
	envKey     = "ferry.environment"
)

// need returns the middleware that lets a request through only if decide allows it. For
// project routes it loads the :project (and for deployments the :env), which handlers then
// get with projectOf and environmentOf.
func (s *Server) need(a access) gin.HandlerFunc {
	return func(c *gin.Context) {
		u := currentUser(c)
		if a != public {
			if u == nil {
				s.askLogin(c)
				return
			}
			if err := checkCSRF(c); err != nil {
				s.fail(c, err)
				return
			}
		}
		var m *store.Member
		protectedEnv := false
		if a.scoped() {
			var err error
			if m, err = s.loadProject(c, u); err != nil {
				s.fail(c, err)
				return
			}
			if a == projectDeploy && (u.Admin || m != nil) {
				if protectedEnv, err = s.loadEnvironment(c); err != nil {
					s.fail(c, err)
					return
				}
			}
		}
		switch decide(a, u, m, protectedEnv) {
		case allowed:
			c.Next()
		case needLogin:
			s.askLogin(c)
		case hidden:
			s.fail(c, projectNotFound(c.Param("project")))
		default:
			s.fail(c, store.Errorf(store.EFORBIDDEN, "you may not do this; %s", forbiddenReason(a)))
		}
	}
}

// forbiddenReason says who may do what a refused request tried.
func forbiddenReason(a access) string {
	if a == projectDeploy {
		return "deploying to a protected environment needs the production right on the project"
	}
	return "only administrators may"
}

func projectNotFound(name string) error {
	return store.Errorf(store.ENOTFOUND, "project %q not found", name)
}

// loadProject loads the route's :project and the user's membership of it (nil for none).
func (s *Server) loadProject(c *gin.Context, u *store.User) (*store.Member, error) {
	ctx := c.Request.Context()
	name := c.Param("project")
	p, err := s.db.GetProject(ctx, name)
	if store.IsNotFound(err) {
		return nil, projectNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	c.Set(projectKey, p)
	if u.Admin {
		return nil, nil
	}
	m, err := s.db.GetMember(ctx, p.ID, u.ID)
	if store.IsNotFound(err) {
		return nil, nil
	}
	return m, err
}

// loadEnvironment loads the route's :env of the loaded project and reports if it is protected.
func (s *Server) loadEnvironment(c *gin.Context) (bool, error) {
	e, err := s.db.GetEnvironment(c.Request.Context(), projectOf(c).ID, c.Param("env"))
	if err != nil {
		return false, err
	}
	c.Set(envKey, e)
	return e.Protected, nil
}

// projectOf returns the project need loaded for a project route.
func projectOf(c *gin.Context) *store.Project {
	p, _ := c.Get(projectKey)
	return p.(*store.Project)
}

// environmentOf returns the environment need loaded for a deploy route, or nil.
func environmentOf(c *gin.Context) *store.Environment {
	e, _ := c.Get(envKey)
	v, _ := e.(*store.Environment)
	return v
}

// askLogin answers an anonymous request: 401 for the API, the login page for pages.
func (s *Server) askLogin(c *gin.Context) {
	if isAPI(c) {
		s.fail(c, store.Errorf(store.EUNAUTHORIZED, `log in first: send an API token as "Authorization: Bearer <token>", or log in with the browser`))
		return
	}
	target := "/login"
	if c.Request.Method == http.MethodGet {
		target += "?next=" + url.QueryEscape(c.Request.URL.RequestURI())
	}
	c.Redirect(http.StatusSeeOther, target)
	c.Abort()
}
