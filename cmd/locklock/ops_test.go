package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/keys"
)

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsScrape: /metrics serves the Prometheus text format with the
// request, acquire, engine, lock and runtime metrics after real traffic.
func TestMetricsScrape(t *testing.T) {
	srv := startServer(t, "--engine", "memory")
	c := &http.Client{Timeout: 5 * time.Second}
	url := srv.base + "/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f"
	for range 2 {
		if _, _, err := call(c, "POST", url, `{"secret":"canary-secret-1"}`); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := call(c, "POST", url, ""); err != nil {
		t.Fatal(err)
	}
	code, text := get(t, c, srv.ops+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	checkMetricsMethods(t, c, srv.ops)
	for _, want := range []string{
		`locklock_http_requests_total{code="201",method="POST",route="/v1/api/lock/uuid/{uuid}"} 1`,
		`locklock_http_requests_total{code="409",method="POST",route="/v1/api/lock/uuid/{uuid}"} 1`,
		`locklock_acquires_total{outcome="granted"} 1`,
		`locklock_acquires_total{outcome="reacquired"} 1`,
		`locklock_acquires_total{outcome="held"} 1`,
		`locklock_locks_held 1`,
		`locklock_waiters 0`,
		`locklock_engine_operation_duration_seconds_count{op="try_acquire",result="ok"} 1`,
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, leak := range []string{"180da65c", "canary-secret-1"} {
		if strings.Contains(text, leak) {
			t.Errorf("/metrics shows %q", leak)
		}
	}
}

// checkMetricsMethods: /metrics at base answers HEAD, and methods other
// than GET and HEAD get 405 with Allow, like /healthz.
func checkMetricsMethods(t *testing.T, c *http.Client, base string) {
	t.Helper()
	for _, method := range []string{"HEAD", "PUT", "POST", "TRACE", "OPTIONS", "DELETE"} {
		req, err := http.NewRequest(method, base+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if method == "HEAD" {
			if resp.StatusCode != http.StatusOK {
				t.Errorf("HEAD /metrics: %d", resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(string(body), "method_not_allowed") {
			t.Errorf("%s /metrics: %d, Allow %q, %s; want 405 method_not_allowed with Allow: GET, HEAD", method, resp.StatusCode, resp.Header.Get("Allow"), body)
		}
	}
}

// TestOpsAddr: with --ops-addr, /metrics, /healthz and /readyz move to
// their own listener and the API listener answers them 404.
func TestOpsAddr(t *testing.T) {
	srv := startServer(t, "--engine", "memory", "--ops-addr", "127.0.0.1:0")
	c := &http.Client{Timeout: 5 * time.Second}
	root := strings.TrimSuffix(srv.base, "/v1/api")
	if srv.ops == root {
		t.Fatalf("ops URL %s is the API's", srv.ops)
	}
	checkMetricsMethods(t, c, srv.ops)
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		if code, _ := get(t, c, srv.ops+path); code != http.StatusOK {
			t.Errorf("ops listener %s: %d", path, code)
		}
		if code, body := get(t, c, root+path); code != http.StatusNotFound || !strings.Contains(body, "not_found") {
			t.Errorf("API listener %s: %d %s, want 404 not_found", path, code, body)
		}
	}
	if code, _, _ := call(c, "POST", srv.base+"/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f", ""); code != http.StatusCreated {
		t.Errorf("API on the main listener: %d", code)
	}
	if code, _ := get(t, c, srv.ops+"/v1/api/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f"); code != http.StatusNotFound {
		t.Errorf("ops listener serves the API: %d", code)
	}
}

// TestPprof: --pprof serves Go's profiles on the ops listener only, and
// is refused without one.
func TestPprof(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--engine", "memory", "--pprof"}, &stdout, &stderr, noEnv); code != exitUsage || !strings.Contains(stderr.String(), "--pprof needs --ops-addr") {
		t.Errorf("--pprof without --ops-addr: exit %d, %s", code, stderr.String())
	}

	srv := startServer(t, "--engine", "memory", "--ops-addr", "127.0.0.1:0", "--pprof")
	c := &http.Client{Timeout: 10 * time.Second}
	root := strings.TrimSuffix(srv.base, "/v1/api")
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/mutex?debug=1":     "mutex",
		"/debug/pprof/profile?seconds=1": "", // a CPU profile, gzipped protobuf
		"/debug/pprof/cmdline":           "", // the test binary's command line
	} {
		code, body := get(t, c, srv.ops+path)
		if code != http.StatusOK || !strings.Contains(body, want) || len(body) == 0 {
			t.Errorf("ops listener %s: %d, %d bytes", path, code, len(body))
		}
		if code, _ := get(t, c, root+path); code != http.StatusNotFound {
			t.Errorf("API listener %s: %d, want 404", path, code)
		}
	}
}

// TestRequestLogsAndIDs: every request has an X-Request-Id (the client's
// when sane, a new one otherwise), each request is one debug line with
// that id, and neither secrets nor API keys appear anywhere in the logs.
func TestRequestLogsAndIDs(t *testing.T) {
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "keys.json")
	apiKey, err := keys.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	file := keys.Default()
	file.Keys = []keys.Key{{ID: "ci", Namespace: "acme", Plan: "pro", SHA256: keys.HashKey(apiKey)}}
	data, err := keys.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keysFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--engine", "badger", "--data-dir", filepath.Join(dir, "data"),
		"--keys-file", keysFile, "--log-level", "debug")
	secret := "canary-secret-" + hex.EncodeToString([]byte(apiKey[4:12]))
	send := func(method, path, body, requestID string, header map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if requestID != "" {
			req.Header.Set("X-Request-Id", requestID)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	auth := map[string]string{"Authorization": "Bearer " + apiKey}
	resp := send("POST", "/lock/key/job", `{"secret":"`+secret+`"}`, "client-id-42", auth)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Request-Id") != "client-id-42" {
		t.Fatalf("acquire: %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	send("DELETE", "/lock/key/job", "", "", map[string]string{"Authorization": "Bearer " + apiKey, "Locklock-Secret": "wrong-" + secret})
	send("DELETE", "/lock/key/job", `{"secret":"`+secret+`"}`, "", auth)
	send("POST", "/lock/key/job", "", "", map[string]string{"Authorization": "Bearer llk_" + secret}) // unknown key
	resp = send("GET", "/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f", "", "bad id <script>", nil)
	if id := resp.Header.Get("X-Request-Id"); id == "" || strings.ContainsAny(id, " <>") {
		t.Errorf("an insane client id was echoed or none made: %q", id)
	}

	// The lines come asynchronously; wait for the last request's.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(srv.output(), `"status":404`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := srv.output()
	if !strings.Contains(logs, `"request_id":"client-id-42"`) || !strings.Contains(logs, `"route":"/v1/api/lock/key/{name}"`) {
		t.Errorf("no request line with the client's id and the route:\n%s", logs)
	}
	if n := strings.Count(logs, `"msg":"request"`); n != 5 {
		t.Errorf("%d request lines for 5 requests", n)
	}
	sum := sha256.Sum256([]byte(secret))
	keySum := sha256.Sum256([]byte(apiKey))
	for _, leak := range []string{secret, apiKey, apiKey[4:], hex.EncodeToString(sum[:]), hex.EncodeToString(keySum[:])} {
		if strings.Contains(logs, leak) {
			t.Errorf("the logs contain %q:\n%s", leak, logs)
		}
	}
}

// TestSlowHeadersCutOff: a client that sends its headers slowly is cut off
// after --read-header-timeout.
func TestSlowHeadersCutOff(t *testing.T) {
	srv := startServer(t, "--engine", "memory", "--read-header-timeout", "300ms")
	addr := strings.TrimPrefix(strings.TrimSuffix(srv.base, "/v1/api"), "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Dribble a header byte now and then; the server must still hang up.
	go func() {
		for range 20 {
			time.Sleep(100 * time.Millisecond)
			if _, err := io.WriteString(conn, "X"); err != nil {
				return
			}
		}
	}()
	// The server hangs up: a clean close, or a reset when our dribbled
	// bytes were still unread on its side. A read timeout means it did not.
	_, err = io.ReadAll(conn)
	if elapsed := time.Since(start); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || elapsed > 2*time.Second {
		t.Fatalf("connection still open after %v (read: %v), want it closed after ~300ms", elapsed, err)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial to certFile and keyFile.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "locklock test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial is the serial of the certificate a new TLS connection gets.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test checks the serial itself
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLSReloadOnHangup: the server speaks TLS with --tls-cert/--tls-key,
// re-reads them on SIGHUP, and keeps the old pair when the new one is bad.
func TestTLSReloadOnHangup(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	srv := startServer(t, "--engine", "memory", "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(srv.base, "https://") {
		t.Fatalf("server URL %s is not https", srv.base)
	}
	addr := strings.TrimPrefix(strings.TrimSuffix(srv.base, "/v1/api"), "https://")
	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	writeCert(t, certFile, keyFile, 2)
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	srv.waitLog(t, "SIGHUP: TLS certificate reloaded")
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("after SIGHUP serial %d, want 2", got)
	}

	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	srv.waitLog(t, "SIGHUP: TLS certificate refused")
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("after a bad reload serial %d, want 2 still", got)
	}
}
