package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
	"ferry/templates"
)

// page is what every template gets: the user and their form token for the layout, the nav
// entry to highlight, the language, the page's own address (for the language switch) and the
// page's own data. Templates translate with {{$.T "key"}}.
type page struct {
	User      *store.User
	CSRFToken string
	Nav       string
	Lang      string
	Path      string
	Data      any
	// Setup is the first run's state for an administrator's banner, nil once ferry is set up.
	Setup *setupState
}

// T returns the text of key in the page's language, formatted with args when there are any.
func (p page) T(key string, args ...any) string { return translate(p.Lang, key, args...) }

// OtherLang is the language the switch in the layout offers.
func (p page) OtherLang() string {
	if p.Lang == langZH {
		return langEN
	}
	return langZH
}

// HTMLLang is the page's lang attribute.
func (p page) HTMLLang() string {
	if p.Lang == langZH {
		return "zh-CN"
	}
	return "en"
}

// Status returns the word for a job or host status in the page's language.
func (p page) Status(status string) string {
	if !hasMessage("status." + status) {
		return status
	}
	return p.T("status." + status)
}

// StatusLabels is a JSON object of every status word, for the scripts that update a status
// without reloading the page.
func (p page) StatusLabels() string {
	out := map[string]string{}
	for _, s := range statusWords {
		out[s] = p.Status(s)
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// Took says how long something took, or "" when it is not known.
func (p page) Took(d time.Duration) string { return formatDuration(d) }

// pageFuncs are the template functions that do not depend on the language.
var pageFuncs = template.FuncMap{
	"short":     store.ShortSHA,
	"firstLine": firstLine,
	"when":      formatTime,
	"took":      took,
	"bytes":     formatBytes,
	"percent":   percent,
	"dict":      dict,
}

// dict makes a map of key, value pairs, to pass several values to a shared template.
func dict(pairs ...any) (map[string]any, error) {
	if len(pairs)%2 != 0 {
		return nil, fmt.Errorf("dict: odd number of arguments")
	}
	m := make(map[string]any, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		k, ok := pairs[i].(string)
		if !ok {
			return nil, fmt.Errorf("dict: key %v is not a string", pairs[i])
		}
		m[k] = pairs[i+1]
	}
	return m, nil
}

// parsePages parses each page of templates.FS together with the shared layout, once.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templates.FS, "*.html")
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		if name == templates.Layout || name == templates.Partials {
			continue
		}
		t, err := template.New(name).Funcs(pageFuncs).ParseFS(templates.FS, templates.Layout, templates.Partials, name)
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
	p := page{User: currentUser(c), CSRFToken: csrfToken(c), Nav: nav, Lang: pickLang(c),
		Path: c.Request.URL.RequestURI(), Data: data, Setup: s.setupBanner(c)}
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
	c.Header("Vary", "Accept-Language, Cookie")
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

// firstLine returns the first line of a commit message.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

// formatTime shows a time (time.Time or *time.Time) in UTC to the minute; "" for none.
func formatTime(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	}
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04")
}

// took says how long a job that started and maybe finished took, counting to now while it runs;
// "" before it starts.
func took(started, finished *time.Time) string {
	if started == nil {
		return ""
	}
	end := time.Now()
	if finished != nil {
		end = *finished
	}
	return formatDuration(end.Sub(*started))
}

// formatDuration writes a duration short: 850ms, 42s, 3m 05s, 1h 02m; "" for none.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds()))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// formatBytes writes a size in B, KiB, MiB or GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}

// percent returns part of total as a whole percentage between 0 and 100.
func percent(part, total int64) int {
	if total <= 0 || part <= 0 {
		return 0
	}
	if part >= total {
		return 100
	}
	return int(part * 100 / total)
}
