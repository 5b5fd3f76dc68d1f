package etcdprobe

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Conns dials the etcd client's connections (give Dial to
// grpc.WithContextDialer) and remembers them per address, so that the
// prober can cut the connections to a member it leaves out.
//
// Leaving a member out of the client's endpoints only stops new requests
// from going to it: gRPC lets the requests already on its connection run
// until they end, and on a frozen member they end only at their deadline.
// Cutting the connection ends them at once, with codes.Unavailable. That is
// safe where cancelling them would not be: etcd's client retries a request
// whose attempt was cancelled, writes included, on another member — a
// write the frozen member may still apply when it thaws — but it retries a
// write that failed as Unavailable on an open connection never, only reads.
// So a stuck write fails (its outcome unknown, as after a timeout) and a
// stuck read is asked again of a member that answers.
type Conns struct {
	dialer net.Dialer

	mu     sync.Mutex
	byAddr map[string]map[*trackedConn]struct{}
}

// NewConns returns a dialer that makes plain TCP connections.
func NewConns() *Conns {
	return &Conns{byAddr: map[string]map[*trackedConn]struct{}{}}
}

// Dial connects to addr (host:port) over TCP.
func (c *Conns) Dial(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t := &trackedConn{Conn: conn, owner: c, addr: addr}
	c.mu.Lock()
	if c.byAddr[addr] == nil {
		c.byAddr[addr] = map[*trackedConn]struct{}{}
	}
	c.byAddr[addr][t] = struct{}{}
	c.mu.Unlock()
	return t, nil
}

// Cut closes every open connection to addr and says how many there were.
func (c *Conns) Cut(addr string) int {
	c.mu.Lock()
	conns := c.byAddr[addr]
	delete(c.byAddr, addr)
	c.mu.Unlock()
	for t := range conns {
		_ = t.Conn.Close()
	}
	return len(conns)
}

type trackedConn struct {
	net.Conn
	owner *Conns
	addr  string
}

func (t *trackedConn) Close() error {
	t.owner.mu.Lock()
	delete(t.owner.byAddr[t.addr], t)
	if len(t.owner.byAddr[t.addr]) == 0 {
		delete(t.owner.byAddr, t.addr)
	}
	t.owner.mu.Unlock()
	return t.Conn.Close()
}

// DialAddress is the address etcd's client dials for endpoint ep
// (http://host:port, https://host:port or host:port): host:port. ok is
// false for a unix socket, or an endpoint that gRPC would reach through an
// HTTP proxy named in the environment (HTTPS_PROXY, NO_PROXY): a dialer of
// one's own replaces gRPC's proxy support, so Conns must not be used then.
func DialAddress(ep string) (addr string, ok bool) {
	if strings.HasPrefix(ep, "unix") {
		return "", false
	}
	addr = ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return "", false
		}
		addr = u.Host
	}
	// What gRPC asks the environment for every address it dials.
	proxy, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: addr}})
	if err != nil || proxy != nil {
		return "", false
	}
	return addr, true
}
