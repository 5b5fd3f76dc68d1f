package etcdtest

import (
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to an etcd client URL and can be frozen
// to play a SIGSTOPped member: while frozen, the kernel still completes TCP
// handshakes (they wait in the listen backlog), open connections stay open,
// and nothing is answered — bytes already read are held back and
// delivered, in order, on Thaw. It can also be cut (Cut: every connection
// closed and new ones refused until Restore), like a network cut the client
// notices. Clients given the proxy's URL see one member that can fail while
// the etcd behind it keeps serving others.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	thawed  chan struct{} // closed while not frozen
	cut     bool          // Cut: new connections are refused
	closing chan struct{} // closed by Close
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// NewProxy starts a proxy to the etcd client URL target (http://host:port)
// on a free loopback port. It is closed at cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{
		ln: ln, target: strings.TrimPrefix(target, "http://"),
		thawed: make(chan struct{}), closing: make(chan struct{}), conns: map[net.Conn]struct{}{},
	}
	close(p.thawed)
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// URL is the proxy's client URL, to give an etcd client.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Freeze stops all traffic through the proxy until Thaw.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
		p.thawed = make(chan struct{})
	default: // already frozen
	}
}

// Thaw lets traffic through again, what was held back first.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
	default:
		close(p.thawed)
	}
}

// Cut closes every connection through the proxy and refuses new ones until
// Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Restore accepts connections again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// gate returns when the proxy is not frozen; false when it is closing.
func (p *Proxy) gate() bool {
	p.mu.Lock()
	thawed := p.thawed
	p.mu.Unlock()
	select {
	case <-thawed:
		return true
	case <-p.closing:
		return false
	}
}

// Close stops the proxy and cuts every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.closing:
		p.mu.Unlock()
		return
	default:
	}
	close(p.closing)
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers c so that Close and Cut cut it; false (and c closed) if
// the proxy is closing or cut.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closing:
		_ = c.Close()
		return false
	default:
	}
	if p.cut {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept() {
	for {
		// A frozen process accepts nothing: the connection waits in the
		// backlog, as it would, until the thaw.
		if !p.gate() {
			return
		}
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			select {
			case <-p.closing:
				return
			default:
				continue // cut: refused
			}
		}
		p.wg.Go(func() { p.serve(in) })
	}
}

func (p *Proxy) serve(in net.Conn) {
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = in.Close()
		return
	}
	if !p.track(out) {
		_ = in.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(out, in) })
	wg.Go(func() { p.pipe(in, out) })
	wg.Wait()
	_ = in.Close()
	_ = out.Close()
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}

// pipe copies from src to dst, holding each chunk while the proxy is
// frozen; when either side ends it ends both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a cut: either way the other direction ends too
		}
	}
}
