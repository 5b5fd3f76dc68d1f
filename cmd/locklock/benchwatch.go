package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// benchStreams are the event streams a run keeps open beside its load
// (--watch, --watch-namespace): each on its own connection, read as fast as
// the server sends, counting events. They measure what watchers cost the
// server's lock operations.
type benchStreams struct {
	open           int
	events, resets atomic.Int64
	cut            atomic.Int64 // streams that ended before the run did
	cancel         context.CancelFunc
	wg             sync.WaitGroup
	tr             *http.Transport
}

// openBenchStreams opens a stream on each path, and returns once every
// stream has its first event (state or ready): the load then starts with
// all of them subscribed.
func openBenchStreams(r *benchRun, paths []string) (*benchStreams, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &benchStreams{open: len(paths), cancel: cancel}
	s.tr = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: -1, // a stream's connection is never reused
		DisableCompression:  true,
	}
	ready := make(chan error, len(paths))
	api := r.cfg.api
	for _, path := range paths {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, (&url.URL{Scheme: api.Scheme, Host: api.Host}).String()+path, nil)
		if err != nil {
			cancel()
			return nil, err
		}
		req.Header = r.plain.Clone()
		req.Header.Set("Accept", "text/event-stream")
		s.wg.Go(func() { s.read(ctx, req, ready) })
	}
	timeout := time.After(30 * time.Second)
	for range paths {
		select {
		case err := <-ready:
			if err != nil {
				s.close()
				return nil, err
			}
		case <-timeout:
			s.close()
			return nil, fmt.Errorf("event streams: not all %d streams opened within 30 s", len(paths))
		}
	}
	return s, nil
}

func (s *benchStreams) read(ctx context.Context, req *http.Request, ready chan<- error) {
	resp, err := s.tr.RoundTrip(req)
	if err != nil {
		ready <- fmt.Errorf("event stream %s: %v", req.URL.Path, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ready <- fmt.Errorf("event stream %s: status %d", req.URL.Path, resp.StatusCode)
		return
	}
	// Count frames in big reads rather than parsing lines: the readers
	// share the load generator's CPU, and must not be what limits the
	// run. Every frame but a ping has one "data:" line.
	frames := markCounter{mark: []byte("\ndata: "), tail: []byte{'\n'}} // the first line follows no newline
	resets := markCounter{mark: []byte("\nevent: reset\n")}
	buf := make([]byte, 64<<10)
	first := true
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			f, r := int64(frames.count(buf[:n])), int64(resets.count(buf[:n]))
			if first && f > 0 {
				first = false
				f-- // state or ready
				ready <- nil
			}
			s.events.Add(f - r)
			s.resets.Add(r)
		}
		if err != nil {
			break
		}
	}
	if first {
		ready <- fmt.Errorf("event stream %s ended before its first event", req.URL.Path)
		return
	}
	if ctx.Err() == nil {
		s.cut.Add(1)
	}
}

func (s *benchStreams) close() {
	s.cancel()
	s.tr.CloseIdleConnections()
	s.wg.Wait()
}

// streamPaths are the streams a run opens: one per fixed lock with --watch,
// and --watch-namespace streams of the key's namespace.
func (r *benchRun) streamPaths() []string {
	var paths []string
	if r.cfg.watch {
		for _, p := range r.keyPaths {
			paths = append(paths, p+"/events")
		}
	}
	for range r.cfg.watchNamespace {
		paths = append(paths, r.cfg.api.Path+"/events")
	}
	return paths
}

// markCounter counts a marker's occurrences in a byte stream read in pieces,
// including those split across two pieces.
type markCounter struct {
	mark []byte
	tail []byte // the last len(mark)-1 bytes seen
}

func (m *markCounter) count(b []byte) int {
	n := bytes.Count(b, m.mark)
	// Markers that cross from the last piece into this one: neither the
	// tail nor this piece's head alone is long enough to hold one.
	head := b[:min(len(b), len(m.mark)-1)]
	n += bytes.Count(append(slices.Clone(m.tail), head...), m.mark)
	k := len(m.mark) - 1
	if len(b) >= k {
		m.tail = append(m.tail[:0], b[len(b)-k:]...)
	} else {
		m.tail = append(m.tail, b...)
		m.tail = m.tail[max(0, len(m.tail)-k):]
	}
	return n
}

// settle waits, after the load, until the streams have received what was
// sent to them: a server holds a stream's writes back for a moment (250 ms
// by default) to send several events in one. It waits until their count
// has not risen for settleQuiet, at most settleMost.
func (s *benchStreams) settle() {
	const (
		settleQuiet = 600 * time.Millisecond
		settleMost  = 5 * time.Second
	)
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(settleMost); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		n := s.events.Load() + s.resets.Load()
		switch {
		case n != last:
			last, since = n, time.Now()
		case time.Since(since) >= settleQuiet:
			return
		}
	}
}
