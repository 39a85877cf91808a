package notify

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"
)

// Size limits of message bodies per platform, in bytes of UTF-8.
const (
	DingTalkLimit = 20000 // DingTalk custom robot: markdown text
	WeComLimit    = 4096  // WeCom group robot: markdown content
	FeishuLimit   = 25000 // Feishu custom bot: the whole request must stay under 30 KB
)

// maxDigestEntries is how many merged notices a digest lists one by one.
const maxDigestEntries = 30

// Rendered is a message laid out for one platform: a one-line title and a body.
type Rendered struct {
	Title string
	Body  string
}

// view is a message with secrets masked and the log tail cut to its last lines: the only
// form of a message that renderers see.
type view struct {
	Title  string
	Facts  []fact
	URL    string
	Log    string
	Merged []view
}

func newView(m Message) view {
	mask := func(s string) string { return Mask(s, m.Secrets) }
	v := view{Title: mask(m.Title()), URL: m.URL}
	for _, f := range m.facts() {
		v.Facts = append(v.Facts, fact{f.Label, mask(f.Value)})
	}
	if len(m.LogTail) > 0 {
		masked := Mask(strings.Join(m.LogTail, "\n"), m.Secrets)
		v.Log = strings.Join(lastLines([]string{masked}, MaxLogLines), "\n")
	}
	for _, merged := range m.Merged {
		merged.Secrets = append(merged.Secrets, m.Secrets...)
		v.Merged = append(v.Merged, newView(merged))
	}
	return v
}

// RenderMarkdown lays m out in the markdown that DingTalk, WeCom and Feishu understand, the
// body kept within limit bytes (no limit when limit <= 0): the log tail is cut first, then the
// body, and either says "(truncated)".
func RenderMarkdown(m Message, limit int) Rendered {
	v := newView(m)
	var head strings.Builder
	fmt.Fprintf(&head, "### %s\n\n", v.Title)
	for _, f := range v.Facts {
		fmt.Fprintf(&head, "- **%s:** %s\n", f.Label, f.Value)
	}
	writeMarkdownDigest(&head, v.Merged)
	if v.URL != "" {
		fmt.Fprintf(&head, "\n[Open in ferry](%s)\n", v.URL)
	}
	wrap := func(log string, truncated bool) string {
		mark := ""
		if truncated {
			mark = TruncatedMark + "\n"
		}
		return "\n**Last log lines:**\n\n```\n" + mark + fenceSafe(log) + "\n```\n"
	}
	return Rendered{Title: v.Title, Body: fitBody(head.String(), v.Log, limit, wrap)}
}

func writeMarkdownDigest(b *strings.Builder, merged []view) {
	for i, v := range merged {
		if i == maxDigestEntries {
			fmt.Fprintf(b, "- … and %d more\n", len(merged)-i)
			return
		}
		if v.URL != "" {
			fmt.Fprintf(b, "- [%s](%s)\n", linkText(v.Title), v.URL)
		} else {
			fmt.Fprintf(b, "- %s\n", v.Title)
		}
	}
}

// RenderText lays m out as plain text, kept within limit bytes like RenderMarkdown.
func RenderText(m Message, limit int) Rendered {
	v := newView(m)
	var head strings.Builder
	head.WriteString(v.Title + "\n\n")
	for _, f := range v.Facts {
		fmt.Fprintf(&head, "%s: %s\n", f.Label, f.Value)
	}
	for i, merged := range v.Merged {
		if i == maxDigestEntries {
			fmt.Fprintf(&head, "- … and %d more\n", len(v.Merged)-i)
			break
		}
		fmt.Fprintf(&head, "- %s %s\n", merged.Title, merged.URL)
	}
	if v.URL != "" {
		fmt.Fprintf(&head, "\n%s\n", v.URL)
	}
	wrap := func(log string, truncated bool) string {
		mark := ""
		if truncated {
			mark = TruncatedMark + "\n"
		}
		return "\nLast log lines:\n" + mark + log + "\n"
	}
	return Rendered{Title: v.Title, Body: fitBody(head.String(), v.Log, limit, wrap)}
}

var htmlTemplate = template.Must(template.New("mail").Parse(`<!DOCTYPE html>
<html><body style="font-family:sans-serif;font-size:14px">
<h3>{{.Title}}</h3>
{{if .Facts}}<table cellpadding="4">{{range .Facts}}
<tr><td><b>{{.Label}}</b></td><td>{{.Value}}</td></tr>{{end}}
</table>{{end}}
{{if .Merged}}<ul>{{range .Merged}}
<li>{{if .URL}}<a href="{{.URL}}">{{.Title}}</a>{{else}}{{.Title}}{{end}}</li>{{end}}
</ul>{{end}}
{{if .URL}}<p><a href="{{.URL}}">Open in ferry</a></p>{{end}}
{{if .Log}}<p><b>Last log lines:</b></p>
<pre style="background:#f6f8fa;padding:8px;white-space:pre-wrap">{{.Log}}</pre>{{end}}
</body></html>
`))

// RenderHTML lays m out as an HTML document (for mail), every value escaped. It fails only if
// the template cannot be executed.
func RenderHTML(m Message) (string, error) {
	var b bytes.Buffer
	if err := htmlTemplate.Execute(&b, newView(m)); err != nil {
		return "", fmt.Errorf("render HTML of %q: %w", m.Title(), err)
	}
	return b.String(), nil
}

// fenceSafe keeps a log line from closing the markdown code block it is shown in.
func fenceSafe(log string) string {
	return strings.ReplaceAll(log, "```", "'''")
}

// linkText keeps a title from ending the markdown link it is the text of.
func linkText(s string) string {
	return strings.NewReplacer("[", "(", "]", ")").Replace(s)
}
