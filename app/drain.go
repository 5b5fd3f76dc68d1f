package app

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// closeGrace bounds how long a stop waits, after cutting connections, for
// their handlers to notice and return. It is what stopping may take beyond
// --shutdown-timeout (API.md allows a second).
const closeGrace = 500 * time.Millisecond

// connTracker knows a server's open connections, through
// http.Server.ConnState, so that a stop that runs out of time can say how
// many connections it cut.
type connTracker struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed chan struct{} // closed and replaced whenever the count drops to 0
}

func newConnTracker() *connTracker {
	return &connTracker{conns: map[net.Conn]struct{}{}, closed: make(chan struct{})}
}

// track is an http.Server.ConnState hook.
func (t *connTracker) track(c net.Conn, state http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch state {
	case http.StateClosed, http.StateHijacked:
		// A connection leaves the server's hands either way; the serving
		// goroutine reports StateClosed after its handler has returned.
		delete(t.conns, c)
		if len(t.conns) == 0 {
			close(t.closed)
			t.closed = make(chan struct{})
		}
	default:
		t.conns[c] = struct{}{}
	}
}

// open counts the connections not yet closed, and returns a channel that is
// closed when none is left.
func (t *connTracker) open() (int, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.conns) == 0 {
		done := make(chan struct{})
		close(done)
		return 0, done
	}
	return len(t.conns), t.closed
}

// drain stops srv: Shutdown lets in-flight requests finish until ctx ends,
// then Close cuts every connection still open and drain returns how many
// that was. A client that stalls in mid-request (a half-sent body) is the
// client's problem: it must not keep the server from stopping, nor make the
// stop count as a failure.
func drain(ctx context.Context, srv *http.Server, conns *connTracker) int {
	if srv.Shutdown(ctx) == nil {
		return 0
	}
	cut, _ := conns.open()
	_ = srv.Close()
	// Close does not wait for handlers. Give those still reading from or
	// writing to a cut connection a moment to return, so that the engine
	// is not closed under a running request.
	if _, done := conns.open(); cut > 0 {
		select {
		case <-done:
		case <-time.After(closeGrace):
		}
	}
	return cut
}
