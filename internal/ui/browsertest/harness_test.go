//go:build browser

package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/locklock/locklock/internal/keys"
)

// repoRoot is the module's root: the binary is built from there and the
// screenshots go there.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// ---- the server ----

// server is a real `locklock serve`, built from this tree.
type server struct {
	base     string // http://127.0.0.1:port
	bin      string
	keysFile string
	mu       sync.Mutex
	stderr   bytes.Buffer
	proc     *exec.Cmd
	done     chan struct{} // closed when proc has exited
}

// keyring is the keys of the test's keys file.
type keyring struct {
	operator string // namespace acme, plan ops (operator)
	viewer   string // namespace acme, plan pro (no operator)
}

// writeKeysFile writes a keys file with an operator plan, as API.md §5 and
// §11 describe it, and returns the keys (only their SHA-256 is in the file).
func writeKeysFile(t *testing.T, path string) keyring {
	t.Helper()
	var k keyring
	var err error
	if k.operator, err = keys.NewKey(); err != nil {
		t.Fatal(err)
	}
	if k.viewer, err = keys.NewKey(); err != nil {
		t.Fatal(err)
	}
	file := map[string]any{
		"anonymous": map[string]any{"plan": "developer"},
		"plans": map[string]any{
			"developer": map[string]any{"custom_names": false, "rate": 0, "burst": 0},
			"pro":       map[string]any{"custom_names": true, "rate": 0, "burst": 0},
			"ops":       map[string]any{"custom_names": true, "operator": true, "rate": 0, "burst": 0},
		},
		"keys": []map[string]any{
			{"id": "acme-ops", "namespace": "acme", "plan": "ops", "sha256": keys.HashKey(k.operator)},
			{"id": "acme-viewer", "namespace": "acme", "plan": "pro", "sha256": keys.HashKey(k.viewer)},
		},
	}
	raw, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// startServer builds cmd/locklock and serves with the memory engine on a
// free port of the loopback, with the keys file.
func startServer(t *testing.T) (*server, keyring) {
	t.Helper()
	dir := t.TempDir()
	s := &server{bin: filepath.Join(dir, "locklock"), keysFile: filepath.Join(dir, "keys.json")}
	build := exec.Command("go", "build", "-o", s.bin, "./cmd/locklock")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/locklock: %v\n%s", err, out)
	}
	k := writeKeysFile(t, s.keysFile)
	t.Cleanup(func() {
		s.stop(t, os.Kill)
		if t.Failed() {
			s.mu.Lock()
			t.Logf("server log:\n%s", s.stderr.String())
			s.mu.Unlock()
		}
	})
	s.launch(t, "127.0.0.1:0")
	return s, k
}

// launch starts the server on addr and waits until it serves.
func (s *server) launch(t *testing.T, addr string) {
	t.Helper()
	cmd := exec.Command(s.bin, "serve", "--engine", "memory", "--addr", addr,
		"--keys-file", s.keysFile, "--log-format", "json", "--log-level", "info")
	cmd.Env = append(os.Environ(), "LOCKLOCK_UI=true")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	s.proc, s.done = cmd, done
	urls := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.Write(sc.Bytes())
			s.stderr.WriteByte('\n')
			s.mu.Unlock()
			var line struct {
				Msg string `json:"msg"`
				URL string `json:"url"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "locklock serving" {
				urls <- line.URL
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case u := <-urls:
		s.base = strings.TrimSuffix(u, "/v1/api")
	case <-done:
		t.Fatalf("locklock serve exited before serving:\n%s", s.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("locklock serve did not start in 30 s")
	}
}

// stop signals the server and waits for it to exit.
func (s *server) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if s.proc == nil {
		return
	}
	_ = s.proc.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.proc.Process.Kill()
		<-s.done
		t.Errorf("locklock serve did not stop on %v", sig)
	}
	s.proc = nil
}

// restart stops the server as an operator would (SIGTERM: streams end,
// clients resume elsewhere) and starts it again on the same address. The
// memory engine comes back empty, and event positions of the old process
// mean nothing to the new one.
func (s *server) restart(t *testing.T) {
	t.Helper()
	addr := strings.TrimPrefix(s.base, "http://")
	s.stop(t, syscall.SIGTERM)
	s.launch(t, addr)
	if "http://"+addr != s.base {
		t.Fatalf("restarted on %s, not %s", s.base, addr)
	}
}

// call makes an API request the way any client would, outside the browser.
func (s *server) call(t *testing.T, method, path, key, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+"/v1/api/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// must is call that insists on a status.
func (s *server) must(t *testing.T, want int, method, path, key, body string, hdr ...string) map[string]any {
	t.Helper()
	code, out := s.call(t, method, path, key, body, hdr...)
	if code != want {
		t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, want)
	}
	return out
}

// ---- the browser ----

// startBrowser starts Debian's chromium, headless. Without it the test
// fails: `make test-ui` installs it, and a browser test that skips would
// pass for a page nobody loaded.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium on PATH (%v): `make test-ui` installs Debian's package", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("hide-scrollbars", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// tab is one browser tab with everything it did recorded: console errors,
// uncaught exceptions, JavaScript dialogs (alert, confirm), and every
// request it sent.
type tab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	origin string
	shots  string // directory of the screenshots

	mu       sync.Mutex
	problems []string
	requests []string
	streams  []streamRequest // the requests for event streams, in order
	dialogs  int
	expected map[string]bool // URLs whose failed loads a step provokes on purpose
}

// newTab opens a tab with a session storage of its own (a new tab starts
// with none), 1280×800, and records it from its first event.
func newTab(t *testing.T, browser context.Context, s *server, name, shots string) *tab {
	t.Helper()
	tb := &tab{t: t, name: name, origin: s.base, shots: shots, expected: map[string]bool{}}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithListener(tb.listen))
	t.Cleanup(cancel)
	tb.ctx = ctx
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("open tab %s: %v", name, err)
	}
	return tb
}

// listen runs in the tab's event loop: it records and returns at once.
func (tb *tab) listen(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			tb.problems = append(tb.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		tb.problems = append(tb.problems, fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		if e.Level == cdplog.EntryLevelError && !(e.Source == cdplog.EntrySourceNetwork && tb.expected[e.URL]) {
			tb.problems = append(tb.problems, fmt.Sprintf("browser log error (%s): %s %s", e.Source, e.Text, e.URL))
		}
	case *page.EventJavascriptDialogOpening:
		tb.dialogs++
		tb.problems = append(tb.problems, fmt.Sprintf("a JavaScript %s dialog opened: %q", ev.Type, ev.Message))
		// The dialog blocks the page; dismiss it from outside the loop.
		go func() {
			_, _ = chromedp.Call(tb.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}()
	case *network.EventRequestWillBeSent:
		u := ev.Request.URL
		tb.requests = append(tb.requests, u)
		if strings.HasSuffix(strings.SplitN(u, "?", 2)[0], "/events") {
			tb.streams = append(tb.streams, streamRequest{
				url:           u,
				lastEventID:   header(ev.Request.Headers, "Last-Event-ID"),
				authorization: header(ev.Request.Headers, "Authorization"),
			})
		}
		if !sameOrigin(u, tb.origin) {
			tb.problems = append(tb.problems, "a request to another origin: "+u)
		}
	}
}

// streamRequest is what a request for an event stream carried.
type streamRequest struct {
	url, lastEventID, authorization string
}

func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// streamRequests lists the tab's requests for event streams so far.
func (tb *tab) streamRequests() []streamRequest {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]streamRequest(nil), tb.streams...)
}

func sameOrigin(raw, origin string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	return u.Scheme+"://"+u.Host == origin
}

// expectFailedLoad says that a step provokes a failed load of url (the
// browser logs an error for every 4xx answer), so that it is not counted as
// a console error.
func (tb *tab) expectFailedLoad(u string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.expected[u] = true
}

// checkClean fails the test for any console error, exception, dialog or
// request to another origin, and for any URL with a secret in it.
func (tb *tab) checkClean(secrets ...string) {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, p := range tb.problems {
		tb.t.Errorf("tab %s: %s", tb.name, p)
	}
	for _, u := range tb.requests {
		for _, s := range secrets {
			if strings.Contains(u, s) || strings.Contains(u, url.QueryEscape(s)) {
				tb.t.Errorf("tab %s: an API key in a URL: %s", tb.name, u)
			}
		}
	}
	if len(tb.requests) == 0 {
		tb.t.Errorf("tab %s: no request recorded; the recorder does not work", tb.name)
	}
}

// requestsMatching lists the recorded requests whose URL contains part.
func (tb *tab) requestsMatching(part string) []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []string
	for _, u := range tb.requests {
		if strings.Contains(u, part) {
			out = append(out, u)
		}
	}
	return out
}

func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("tab %s: %s: %v", tb.name, what, err)
	}
}

// eval runs JavaScript in the page and decodes its value.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("tab %s: evaluate %s: %v", tb.name, expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds or the time is up,
// and says how long it took. (chromedp's Poll builds its predicate with new
// Function, which the page's CSP refuses, as it should.)
func (tb *tab) waitFor(what, cond string, limit time.Duration) time.Duration {
	tb.t.Helper()
	start := time.Now()
	for {
		if eval[bool](tb, "!!("+cond+")") {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			tb.shot("FAILED-" + strings.ReplaceAll(what, " ", "-"))
			tb.t.Fatalf("tab %s: %s: not within %v (%s)", tb.name, what, limit, cond)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// clearInput empties a field as a person would (select all, delete), which
// fires its input event. (chromedp's Clear resets the value attribute, not
// what was typed.)
func (tb *tab) clearInput(sel string) {
	tb.t.Helper()
	eval[bool](tb, fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.focus(); e.select(); return document.execCommand("delete"); })()`, sel))
	if v := eval[string](tb, fmt.Sprintf(`document.querySelector(%q).value`, sel)); v != "" {
		tb.t.Fatalf("tab %s: %s still holds %q", tb.name, sel, v)
	}
}

// tabTo presses Tab until the element sel has the focus, at most max
// times: the page must be usable by keyboard alone.
func (tb *tab) tabTo(sel string, max int) {
	tb.t.Helper()
	is := fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, sel)
	for i := 0; i < max; i++ {
		if eval[bool](tb, is) {
			return
		}
		tb.do("press Tab", chromedp.KeyEvent(kb.Tab))
	}
	tb.t.Fatalf("tab %s: %d presses of Tab did not reach %s", tb.name, max, sel)
}

// text is an element's textContent, or fails the test if there is none.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : "<no element>"; })()`, sel))
}

// shot saves a screenshot of the whole page as shots/<name>.png.
func (tb *tab) shot(name string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Errorf("tab %s: screenshot %s: %v", tb.name, name, err)
		return ""
	}
	return writeShot(tb.t, tb.shots, name, png)
}

// viewportShot saves what the 1280×800 viewport shows.
func (tb *tab) viewportShot(dir, name string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("tab %s: screenshot %s: %v", tb.name, name, err)
	}
	return writeShot(tb.t, dir, name, png)
}

// clearShots removes the screenshots of an earlier run, so that the
// folder shows this run's steps only.
func clearShots(t *testing.T, dir string) {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
}

func writeShot(t *testing.T, dir, name string, png []byte) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// colorScheme emulates prefers-color-scheme: "dark", "light", or "" for
// the system's.
func (tb *tab) colorScheme(scheme string) {
	tb.t.Helper()
	var features []*emulation.MediaFeature
	if scheme != "" {
		features = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}
	}
	if _, err := chromedp.Call(tb.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: features}); err != nil {
		tb.t.Fatalf("emulate prefers-color-scheme %q: %v", scheme, err)
	}
	time.Sleep(300 * time.Millisecond) // the page's colour transitions
}

// interactiveRoles are the roles a person operates; each needs a name a
// screen reader can say.
var interactiveRoles = map[string]bool{
	"button": true, "link": true, "textbox": true, "searchbox": true, "combobox": true,
	"checkbox": true, "radio": true, "switch": true, "slider": true, "spinbutton": true,
	"listbox": true, "menuitem": true, "tab": true, "option": true,
}

// checkAccessibleNames reads the accessibility tree through the DevTools
// protocol and fails for every control without a name; it answers the
// controls it checked, by role.
func (tb *tab) checkAccessibleNames(step string) map[string]int {
	tb.t.Helper()
	tree, err := chromedp.Call(tb.ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		tb.t.Fatalf("tab %s: the accessibility tree: %v", tb.name, err)
	}
	seen := map[string]int{}
	for _, n := range tree.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		role := jsonString(n.Role.Value)
		if !interactiveRoles[role] {
			continue
		}
		seen[role]++
		name := ""
		if n.Name != nil {
			name = strings.TrimSpace(jsonString(n.Name.Value))
		}
		if name == "" {
			tb.t.Errorf("tab %s, %s: a %s without an accessible name (DOM node %d)", tb.name, step, role, n.BackendDOMNodeID)
		}
	}
	return seen
}

func jsonString(raw []byte) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}
