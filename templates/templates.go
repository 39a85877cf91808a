// Package templates holds ferry's HTML templates and static files, embedded in the binary so
// that the web pages need no build step and no files next to the program.
//
// layout.html defines the shared page ("layout") with a nav bar and a "content" block;
// partials.html defines pieces several pages share (job tables, the live log); every other
// *.html file is one page that defines "title" and "content". static/ is served at /static/:
// style.css and app.js, the small script that adds live logs and actions to the pages.
package templates

import (
	"embed"
	"io/fs"
)

// FS holds the templates (*.html) and the static files (static/...).
//
//go:embed *.html static
var FS embed.FS

// Layout is the name of the shared layout file that every page is parsed with.
const Layout = "layout.html"

// Partials is the name of the file of shared pieces that every page is parsed with.
const Partials = "partials.html"

// Static returns the static files, rooted so that "style.css" is static/style.css.
func Static() fs.FS {
	sub, err := fs.Sub(FS, "static")
	if err != nil {
		panic("templates: static directory missing from embed: " + err.Error())
	}
	return sub
}
