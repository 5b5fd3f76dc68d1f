//go:build browser

package browsertest

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

const xssHolder = `<img src=x onerror=alert(1)>`

// TestDashboard walks through the dashboard as its users would: a visitor
// without a key, a wrong key, an operator watching and force-releasing, a
// key without operator rights, and the dark theme.
func TestDashboard(t *testing.T) {
	start := time.Now()
	srv, k := startServer(t)
	browser := startBrowser(t)
	shots := filepath.Join(repoRoot(t), "ui-screenshots")
	clearShots(t, shots)
	t.Logf("server and browser up in %v; screenshots in %s", time.Since(start).Round(time.Millisecond), shots)

	ops := newTab(t, browser, srv, "operator", shots)
	t.Run("load", func(t *testing.T) {
		ops.t = t
		ops.do("load /ui/", chromedp.Navigate(srv.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#key-form")))
		if got := eval[string](ops, "document.title"); got != "Locklock" {
			t.Errorf("title %q", got)
		}
		if eval[bool](ops, `!document.getElementById("namespace-view").hidden`) {
			t.Error("the namespace view shows without a key")
		}
		ops.shot("01-signed-out")
	})

	t.Run("parser", func(t *testing.T) {
		ops.t = t
		checkParser(t, ops)
	})

	t.Run("wrong key", func(t *testing.T) {
		ops.t = t
		ops.expectFailedLoad(srv.base + "/v1/api/whoami")
		ops.do("submit a wrong key",
			chromedp.SendKeys(chromedp.CSS("#key-input"), "llk_not-a-key"),
			chromedp.Click(chromedp.CSS("#key-submit")))
		ops.waitFor("the error shows", `!document.getElementById("alert").hidden`, 5*time.Second)
		if title := ops.text("#alert-title"); title != "Unauthorized" {
			t.Errorf("error title %q, want the problem's title Unauthorized", title)
		}
		if detail := ops.text("#alert-detail"); detail == "" {
			t.Error("the problem's detail is not shown")
		}
		if eval[bool](ops, `sessionStorage.length > 0`) {
			t.Error("a refused key was kept in sessionStorage")
		}
		ops.shot("02-wrong-key")
	})

	t.Run("operator key", func(t *testing.T) {
		ops.t = t
		ops.clearInput("#key-input")
		ops.do("submit the operator key",
			chromedp.SendKeys(chromedp.CSS("#key-input"), k.operator),
			chromedp.Click(chromedp.CSS("#key-submit")))
		ops.waitFor("the namespace view", `!document.getElementById("namespace-view").hidden`, 5*time.Second)
		ops.waitFor("the stream is live", `document.getElementById("conn").dataset.state === "live"`, 5*time.Second)
		if ns := ops.text("#who-namespace"); ns != "acme" {
			t.Errorf("namespace shown: %q", ns)
		}
		if eval[bool](ops, `document.getElementById("who-operator").hidden`) {
			t.Error("the operator key is not shown as an operator's")
		}
		if got := eval[string](ops, `sessionStorage.getItem("locklock.apiKey")`); got != k.operator {
			t.Errorf("sessionStorage holds %q, want the key", got)
		}
		if eval[bool](ops, `localStorage.length > 0 || document.cookie !== ""`) {
			t.Error("the key went somewhere other than sessionStorage")
		}
		if len(ops.requestsMatching("/v1/api/events")) == 0 || len(ops.requestsMatching("/v1/api/locks?kind=key")) == 0 {
			t.Errorf("the page did not open the event stream and list: %v", ops.requestsMatching("/v1/api/"))
		}
	})

	t.Run("a lock appears with a moving countdown", func(t *testing.T) {
		ops.t = t
		acquired := time.Now()
		srv.must(t, 201, "POST", "lock/key/deploy-prod", k.viewer,
			`{"secret":"s-deploy","holder":"ci-runner-7","metadata":{"commit":"9f2c1ab","pipeline":"4512"},"expires_in":600,"lock_delay":5}`)
		row := `#locks-body tr[data-key="key/deploy-prod"]`
		ops.waitFor("the lock's row", fmt.Sprintf(`document.querySelector(%q)`, row), 2*time.Second-time.Since(acquired))
		t.Logf("the lock showed %v after its acquire", time.Since(acquired).Round(time.Millisecond))
		if h := ops.text(row + " .holder"); h != "ci-runner-7" {
			t.Errorf("holder %q", h)
		}
		if md := ops.text(row + " .meta"); !strings.Contains(md, "commit") || !strings.Contains(md, "9f2c1ab") {
			t.Errorf("metadata %q", md)
		}
		if p := ops.text(row + " .prot"); p != "Yes" {
			t.Errorf("protected %q", p)
		}
		first := ops.text(row + " .countdown")
		time.Sleep(1100 * time.Millisecond)
		second := ops.text(row + " .countdown")
		a, b := secondsLeft(t, first), secondsLeft(t, second)
		if b >= a || a-b > 3 {
			t.Errorf("countdown %q, 1.1 s later %q: want a time left that went down by a second or two", first, second)
		}
		if a > 600 || a < 590 {
			t.Errorf("countdown %q for a lock of 600 s acquired just now", first)
		}
	})

	t.Run("a semaphore shows its slots", func(t *testing.T) {
		ops.t = t
		srv.must(t, 201, "POST", "semaphore/key/render-farm", k.viewer, `{"limit":4,"weight":1,"holder":"worker-1","secret":"w1","expires_in":300}`)
		srv.must(t, 201, "POST", "semaphore/key/render-farm", k.viewer, `{"limit":4,"weight":2,"holder":"worker-2","secret":"w2","expires_in":300}`)
		card := `#sems-list article[data-key="key/render-farm"]`
		ops.waitFor("both slots", fmt.Sprintf(`document.querySelectorAll(%q).length === 2`, card+" tbody tr"), 2*time.Second)
		if u := ops.text(card + " .sem-usage"); u != "3 / 4 in use" {
			t.Errorf("usage %q", u)
		}
		holders := eval[[]string](ops, fmt.Sprintf(`[...document.querySelectorAll(%q)].map(e => e.textContent)`, card+" tbody .holder"))
		if strings.Join(holders, ",") != "worker-1,worker-2" {
			t.Errorf("slot holders %q", holders)
		}
		ops.shot("03-live")
	})

	t.Run("markup in a holder is text", func(t *testing.T) {
		ops.t = t
		srv.must(t, 201, "POST", "lock/key/xss-probe", k.viewer,
			`{"holder":`+quote(xssHolder)+`,"metadata":{"note":"<script>alert(2)</script>"},"expires_in":600}`)
		row := `#locks-body tr[data-key="key/xss-probe"]`
		ops.waitFor("the probe's row", fmt.Sprintf(`document.querySelector(%q)`, row), 2*time.Second)
		time.Sleep(300 * time.Millisecond) // time for an onerror to fire, if it could
		if h := ops.text(row + " .holder"); h != xssHolder {
			t.Errorf("holder shown as %q, want the text %q", h, xssHolder)
		}
		if v := ops.text(row + " .meta-v"); v != "<script>alert(2)</script>" {
			t.Errorf("metadata shown as %q", v)
		}
		if n := eval[int](ops, `document.querySelectorAll("img").length + document.querySelectorAll("main script").length`); n != 0 {
			t.Errorf("the holder became %d element(s)", n)
		}
		if ev := ops.text("#events-list li.t-acquired .ev-holder"); ev != xssHolder {
			t.Errorf("the events log shows the holder as %q", ev)
		}
		if got := ops.requestsMatching("/x"); len(got) > 0 {
			t.Errorf("the page loaded the holder's image: %v", got)
		}
		ops.mu.Lock()
		dialogs := ops.dialogs
		ops.mu.Unlock()
		if dialogs != 0 {
			t.Errorf("%d JavaScript dialog(s) opened", dialogs)
		}
	})

	t.Run("filter", func(t *testing.T) {
		ops.t = t
		visible := func() string {
			return strings.Join(eval[[]string](ops, `[...document.querySelectorAll("#locks-body tr")].map(r => r.dataset.key)`), ",")
		}
		if v := visible(); v != "key/deploy-prod,key/xss-probe" {
			t.Fatalf("locks shown: %q", v)
		}
		ops.do("type a prefix", chromedp.SendKeys(chromedp.CSS("#filter-prefix"), "deploy"))
		ops.waitFor("the filter applies", `document.querySelectorAll("#locks-body tr").length === 1`, 2*time.Second)
		if v := visible(); v != "key/deploy-prod" {
			t.Errorf("with prefix deploy: %q", v)
		}
		if n := eval[int](ops, `document.querySelectorAll("#sems-list article").length`); n != 0 {
			t.Errorf("with prefix deploy: %d semaphores shown", n)
		}
		ops.clearInput("#filter-prefix")
		eval[bool](ops, `(() => { const s = document.getElementById("filter-kind"); s.value = "uuid"; s.dispatchEvent(new Event("change")); return true; })()`)
		ops.waitFor("the kind filter applies", `document.querySelectorAll("#locks-body tr").length === 0`, 2*time.Second)
		if !eval[bool](ops, `!document.getElementById("locks-empty").hidden`) {
			t.Error("no empty-state message when the filter hides every lock")
		}
		eval[bool](ops, `(() => { const s = document.getElementById("filter-kind"); s.value = ""; s.dispatchEvent(new Event("change")); return true; })()`)
		ops.waitFor("every lock again", `document.querySelectorAll("#locks-body tr").length === 2`, 2*time.Second)
	})

	t.Run("accessible names", func(t *testing.T) {
		ops.t = t
		seen := ops.checkAccessibleNames("operator view")
		if seen["button"] < 5 || seen["textbox"]+seen["searchbox"] < 1 || seen["combobox"] < 1 {
			t.Errorf("the check saw too few controls to mean anything: %v", seen)
		}
		t.Logf("controls with names: %v", seen)
	})

	t.Run("force release a lock", func(t *testing.T) {
		ops.t = t
		row := `#locks-body tr[data-key="key/deploy-prod"]`
		label := eval[string](ops, fmt.Sprintf(`document.querySelector(%q).getAttribute("aria-label")`, row+" button"))
		if label != "Force release lock key/deploy-prod" {
			t.Errorf("the button's accessible name: %q", label)
		}
		ops.do("click Force release", chromedp.Click(chromedp.CSS(row+" button")))
		ops.waitFor("the confirmation dialog", `document.getElementById("force-dialog").open`, 2*time.Second)
		if d := ops.text("#force-dialog"); !strings.Contains(d, "key/deploy-prod") || !strings.Contains(d, "ci-runner-7") || !strings.Contains(d, "lock-delay") {
			t.Errorf("the dialog says %q", d)
		}
		if f := eval[string](ops, `document.activeElement && document.activeElement.id`); f != "force-cancel" {
			t.Errorf("focus in the dialog is on %q, want Cancel", f)
		}
		ops.checkAccessibleNames("confirmation dialog")
		ops.shot("04-confirm-force-release")
		ops.do("confirm", chromedp.Click(chromedp.CSS("#force-confirm")))
		ops.waitFor("the lock is gone", fmt.Sprintf(`!document.querySelector(%q) && !document.getElementById("force-dialog").open`, row), 2*time.Second)
		ops.waitFor("revoked in the events log", `[...document.querySelectorAll("#events-list li.t-revoked")].some(li => li.textContent.includes("deploy-prod"))`, 2*time.Second)
		if toast := ops.text("#toast"); !strings.Contains(toast, "Force-released") {
			t.Errorf("the outcome shown: %q", toast)
		}
		code, body := srv.call(t, "GET", "lock/key/deploy-prod", k.viewer, "")
		if code != 404 || body["delayed_until"] == nil {
			t.Errorf("after the forced release: GET %d %v, want 404 with delayed_until (lock-delay)", code, body)
		}
		ops.shot("05-revoked")
	})

	t.Run("force release a slot", func(t *testing.T) {
		ops.t = t
		card := `#sems-list article[data-key="key/render-farm"]`
		ops.do("click Force release on worker-2's slot",
			chromedp.Click(chromedp.CSS(card+` tbody tr:nth-child(2) button`)))
		ops.waitFor("the confirmation dialog", `document.getElementById("force-dialog").open`, 2*time.Second)
		if d := ops.text("#force-facts"); !strings.Contains(d, "worker-2") {
			t.Errorf("the dialog's facts: %q", d)
		}
		ops.do("confirm", chromedp.Click(chromedp.CSS("#force-confirm")))
		ops.waitFor("one slot left", fmt.Sprintf(`document.querySelectorAll(%q).length === 1`, card+" tbody tr"), 2*time.Second)
		if u := ops.text(card + " .sem-usage"); u != "1 / 4 in use" {
			t.Errorf("usage after the forced release: %q", u)
		}
		ops.waitFor("the slot's revoked event", `[...document.querySelectorAll("#events-list li.t-revoked")].some(li => li.textContent.includes("render-farm"))`, 2*time.Second)
	})

	t.Run("dark theme", func(t *testing.T) {
		ops.t = t
		light := eval[string](ops, `getComputedStyle(document.body).backgroundColor`)
		ops.colorScheme("dark")
		ops.waitFor("the dark theme", `matchMedia("(prefers-color-scheme: dark)").matches`, 2*time.Second)
		dark := eval[string](ops, `getComputedStyle(document.body).backgroundColor`)
		if dark == light || luminance(t, dark) > 0.2 || luminance(t, light) < 0.8 {
			t.Errorf("background light %s, dark %s", light, dark)
		}
		if fg := eval[string](ops, `getComputedStyle(document.body).color`); luminance(t, fg) < 0.6 {
			t.Errorf("text in the dark theme is %s", fg)
		}
		ops.shot("06-dark")
		// By keyboard alone: Tab to the button, Enter opens the dialog,
		// Escape cancels it and gives the focus back.
		button := `#locks-body tr[data-key="key/xss-probe"] button`
		ops.tabTo(button, 60)
		if !eval[bool](ops, `document.activeElement.matches(":focus-visible") && getComputedStyle(document.activeElement).outlineStyle !== "none"`) {
			t.Error("the focused button shows no focus ring")
		}
		ops.shot("07-dark-keyboard-focus")
		ops.do("press Enter", chromedp.KeyEvent(kb.Enter))
		ops.waitFor("the dialog", `document.getElementById("force-dialog").open`, 2*time.Second)
		ops.shot("08-dark-dialog")
		ops.do("cancel with Escape", chromedp.KeyEvent(kb.Escape))
		ops.waitFor("the dialog closes", `!document.getElementById("force-dialog").open`, 2*time.Second)
		if !eval[bool](ops, fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, button)) {
			t.Error("focus did not come back to the button that opened the dialog")
		}
		if n := eval[int](ops, `document.querySelectorAll("#locks-body tr").length`); n != 1 {
			t.Errorf("cancelling released something: %d locks left", n)
		}
		ops.colorScheme("")
	})

	viewer := newTab(t, browser, srv, "viewer", shots)
	t.Run("a key without operator rights", func(t *testing.T) {
		viewer.t = t
		viewer.do("load and sign in",
			chromedp.Navigate(srv.base+"/ui/"),
			chromedp.WaitVisible(chromedp.CSS("#key-form")),
			chromedp.SendKeys(chromedp.CSS("#key-input"), k.viewer),
			chromedp.Click(chromedp.CSS("#key-submit")))
		viewer.waitFor("the locks", `document.querySelectorAll("#locks-body tr").length === 1`, 5*time.Second)
		if !eval[bool](viewer, `document.getElementById("who-operator").hidden`) {
			t.Error("a viewer is shown as an operator")
		}
		if n := eval[int](viewer, `[...document.querySelectorAll("main button")].filter(b => b.textContent === "Force release" && b.offsetParent !== null).length`); n != 0 {
			t.Errorf("a viewer sees %d Force release buttons", n)
		}
		code, body := srv.call(t, "DELETE", "lock/key/xss-probe", k.viewer, "", "Locklock-Force", "true")
		if code != 403 || body["code"] != "forbidden" {
			t.Errorf("a forced release by a viewer: %d %v, want 403 forbidden", code, body)
		}
		viewer.shot("09-viewer")
	})

	anon := newTab(t, browser, srv, "anonymous", shots)
	t.Run("an anonymous visitor watches one UUID lock", func(t *testing.T) {
		anon.t = t
		const id = "5f0c7a1e-3b7d-4c2a-9a53-0d4b2f6e8c11"
		anon.do("load", chromedp.Navigate(srv.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#lookup-form")))
		if eval[bool](anon, `sessionStorage.length > 0 || !document.getElementById("namespace-view").hidden`) {
			t.Fatal("a new tab starts signed in")
		}
		srv.must(t, 201, "POST", "lock/uuid/"+id, "", `{"holder":"batch-42","metadata":{"queue":"nightly"},"expires_in":120}`)
		anon.do("look it up",
			chromedp.SendKeys(chromedp.CSS("#lookup-input"), strings.ToUpper(id)),
			chromedp.Click(chromedp.CSS("#lookup-submit")))
		anon.waitFor("the lock", `document.getElementById("lookup-state").dataset.state === "held"`, 3*time.Second)
		anon.waitFor("the watch is live", `document.getElementById("conn").dataset.state === "live"`, 3*time.Second)
		if f := anon.text("#lookup-facts"); !strings.Contains(f, "batch-42") || !strings.Contains(f, "nightly") {
			t.Errorf("facts shown: %q", f)
		}
		for _, u := range anon.requestsMatching("/v1/api/") {
			if !strings.Contains(u, "/v1/api/lock/uuid/"+id) {
				t.Errorf("an anonymous visitor's page asked for %s", u)
			}
		}
		anon.shot("10-anonymous-held")
		srv.must(t, 200, "DELETE", "lock/uuid/"+id, "", "")
		anon.waitFor("the release", `document.getElementById("lookup-state").dataset.state === "free"`, 3*time.Second)
		if ev := anon.text("#lookup-events li .ev-type"); ev != "released" {
			t.Errorf("the lock's events show %q first", ev)
		}
		anon.checkAccessibleNames("anonymous view")
		anon.shot("11-anonymous-released")
		anon.do("stop watching", chromedp.Click(chromedp.CSS("#lookup-stop")))
		anon.waitFor("the watch ends", `document.getElementById("lookup-result").hidden && document.getElementById("conn").dataset.state === "idle"`, 2*time.Second)
	})

	t.Run("the stream resumes after the server restarts", func(t *testing.T) {
		ops.t = t
		before := len(ops.streamRequests())
		// While the server is down the page's reconnects fail, as they should.
		ops.expectFailedLoad(srv.base + "/v1/api/events")
		viewer.expectFailedLoad(srv.base + "/v1/api/events")
		restarted := time.Now()
		srv.restart(t)
		// The new process knows none of the old positions: it answers the
		// resume with reset and ready, and the page lists afresh (the
		// memory engine came back empty).
		ops.waitFor("listed afresh", `document.getElementById("conn").dataset.state === "live" && document.querySelectorAll("#locks-body tr").length === 0 && document.querySelector("#events-list li.ev-system")`, 20*time.Second)
		t.Logf("live again %v after the restart began", time.Since(restarted).Round(time.Millisecond))
		reqs := ops.streamRequests()[before:]
		resumed := false
		for _, r := range reqs {
			resumed = resumed || r.lastEventID != ""
			if r.authorization != "Bearer "+k.operator {
				t.Errorf("a stream request without the key in its Authorization header: %s", r.url)
			}
		}
		if len(reqs) == 0 || !resumed {
			t.Errorf("the page reconnected without Last-Event-ID: %+v", reqs)
		}
		acquired := time.Now()
		srv.must(t, 201, "POST", "lock/key/after-restart", k.viewer, `{"holder":"ci-runner-8","expires_in":60}`)
		ops.waitFor("a new lock", `document.querySelector('#locks-body tr[data-key="key/after-restart"]')`, 2*time.Second-time.Since(acquired))
		ops.shot("12-after-restart")
	})

	t.Run("forget the key", func(t *testing.T) {
		ops.t = t
		ops.do("click Forget key", chromedp.Click(chromedp.CSS("#forget-key")))
		ops.waitFor("the signed-out view", `!document.getElementById("anonymous-view").hidden`, 2*time.Second)
		if eval[bool](ops, `sessionStorage.getItem("locklock.apiKey") !== null`) {
			t.Error("the key is still in sessionStorage")
		}
		ops.do("reload", chromedp.Navigate(srv.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#key-form")))
		time.Sleep(300 * time.Millisecond)
		if eval[bool](ops, `!document.getElementById("namespace-view").hidden`) {
			t.Error("a reload after forgetting signs in again")
		}
	})

	t.Run("nothing went wrong in the browser", func(t *testing.T) {
		for _, tb := range []*tab{ops, viewer, anon} {
			tb.t = t
			tb.checkClean(k.operator, k.viewer)
		}
	})
	t.Logf("the whole walk took %v", time.Since(start).Round(time.Millisecond))
}

// checkParser runs the page's own SSE parser and JSON reader on awkward
// input: a BOM, CRLF split across chunks, comments, multi-line data, an
// event without an id, and a fencing token beyond 2^53.
func checkParser(t *testing.T, tb *tab) {
	got := eval[string](tb, `(async () => {
		const m = await import("./api.js");
		const events = [], comments = [];
		const p = new m.SSEParser((e) => events.push(e), (c) => comments.push(c));
		for (const chunk of ["\ufeffid: 7\r", "\nevent: acquired\ndata: {\"a\":", "1}\r\n\r", "\n: ping\n\nevent: reset\ndata: {}\n", "\ndata: x\ndata: y\nretry: 900\n\n"]) p.push(chunk);
		const big = m.parseJSON('{"lock":{"fencing_token":18446744073709551615,"holder":"a\\"fencing_token\\":1"}}');
		return JSON.stringify({events, comments, retry: p.retry, token: big.lock.fencing_token, holder: big.lock.holder,
			order: m.compareTokens("18446744073709551615", "9007199254740993")});
	})()`)
	want := `{"events":[{"type":"acquired","data":"{\"a\":1}","id":"7"},{"type":"reset","data":"{}","id":"7"},{"type":"message","data":"x\ny","id":"7"}],"comments":["ping"],"retry":900,"token":"18446744073709551615","holder":"a\"fencing_token\":1","order":1}`
	if got != want {
		t.Errorf("the page's parser:\n got %s\nwant %s", got, want)
	}
}

// secondsLeft reads a countdown of the form m:ss.
func secondsLeft(t *testing.T, text string) int {
	t.Helper()
	m := regexp.MustCompile(`^(\d+):(\d\d)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("countdown %q is not m:ss", text)
	}
	var min, sec int
	fmt.Sscan(m[1], &min)
	fmt.Sscan(m[2], &sec)
	return min*60 + sec
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// luminance is the relative lightness (0–1) of a CSS rgb() colour.
func luminance(t *testing.T, css string) float64 {
	t.Helper()
	var r, g, b float64
	if _, err := fmt.Sscanf(strings.ReplaceAll(css, " ", ""), "rgb(%g,%g,%g)", &r, &g, &b); err != nil {
		t.Fatalf("colour %q: %v", css, err)
	}
	return (0.2126*r + 0.7152*g + 0.0722*b) / 255
}
