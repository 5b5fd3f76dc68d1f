package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
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
	sc := bufio.NewScanner(resp.Body)
	first := true
	for sc.Scan() {
		line := sc.Bytes()
		event, ok := bytes.CutPrefix(line, []byte("event: "))
		switch {
		case !ok:
		case first:
			first = false
			ready <- nil
		case bytes.Equal(event, []byte("reset")):
			s.resets.Add(1)
		default:
			s.events.Add(1)
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
