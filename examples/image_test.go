//go:build image

package examples_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imageShutdownTimeout is LOCKLOCK_SHUTDOWN_TIMEOUT in
// examples/docker/Dockerfile: a stop must end within it, inside docker
// stop's default 10 s grace.
const imageShutdownTimeout = 8 * time.Second

// TestImage builds the container image with `make image`, as the README
// says, and runs it as a user would: a fresh named volume, the port
// published on 127.0.0.1 only. A lock acquired through it is still held
// after a restart (Badger on the volume), `docker stop` ends with exit code 0
// within the shutdown timeout even with a request waiting, the image is
// under 40 MB, its process is not root, and a /data it cannot write is one
// line naming the setting and exit code 1. Run by `make test-image`
// (.ci/run runs it where a Docker daemon answers).
func TestImage(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("the docker command is needed: %v", err)
	}
	run := "locklock-image-test-" + randomHex(t, 4)
	image := run // make image tags <image>:latest and <image>:<version>
	t.Cleanup(func() {
		for _, args := range [][]string{
			{"rm", "-f", run, run + "-denied"},
			{"volume", "rm", "-f", run},
		} {
			_ = exec.Command("docker", args...).Run()
		}
		// By tag, not by ID: the same build of the same commit has the ID
		// of a user's own locklock:latest, which must stay.
		out, _ := exec.Command("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", image).Output()
		for _, tag := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "rmi", tag).Run()
		}
	})

	build := exec.Command("make", "-C", "..", "image", "IMAGE="+image)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}

	var img []struct {
		Size   int64
		Config struct {
			User        string
			Healthcheck *json.RawMessage
			Labels      map[string]string
		}
	}
	inspect(t, &img, "image", "inspect", image+":latest")
	if len(img) != 1 {
		t.Fatalf("docker image inspect: %d images", len(img))
	}
	if img[0].Size >= 40<<20 {
		t.Errorf("image is %.1f MB, want under 40 MB", float64(img[0].Size)/(1<<20))
	}
	t.Logf("image %s:latest: %.1f MB, user %q, version %q", image, float64(img[0].Size)/(1<<20), img[0].Config.User, img[0].Config.Labels["org.opencontainers.image.version"])
	if img[0].Config.Healthcheck != nil {
		t.Errorf("the image has a HEALTHCHECK; probes are the orchestrator's")
	}
	if v := img[0].Config.Labels["org.opencontainers.image.version"]; v == "" || v == "unknown" {
		t.Errorf("image version label = %q, want git describe's", v)
	}

	docker(t, "volume", "create", run)
	docker(t, "run", "-d", "--name", run, "-p", "127.0.0.1::8080", "-v", run+":/data", image+":latest")
	base := publishedURL(t, run)
	waitReady(t, run, base)

	if uid := processUID(t, run); uid == 0 {
		t.Errorf("the server runs as root in the container")
	} else {
		t.Logf("server process uid %d", uid)
	}
	if out := docker(t, "exec", run, "/locklock", "version"); !strings.Contains(out, "locklock") {
		t.Errorf("locklock version in the image printed %q", out)
	}

	const lock = "/v1/api/lock/uuid/5e0b1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"
	status, body := request(t, http.MethodPost, base+lock, `{"secret":"image-test","expires_in":3600}`)
	if status != http.StatusCreated {
		t.Fatalf("acquire through the container: %d %s", status, body)
	}
	var acquired struct {
		Token     uint64 `json:"fencing_token"`
		ExpiresAt string `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(body), &acquired); err != nil || acquired.Token == 0 {
		t.Fatalf("acquire answer %s: %v", body, err)
	}

	// docker restart stops with SIGTERM and starts the same container, on
	// the same volume; the published port may change.
	docker(t, "restart", run)
	base = publishedURL(t, run)
	waitReady(t, run, base)
	status, body = request(t, http.MethodGet, base+lock, "")
	var held struct {
		Token     uint64 `json:"fencing_token"`
		ExpiresAt string `json:"expires_at"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &held) != nil {
		t.Fatalf("after a restart the lock is gone: %d %s", status, body)
	}
	if held != acquired {
		t.Fatalf("after a restart the lock is %+v, want %+v", held, acquired)
	}
	if status, body := request(t, http.MethodPost, base+lock, `{"secret":"someone-else"}`); status != http.StatusConflict {
		t.Fatalf("after a restart another secret got %d %s, want 409", status, body)
	}

	// A stop while a request waits for the held lock: the server drains
	// (the waiter gets an answer, not a cut connection) and exits 0 before
	// the shutdown timeout, so docker never needs its SIGKILL.
	waiter := make(chan string, 1)
	go func() {
		status, body := request(t, http.MethodPost, base+lock, `{"secret":"waiter","wait":30}`)
		waiter <- fmt.Sprintf("%d %s", status, body)
	}()
	time.Sleep(300 * time.Millisecond) // let the waiter reach the server
	begin := time.Now()
	docker(t, "stop", run)
	took := time.Since(begin)
	var state []struct {
		State struct {
			ExitCode  int
			OOMKilled bool
		}
	}
	inspect(t, &state, "container", "inspect", run)
	if len(state) != 1 || state[0].State.ExitCode != 0 {
		t.Fatalf("docker stop: exit state %+v, want exit code 0\n%s", state, logs(t, run))
	}
	if took >= imageShutdownTimeout {
		t.Errorf("docker stop took %v, want under the shutdown timeout %v", took, imageShutdownTimeout)
	}
	t.Logf("docker stop with a waiting request: exit code 0 after %v", took.Round(time.Millisecond))
	select {
	case got := <-waiter:
		t.Logf("the waiting request was answered: %s", strings.TrimSpace(got))
		if strings.HasPrefix(got, "0 ") {
			t.Errorf("the waiting request got no answer: %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the waiting request had no answer 5 s after the container stopped")
	}

	// A data directory the non-root user cannot write (a bind mount of a
	// directory owned by someone else): one line, exit code 1.
	// A TempDir is 0700 and the test's user's. Should the server start
	// anyway, it would serve until killed: the run is bounded.
	denied := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "run", "--name", run+"-denied", "-v", denied+":/data", image+":latest").CombinedOutput()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "locklock: --data-dir /data: ") || !strings.Contains(lines[0], "uid 65532") {
		t.Errorf("an unwritable /data: exit code %d, output:\n%s\nwant exit code 1 and one line naming --data-dir /data and uid 65532", code, out)
	} else {
		t.Logf("an unwritable /data: %s (exit code 1)", lines[0])
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// docker runs the docker command and returns its standard output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func inspect(t *testing.T, v any, args ...string) {
	t.Helper()
	if err := json.Unmarshal([]byte(docker(t, args...)), v); err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
}

func logs(t *testing.T, name string) string {
	out, _ := exec.Command("docker", "logs", name).CombinedOutput()
	return string(out)
}

// publishedURL is the container's port 8080 as published on the host,
// which must be on 127.0.0.1 only.
func publishedURL(t *testing.T, name string) string {
	t.Helper()
	addr := strings.TrimSpace(docker(t, "port", name, "8080/tcp"))
	if strings.Contains(addr, "\n") || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("port 8080 is published on %q, want 127.0.0.1 only", addr)
	}
	return "http://" + addr
}

func waitReady(t *testing.T, name, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if status, _ := request(t, http.MethodGet, base+"/readyz", ""); status == http.StatusOK {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: /readyz did not answer 200 within 20 s\n%s", name, logs(t, name))
}

// request sends one request; status 0 means it got no answer.
func request(t *testing.T, method, url, body string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// processUID reads the container's main process's real uid from the host's
// /proc.
func processUID(t *testing.T, name string) int {
	t.Helper()
	pid := strings.TrimSpace(docker(t, "inspect", "-f", "{{.State.Pid}}", name))
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatalf("the container's process status: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			uid, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatalf("no Uid line in /proc/%s/status", pid)
	return 0
}
