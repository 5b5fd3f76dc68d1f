package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestKill9GroupCommit is the Badger engine's durability check under group
// commit: 64 clients acquire, refresh and release locks (each name used for
// one acquire only) on a Badger-backed server that is killed with SIGKILL in
// mid-stream, three times on one directory. After each restart, for every
// lock of every round so far:
//
//   - an acknowledged acquire not acknowledged as released is held, with its
//     token and the expiry last acknowledged (an acquire's or a refresh's);
//   - an acknowledged release is gone;
//   - a request in flight at the kill went either way: an acquire is held or
//     not, a refresh kept the acknowledged expiry or a later one, a release
//     freed the lock or left it exactly as acknowledged;
//
// and every token issued after a restart is above every token seen before.
func TestKill9GroupCommit(t *testing.T) {
	dir := t.TempDir()
	var (
		locks    = map[string]*k9Lock{}
		maxToken uint64 // every token seen so far, acknowledged or found
	)
	const rounds, workers = 3, 64
	for round := range rounds {
		srv := startServer(t, "--engine", "badger", "--data-dir", dir)
		client := k9Client()
		if round > 0 {
			verifyKill9(t, client, srv.base, locks, &maxToken)
		}
		// The load: each worker works through its own locks.
		var (
			mu       sync.Mutex
			wg       sync.WaitGroup
			minToken = ^uint64(0)
			roundMax uint64
			acks     [3]int // acquires, refreshes, releases acknowledged
		)
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				for i := 0; ; i++ {
					name := fmt.Sprintf("%08x-%04x-4000-8000-%012x", w, round, i)
					url := srv.base + "/lock/uuid/" + name
					st := &k9Lock{inFlight: "acquire"}
					mu.Lock()
					locks[name] = st
					mu.Unlock()
					code, l, err := call(client, "POST", url, `{"secret":"s","expires_in":3600}`)
					if err != nil {
						return // the server died with this request in flight
					}
					mu.Lock()
					if code != http.StatusCreated {
						mu.Unlock()
						t.Errorf("acquire %s: %d", name, code)
						return
					}
					*st = k9Lock{held: true, token: l.Token, expires: l.ExpiresAt}
					minToken, roundMax = min(minToken, l.Token), max(roundMax, l.Token)
					acks[0]++
					mu.Unlock()
					// Up to two refreshes, each to a later expiry; then
					// release half of the locks.
					for j := range rng.IntN(3) {
						mu.Lock()
						st.inFlight = "refresh"
						mu.Unlock()
						body := fmt.Sprintf(`{"secret":"s","expires_in":%d}`, 3601+j)
						code, l, err := call(client, "PATCH", url, body)
						if err != nil {
							return
						}
						mu.Lock()
						if code != http.StatusOK || l.Token != st.token || l.ExpiresAt.Before(st.expires) {
							mu.Unlock()
							t.Errorf("refresh %s: %d %+v, held %+v", name, code, l, st)
							return
						}
						st.inFlight, st.expires = "", l.ExpiresAt
						acks[1]++
						mu.Unlock()
					}
					if rng.IntN(2) == 0 {
						continue
					}
					mu.Lock()
					st.inFlight = "release"
					mu.Unlock()
					code, _, err = call(client, "DELETE", url, `{"secret":"s"}`)
					if err != nil {
						return
					}
					mu.Lock()
					if code != http.StatusOK {
						mu.Unlock()
						t.Errorf("release %s: %d", name, code)
						return
					}
					st.inFlight, st.held = "", false
					acks[2]++
					mu.Unlock()
				}
			})
		}
		// Kill once the load has done enough to mean something, at a
		// different point of it each round.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			enough := acks[0] >= 300 && acks[1] >= 100 && acks[2] >= 100
			mu.Unlock()
			if enough || time.Now().After(deadline) {
				break
			}
		}
		time.Sleep(time.Duration(200*round) * time.Millisecond)
		srv.kill9(t)
		wg.Wait()
		client.CloseIdleConnections()
		t.Logf("round %d: %d acquires, %d refreshes, %d releases acknowledged before kill -9", round, acks[0], acks[1], acks[2])
		if acks[0] < 300 || acks[1] < 100 || acks[2] < 100 {
			t.Fatalf("round %d: too few acknowledged operations to mean much", round)
		}
		if minToken <= maxToken {
			t.Fatalf("round %d: token %d issued after a restart, not above %d seen before", round, minToken, maxToken)
		}
		maxToken = max(maxToken, roundMax)
		if t.Failed() {
			return
		}
	}
	srv := startServer(t, "--engine", "badger", "--data-dir", dir)
	client := k9Client()
	verifyKill9(t, client, srv.base, locks, &maxToken)
	for i := range 20 {
		name := fmt.Sprintf("ffffffff-ffff-4000-8000-%012x", i)
		code, l, err := call(client, "POST", srv.base+"/lock/uuid/"+name, "")
		if err != nil || code != http.StatusCreated {
			t.Fatalf("acquire after the last restart: %d %v", code, err)
		}
		if l.Token <= maxToken {
			t.Fatalf("token after the last restart %d, want > %d (every token issued before)", l.Token, maxToken)
		}
	}
}

// k9Lock is what the clients know of one lock.
type k9Lock struct {
	held     bool      // acquire acknowledged, release not
	token    uint64    // acknowledged
	expires  time.Time // last acknowledged expiry
	inFlight string    // the request sent and not answered when the server died
}

func k9Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// verifyKill9 checks every lock against what its client knew, settles the
// requests that were in flight by what it finds, and raises maxToken to
// every token found.
func verifyKill9(t *testing.T, client *http.Client, base string, locks map[string]*k9Lock, maxToken *uint64) {
	t.Helper()
	names := make(chan string)
	var (
		mu                              sync.Mutex
		wg                              sync.WaitGroup
		held, released, settled, failed int
	)
	for range 16 {
		wg.Go(func() {
			for name := range names {
				st := locks[name] // read only here; written below under mu
				code, l, err := call(client, "GET", base+"/lock/uuid/"+name, "")
				mu.Lock()
				if err != nil || (code != http.StatusOK && code != http.StatusNotFound) {
					t.Errorf("GET %s after kill -9: %d %v", name, code, err)
					failed++
					mu.Unlock()
					continue
				}
				found := code == http.StatusOK
				if found {
					*maxToken = max(*maxToken, l.Token)
				}
				var bad bool
				switch st.inFlight {
				case "":
					bad = found != st.held || found && (l.Token != st.token || !l.ExpiresAt.Equal(st.expires))
				case "acquire":
					// Either way; if held, it is now known.
				case "refresh":
					bad = !found || l.Token != st.token || l.ExpiresAt.Before(st.expires)
				case "release":
					bad = found && (l.Token != st.token || !l.ExpiresAt.Equal(st.expires))
				}
				if bad {
					t.Errorf("lock %s after kill -9: found %v, token %d, expires %v; the client knew %+v",
						name, found, l.Token, l.ExpiresAt, *st)
					failed++
				}
				if st.inFlight != "" {
					settled++
				}
				*st = k9Lock{held: found, token: l.Token, expires: l.ExpiresAt}
				if found {
					held++
				} else {
					released++
				}
				mu.Unlock()
			}
		})
	}
	for name := range locks {
		names <- name
	}
	close(names)
	wg.Wait()
	t.Logf("after kill -9: %d locks held, %d free (%d requests were in flight, now settled); max token %d",
		held, released, settled, *maxToken)
	if failed > 0 {
		t.FailNow()
	}
}
