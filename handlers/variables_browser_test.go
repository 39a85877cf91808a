package handlers_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserVariablesEditorAndConfigPreview sets project variables (one secret) in the
// editor of the project page, sees the secret come back as kept but not shown, and previews
// the config a version renders for a host in the deploy dialog, the secret masked; then the
// same page in Chinese.
func TestBrowserVariablesEditorAndConfigPreview(t *testing.T) {
	db, f, srv, c := adminInBrowser(t)
	ctx := context.Background()
	pipeline := "build:\n  script: [\"true\"]\n  artifact: out\ndeploy:\n  path: /opt/orders\n  config:\n    - {template: deploy/app.conf.tmpl, path: conf/app.conf}\n"
	projectConfigVersion(t, db, "orders", "v-config", pipeline, map[string]string{"deploy/app.conf.tmpl": "port={{.PORT}} pw={{.DB_PASSWORD}} on {{.FERRY_HOST}}\n"})

	editor := `details[data-vars="project"] .vars-editor`
	fill := func(i int, name, value string, secret bool) chromedp.Action[chromedp.Void] {
		return eval(`(() => { const rows = document.querySelectorAll('` + editor + ` tr.var-row'); const r = rows[` + string(rune('0'+i)) + `];
			r.querySelector('.var-name').value = ` + jsString(name) + `; r.querySelector('.var-value').value = ` + jsString(value) + `;
			r.querySelector('.var-secret').checked = ` + map[bool]string{true: "true", false: "false"}[secret] + `; return true; })()`)
	}
	c.run("set two project variables",
		chromedp.Navigate(srv.URL+"/projects/orders"),
		chromedp.Click(`details[data-vars="project"] summary`),
		waitFor(`document.querySelector('`+editor+` .vars-none') && !document.querySelector('`+editor+` .vars-none').hidden`),
		chromedp.Click(editor+` .var-add`),
		chromedp.Click(editor+` .var-add`),
		fill(0, "PORT", "8080", false),
		fill(1, "DB_PASSWORD", "hunter2-secret", true),
		chromedp.Click(editor+` .var-save`),
		waitFor(`!document.querySelector('`+editor+` .vars-saved').hidden`),
	)
	c.run("a bad name is answered next to its row",
		chromedp.Click(editor+` .var-add`),
		fill(2, "bad-name", "1", false),
		chromedp.Click(editor+` .var-save`),
		waitFor(`(e => e && e.textContent.startsWith('variable "bad-name": ') && e.closest('tr').querySelector('.var-name').value === "bad-name")(document.querySelector('`+editor+` .field-error[data-for="bad-name"]'))`),
		waitFor(`document.querySelector('`+editor+` .form-error').textContent === ""`),
		eval(`(() => { document.querySelectorAll('`+editor+` tr.var-row')[2].querySelector('.var-remove').click(); return true; })()`),
		chromedp.Click(editor+` .var-save`),
		waitFor(`!document.querySelector('`+editor+` .vars-saved').hidden && !document.querySelector('`+editor+` .field-error')`),
	)
	vars, err := db.ResolveVariables(ctx, f.project.ID, 0, 0)
	must(t, err)
	if vars["PORT"].Value != "8080" || vars["DB_PASSWORD"].Value != "hunter2-secret" || !vars["DB_PASSWORD"].Secret {
		t.Fatalf("after saving in the editor: %+v", vars)
	}
	var shown string
	c.run("the secret is kept, not shown",
		chromedp.Navigate(srv.URL+"/projects/orders"),
		chromedp.Click(`details[data-vars="project"] summary`),
		waitFor(`document.querySelectorAll('`+editor+` tr.var-row').length === 2`),
	)
	shown = c.evalString(`Array.from(document.querySelectorAll('` + editor + ` input')).map(i => i.value + '|' + i.placeholder + '|' + i.checked).join(' ')`)
	if strings.Contains(shown, "hunter2") || !strings.Contains(shown, "DB_PASSWORD") || !strings.Contains(shown, "(kept; type to replace)") {
		t.Errorf("the editor shows %q", shown)
	}
	c.run("save again without touching the secret",
		chromedp.Click(editor+` .var-save`),
		waitFor(`!document.querySelector('`+editor+` .vars-saved').hidden`),
	)
	if vars, _ = db.ResolveVariables(ctx, f.project.ID, 0, 0); vars["DB_PASSWORD"].Value != "hunter2-secret" {
		t.Errorf("saving again changed the secret: %+v", vars["DB_PASSWORD"])
	}

	var preview string
	c.run("preview the config in the deploy dialog",
		chromedp.Navigate(srv.URL+"/projects/orders/deploy"),
		setField(`#deploy-env`, "staging"),
		setField(`#deploy-version`, "v-config"),
		chromedp.Click(`#config-preview-open`),
		waitFor(`(p => p && p.textContent.includes("port=8080"))(document.querySelector('#config-preview pre'))`),
	)
	preview = c.evalString(`document.querySelector('#config-preview').textContent`)
	if !strings.Contains(preview, "port=8080 pw=****** on web-1") || strings.Contains(preview, "hunter2") || !strings.Contains(preview, "conf/app.conf") {
		t.Errorf("the preview shows %q", preview)
	}

	var zh string
	c.run("in Chinese",
		chromedp.Navigate(srv.URL+"/lang/zh?next=/projects/orders"),
		waitFor(`document.body.textContent.includes("项目变量")`),
	)
	zh = c.evalString(`document.body.textContent`)
	if !strings.Contains(zh, "环境 staging 的变量") {
		t.Errorf("the Chinese project page lacks the environment variables editor")
	}
}

// evalString evaluates a string expression in the tab.
func (c *chrome) evalString(expr string) string {
	c.t.Helper()
	out, err := chromedp.Run(c.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		c.fail("evaluate "+expr, err)
	}
	return out
}
