package handlers_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// slowPipeline rolls out one host at a time and checks each for three seconds, so a person watching
// the project page sees every host's steps.
const slowPipeline = `build:
  script: [ "true" ]
  artifact: app
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  start: bin/start
  health: { command: "sleep 3", timeout: 30s }
  strategy: { kind: rolling, batch: 1 }
`

// The project page's host grid follows a deployment on real sshd hosts as it happens (each
// host's step, then its result) without a reload, and names the strategy that applies: the
// .ferry.yml's rolling, not serial.
func TestBrowserLiveGridDuringADeployment(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	f := newShipFixtureWith(t, db, 2, slowPipeline)
	v1 := f.build(f.commit("One devops"))
	c := newChrome(t)
	c.login(f.srv.URL, "root", "password-root")
	c.run("open the project", chromedp.Navigate(f.srv.URL+"/projects/orders"), chromedp.WaitVisible(`#grid`),
		waitFor(`(s => s && s.dataset.kind === "rolling" && s.dataset.source === "pipeline" && s.textContent.includes(".ferry.yml"))(document.querySelector('section.env[data-env="staging"] .strategy'))`),
		eval(`(() => {
			window.notReloaded = true;
			window.seen = [];
			const note = () => document.querySelectorAll('#grid .hostcell').forEach(c => {
				const live = c.querySelector('.live');
				const v = c.dataset.host + ':' + (live ? live.dataset.status + ':' + live.dataset.step : 'runs ' + c.querySelector('.version').dataset.version);
				if (window.seen[window.seen.length - 1] !== v && !window.seen.includes(v)) window.seen.push(v);
			});
			new MutationObserver(note).observe(document.getElementById('grid'), {subtree: true, childList: true, attributes: true});
			return true;
		})()`))
	var d store.Deployment
	f.admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/deployments", `{"environment":"staging","version":"`+v1+`"}`).decode(t, &d)
	c.waitLong("see both hosts run the version", `['web-1', 'web-2'].every(h => document.querySelector('.hostcell[data-host="' + h + '"] .version').dataset.version === `+jsString(v1)+
		` && !document.querySelector('.hostcell[data-host="' + h + '"] .live'))`, 2*time.Minute)
	seen, err := chromedp.Run(c.ctx, chromedp.Evaluate[[]string](`window.notReloaded === true ? window.seen : null`))
	if err != nil {
		c.fail("read what the grid showed", err)
	}
	t.Logf("the grid showed, in order: %s", strings.Join(seen, " | "))
	if seen == nil {
		t.Fatal("the page reloaded during the deployment")
	}
	joined := strings.Join(seen, " | ")
	for _, want := range []string{"web-1:running:", "web-2:running:", "web-1:runs " + v1, "web-2:runs " + v1} {
		if !strings.Contains(joined, want) {
			t.Errorf("the grid never showed %q", want)
		}
	}
	got, err := db.GetDeployment(t.Context(), d.ID)
	must(t, err)
	if got.Status != store.DeploymentSuccess {
		t.Errorf("the deployment ended %s: %s", got.Status, got.Error)
	}
	c.run("the deployment page names the strategy", chromedp.Navigate(f.srv.URL+"/deployments/"+itoa(int(d.ID))),
		waitFor(`(s => s && s.dataset.kind === "rolling" && s.dataset.source === "pipeline")(document.querySelector('.strategy'))`))
}
