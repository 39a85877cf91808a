package handlers

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

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
	// projectWide is for what reaches every environment of the :project (project variables):
	// members; when any environment of the project is protected, members with the production right.
	projectWide
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
	case (a == projectDeploy || a == projectWide) && (!protectedEnv || m.Production):
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
			if a == projectWide && m != nil {
				if protectedEnv, err = s.anyProtectedEnvironment(c); err != nil { // variables.go
					s.fail(c, err)
					return
				}
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
			s.fail(c, hiddenNotFound(c))
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
	if a == projectWide {
		return "project variables reach every environment, and this project has a protected one: changing them needs the production right on the project"
	}
	return "only administrators may"
}

func projectNotFound(name string) error {
	return store.Errorf(store.ENOTFOUND, "project %q not found", name)
}

// ProjectFinder (kept per route parameter, without the colon, in Server.finders: each
// resource's registerX adds its own, so that need checks rights on /builds/:build as it does on
// /projects/:project) finds the project (by id) of a route that names something of a project by its
// numeric id, such as a build or a deployment, and the name of the environment it concerns ("" for
// none), which decides whether deploy rights on a protected environment are needed.
type ProjectFinder func(ctx context.Context, db *store.DB, id int64) (projectID int64, env string, err error)

const (
	finderEnvKey = "ferry.finder-env"
	missingKey   = "ferry.missing"
)

// hiddenNotFound is the 404 for something the user may not even know exists.
func hiddenNotFound(c *gin.Context) error {
	if what, ok := c.Get(missingKey); ok {
		return store.Errorf(store.ENOTFOUND, "%s not found", what)
	}
	return projectNotFound(c.Param("project"))
}

// loadProject loads the route's :project (or the project of the thing a finder's parameter
// names) and the user's membership of it (nil for none).
func (s *Server) loadProject(c *gin.Context, u *store.User) (*store.Member, error) {
	ctx := c.Request.Context()
	p, err := s.findProject(c)
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

func (s *Server) findProject(c *gin.Context) (*store.Project, error) {
	ctx := c.Request.Context()
	if name := c.Param("project"); name != "" {
		p, err := s.db.GetProject(ctx, name)
		if store.IsNotFound(err) {
			return nil, projectNotFound(name)
		}
		return p, err
	}
	for param, find := range s.finders {
		v := c.Param(param)
		if v == "" {
			continue
		}
		what := param + " " + v
		c.Set(missingKey, what)
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return nil, store.Errorf(store.ENOTFOUND, "%s not found: an id is a positive number", what)
		}
		pid, env, err := find(ctx, s.db, id)
		if store.IsNotFound(err) {
			return nil, store.Errorf(store.ENOTFOUND, "%s not found", what)
		}
		if err != nil {
			return nil, err
		}
		c.Set(finderEnvKey, env)
		p, err := s.db.GetProjectByID(ctx, pid)
		if store.IsNotFound(err) {
			return nil, store.Errorf(store.ENOTFOUND, "%s not found", what)
		}
		return p, err
	}
	return nil, store.Errorf(store.EINTERNAL, "route %s names no project", c.FullPath())
}

// loadEnvironment loads the route's :env (or the environment a finder named) of the loaded
// project and reports if it is protected. With neither, there is nothing protected to check.
func (s *Server) loadEnvironment(c *gin.Context) (bool, error) {
	name := c.Param("env")
	if name == "" {
		name = c.GetString(finderEnvKey)
	}
	if name == "" {
		return false, nil
	}
	e, err := s.db.GetEnvironment(c.Request.Context(), projectOf(c).ID, name)
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
