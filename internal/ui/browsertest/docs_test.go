//go:build browser

package browsertest

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var updateDocs = flag.Bool("update-docs", false, "write the populated dashboard to docs/dashboard.png (make docs-screenshot)")

// TestDocsScreenshot fills a namespace the way a team's would look — locks
// with holders and metadata, a leader, semaphores, a forced release — with
// the page open, checks that it all shows, and saves the view: to
// ui-screenshots/, or with -update-docs to docs/dashboard.png for the
// README.
func TestDocsScreenshot(t *testing.T) {
	srv, k := startServer(t)
	browser := startBrowser(t)
	root := repoRoot(t)
	tb := newTab(t, browser, srv, "docs", filepath.Join(root, "ui-screenshots"))
	tb.do("sign in",
		chromedp.Navigate(srv.base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#key-form")),
		chromedp.SendKeys(chromedp.CSS("#key-input"), k.operator),
		chromedp.Click(chromedp.CSS("#key-submit")))
	tb.waitFor("the stream is live", `document.getElementById("conn").dataset.state === "live"`, 5*time.Second)

	key := k.viewer
	post := func(path, body string) map[string]any { return srv.must(t, 201, "POST", path, key, body) }
	post("lock/key/deploy:production", `{"secret":"d","holder":"ci-runner-7","metadata":{"commit":"9f2c1ab","pipeline":"4512"},"expires_in":600,"lock_delay":10}`)
	post("lock/key/billing-db.migrate", `{"secret":"m","holder":"migrator@ci-runner-3","metadata":{"release":"v2.14.0"},"expires_in":1500}`)
	post("lock/key/nightly-backup", `{"holder":"backup@db-3","expires_in":7200}`)
	post("lock/key/stuck-job", `{"secret":"x","holder":"worker-9 (pid 4411)","expires_in":86400}`)
	post("lock/uuid/3f6b2a1c-9d4e-4f8a-b1c2-7e5d9a0b4c6d", `{"secret":"u","holder":"job 8c1f","metadata":{"queue":"exports"}}`)
	leader := `{"secret":"l","holder":"host-12:4242","metadata":{"addr":"10.0.0.12:8080"},"expires_in":45,"lock_delay":5}`
	post("lock/key/leader.scheduler", leader)
	for i, w := range []string{"worker-1", "worker-2", "worker-5"} {
		post("semaphore/key/render-farm", fmt.Sprintf(`{"secret":"r%d","limit":4,"holder":%q,"metadata":{"gpu":"a10g"},"expires_in":%d}`, i, w, 300+i*240))
	}
	slot := post("semaphore/key/reports.db", `{"secret":"w","limit":10,"weight":10,"holder":"nightly-report (writer)","expires_in":3600}`)
	srv.must(t, 200, "PATCH", "lock/key/leader.scheduler", key, `{"secret":"l","metadata":{"addr":"10.0.0.12:8080","term":"42"}}`)
	post("lock/key/cache-warmup", `{"holder":"cron@app-2","expires_in":60}`)
	srv.must(t, 200, "DELETE", "lock/key/cache-warmup", key, "")
	srv.must(t, 200, "DELETE", "lock/key/stuck-job", k.operator, "", "Locklock-Force", "true")
	_ = slot

	tb.waitFor("every lock", `document.querySelectorAll("#locks-body tr").length === 5`, 3*time.Second)
	tb.waitFor("both semaphores", `document.querySelectorAll("#sems-list article").length === 2`, 3*time.Second)
	tb.waitFor("the revoke in the log", `document.querySelector("#events-list li.t-revoked")`, 3*time.Second)
	if got := tb.text(`#locks-body tr[data-key="key/leader.scheduler"] .meta`); !strings.Contains(got, "term42") {
		t.Errorf("the leader's new metadata: %q", got)
	}
	if got := tb.text(`#sems-list article[data-key="key/reports.db"] .sem-usage`); got != "10 / 10 in use" {
		t.Errorf("reports.db usage: %q", got)
	}
	// Let the highlight of changed rows and the "connected" message fade.
	tb.waitFor("the message fades", `!document.getElementById("toast").classList.contains("show")`, 10*time.Second)
	time.Sleep(1500 * time.Millisecond)

	dir := filepath.Join(root, "ui-screenshots")
	name := "docs-dashboard"
	if *updateDocs {
		dir, name = filepath.Join(root, "docs"), "dashboard"
	}
	t.Logf("wrote %s", tb.viewportShot(dir, name))
	tb.checkClean(k.operator, k.viewer)
}
