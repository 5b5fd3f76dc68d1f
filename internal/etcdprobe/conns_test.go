package etcdprobe

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestConnsCut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	accepted := make(chan net.Conn, 4)
	for _, l := range []net.Listener{ln, other} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	conns := NewConns()
	ctx := context.Background()
	a1, err := conns.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := conns.Dial(ctx, ln.Addr().String())
	b, _ := conns.Dial(ctx, other.Addr().String())
	defer b.Close()
	var server []net.Conn
	for range 3 {
		server = append(server, <-accepted)
	}
	defer func() {
		for _, c := range server {
			c.Close()
		}
	}()

	_ = a2.Close() // closed by its owner: forgotten
	if n := conns.Cut(ln.Addr().String()); n != 1 {
		t.Errorf("Cut closed %d connections, want 1 (the other one to that address was closed already)", n)
	}
	if _, err := a1.Write([]byte("x")); err == nil {
		t.Errorf("write on a cut connection succeeded")
	}
	if _, err := b.Write([]byte("y")); err != nil {
		t.Errorf("the connection to another address was cut too: %v", err)
	}
	if n := conns.Cut(ln.Addr().String()); n != 0 {
		t.Errorf("a second Cut closed %d connections", n)
	}
	// The server ends of a1 and a2 see the end; b's sees its byte.
	for _, c := range server {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1)
		n, err := c.Read(buf)
		if c.LocalAddr().String() == other.Addr().String() {
			if n != 1 || buf[0] != 'y' {
				t.Errorf("the other address got %q, %v", buf[:n], err)
			}
		} else if err != io.EOF {
			t.Errorf("a connection to the cut address: read %q, %v; want EOF", buf[:n], err)
		}
	}
}

func TestDialAddress(t *testing.T) {
	for ep, want := range map[string]string{
		"http://10.0.0.1:2379":   "10.0.0.1:2379",
		"https://etcd-0:2379":    "etcd-0:2379",
		"127.0.0.1:2379":         "127.0.0.1:2379",
		"unix:///run/etcd.sock":  "",
		"unixs://etcd.sock:0":    "",
		"ftp://somewhere:21":     "",
		"http://[::1]:2379":      "[::1]:2379",
		"http://etcd.local:2379": "etcd.local:2379",
	} {
		if want != "" && proxied(t, want) {
			want = "" // this environment names a proxy for it: gRPC's own dialer must reach it
		}
		got, ok := DialAddress(ep)
		if got != want || ok != (want != "") {
			t.Errorf("DialAddress(%q) = %q, %v; want %q", ep, got, ok, want)
		}
	}
}

func proxied(t *testing.T, addr string) bool {
	p, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: addr}})
	if err != nil {
		t.Fatal(err)
	}
	return p != nil
}
