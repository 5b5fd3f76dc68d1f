package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/etcdtest"
)

// TestThreeEtcdServersAgree: three `locklock serve --engine etcd` processes
// on one etcd behave as one lock service.
func TestThreeEtcdServersAgree(t *testing.T) {
	endpoints := strings.Join(etcdtest.Endpoints(t), ",")
	prefix := fmt.Sprintf("/locklock-cmd-test/%d/", time.Now().UnixNano())
	var servers []*serverProcess
	for range 3 {
		servers = append(servers, startServer(t, "--engine", "etcd", "--etcd-endpoints", endpoints, "--etcd-prefix", prefix))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}, Timeout: 10 * time.Second}
	const lock = "/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f"

	for _, s := range servers {
		resp, err := client.Get(strings.TrimSuffix(s.base, "/v1/api") + "/readyz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("readyz: %v %v", resp, err)
		}
		resp.Body.Close()
	}

	t.Run("one winner across servers", func(t *testing.T) {
		codes := race(t, 99, func(i int) (string, string) {
			return servers[i%3].base + lock, fmt.Sprintf(`{"secret":"r%d"}`, i)
		})
		if codes[201] != 1 || codes[409] != 98 {
			t.Fatalf("status counts %v, want exactly one 201 and 98 409", codes)
		}
	})

	t.Run("API through each server", func(t *testing.T) {
		name := "/lock/uuid/28e5a3c1-0b7e-4c43-9d4e-7a7b9e2f6a11"
		a, b, c := servers[0].base+name, servers[1].base+name, servers[2].base+name
		code, l, err := call(client, "POST", a, `{"secret":"s","expires_in":60}`)
		if err != nil || code != 201 {
			t.Fatalf("acquire on A: %d %v", code, err)
		}
		if code, _, _ := call(client, "POST", b, `{"secret":"other"}`); code != 409 {
			t.Errorf("acquire on B: %d, want 409", code)
		}
		if code, again, _ := call(client, "POST", c, `{"secret":"s"}`); code != 200 || again.Token != l.Token {
			t.Errorf("retry with the same secret on C: %d token %d, want 200 token %d", code, again.Token, l.Token)
		}
		if code, got, _ := call(client, "GET", c, ""); code != 200 || got.Token != l.Token {
			t.Errorf("get on C: %d token %d, want 200 token %d", code, got.Token, l.Token)
		}
		if code, got, _ := call(client, "PATCH", b, `{"secret":"s","expires_in":120}`); code != 200 || got.Token != l.Token {
			t.Errorf("refresh on B: %d token %d, want 200, same token", code, got.Token)
		}
		if code, _, _ := call(client, "DELETE", c, `{"secret":"wrong"}`); code != 403 {
			t.Errorf("release with the wrong secret on C: %d, want 403", code)
		}
		if code, _, _ := call(client, "DELETE", b, `{"secret":"s"}`); code != 200 {
			t.Errorf("release on B: %d, want 200", code)
		}
		if code, _, _ := call(client, "GET", a, ""); code != 404 {
			t.Errorf("get on A after release: %d, want 404", code)
		}
	})

	t.Run("tokens rise across servers", func(t *testing.T) {
		var last uint64
		for i := range 12 {
			url := servers[i%3].base + "/lock/uuid/3c2b1a00-0000-4000-8000-000000000001"
			code, l, err := call(client, "POST", url, "")
			if err != nil || code != 201 {
				t.Fatalf("acquire %d: %d %v", i, code, err)
			}
			if l.Token <= last {
				t.Fatalf("acquire %d on server %d: token %d, want > %d", i, i%3, l.Token, last)
			}
			last = l.Token
			if code, _, err := call(client, "DELETE", servers[(i+1)%3].base+"/lock/uuid/3c2b1a00-0000-4000-8000-000000000001", ""); err != nil || code != 200 {
				t.Fatalf("release %d: %d %v", i, code, err)
			}
		}
	})
}

// TestUnreachableEtcdServer: a server whose etcd does not answer says 503
// unavailable with Retry-After, and is alive but not ready.
func TestUnreachableEtcdServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	srv := startServer(t, "--engine", "etcd", "--etcd-endpoints", dead, "--etcd-request-timeout", "300ms")
	root := strings.TrimSuffix(srv.base, "/v1/api")
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range []struct {
		method, url string
		want        int
	}{
		{"POST", srv.base + "/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f", 503},
		{"GET", srv.base + "/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f", 503},
		{"DELETE", srv.base + "/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f", 503},
		{"GET", root + "/readyz", 503},
		{"GET", root + "/healthz", 200},
	} {
		req, _ := http.NewRequest(c.method, c.url, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want || (c.want == 503 && resp.Header.Get("Retry-After") == "") {
			t.Errorf("%s %s: %d (Retry-After %q), want %d", c.method, c.url, resp.StatusCode, resp.Header.Get("Retry-After"), c.want)
		}
	}
}

// TestEtcdWithAuthDownAtStart: with etcd authentication on, a server
// started while etcd is down starts anyway, unready, and serves once etcd
// answers — as without authentication — instead of exiting (etcd's client
// signs in before it returns: a clustered deployment would crash-loop
// while etcd rolls).
func TestEtcdWithAuthDownAtStart(t *testing.T) {
	const prefix, user, password = "/locklock-auth/", "locklock", "a-password-for-etcd"
	member := etcdtest.WithAuth(t, prefix, user, password)
	member.Stop()

	t.Setenv("LOCKLOCK_ETCD_PASSWORD", password) // the child inherits it
	srv := startServer(t, "--engine", "etcd", "--etcd-endpoints", member.ClientURL, "--etcd-prefix", prefix,
		"--etcd-username", user, "--etcd-dial-timeout", "500ms", "--etcd-request-timeout", "500ms")
	root := strings.TrimSuffix(srv.base, "/v1/api")
	client := &http.Client{Timeout: 10 * time.Second}
	status := func(method, url string) int {
		req, _ := http.NewRequest(method, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	time.Sleep(time.Second) // past the dial timeout, when the server used to exit
	if got := status("GET", root+"/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("readyz with etcd down: %d, want 503", got)
	}

	member.Restart(t)
	deadline := time.Now().Add(20 * time.Second)
	for status("GET", root+"/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("readyz not 200 within 20 s of etcd starting; server log:\n%s", srv.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := status("POST", srv.base+"/lock/uuid/4a8d1f0e-6b3c-4e2a-9f7d-1c5b8e0a2d36"); got != http.StatusCreated {
		t.Fatalf("acquire once etcd answers: %d, want 201", got)
	}
}
