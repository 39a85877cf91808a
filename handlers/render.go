package handlers

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
	"ferry/templates"
)

// page is what every template gets: the user and their form token for the layout, the nav
// entry to highlight, and the page's own data.
type page struct {
	User      *store.User
	CSRFToken string
	Nav       string
	Data      any
}

// parsePages parses each page of templates.FS together with the shared layout, once.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templates.FS, "*.html")
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		if name == templates.Layout {
			continue
		}
		t, err := template.New(name).ParseFS(templates.FS, templates.Layout, name)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// execute renders the page name with data into w.
func (s *Server) execute(w io.Writer, c *gin.Context, name, nav string, data any) error {
	t := s.pages[name]
	if t == nil {
		return fmt.Errorf("no template %s", name)
	}
	p := page{User: currentUser(c), CSRFToken: csrfToken(c), Nav: nav, Data: data}
	return t.ExecuteTemplate(w, "layout", p)
}

// render writes the page name with status, rendered into a buffer first so that a template
// error becomes a clean 500 rather than half a page.
func (s *Server) render(c *gin.Context, status int, name, nav string, data any) {
	var buf bytes.Buffer
	if err := s.execute(&buf, c, name, nav, data); err != nil {
		s.fail(c, fmt.Errorf("render %s: %w", name, err))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

func (s *Server) registerStatic(r gin.IRouter) {
	static := http.FS(templates.Static())
	r.GET("/static/*filepath", s.need(public), func(c *gin.Context) {
		c.FileFromFS(c.Param("filepath"), static)
	})
	r.HEAD("/static/*filepath", s.need(public), func(c *gin.Context) {
		c.FileFromFS(c.Param("filepath"), static)
	})
}
