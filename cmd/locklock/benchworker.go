package main

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/locklock/locklock/internal/uuidtext"
)

// benchWorker is one worker: its own counters, histograms and buffers, so
// that workers share nothing but the transport.
type benchWorker struct {
	r *benchRun
	// Read by the progress line while the worker runs.
	cycles, requests, errors atomic.Int64

	hist   [numKinds]histogram
	errs   map[string]int64
	rng    *rand.ChaCha8
	path   []byte // API path of a fresh UUID lock: prefix, then the UUID
	prefix int
	due    time.Time  // under --rate: when the cycle's first request was due
	turn   int        // keyed: cycles started, to pick the next own lock
	sem    string     // semaphore: the path of the worker's own semaphore
	got    int        // bytes of the last response body in buf
	buf    [4096]byte // the start of a response body (for the problem code)
	sink   [4096]byte // the rest, discarded
}

func newBenchWorker(r *benchRun) *benchWorker {
	w := &benchWorker{r: r, errs: map[string]int64{}, rng: newBenchRand()}
	w.path = append(w.path, r.cfg.api.Path+"/lock/uuid/"...)
	w.prefix = len(w.path)
	return w
}

func newBenchRand() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never fails on supported platforms.
	return rand.NewChaCha8(seed)
}

// appendUUID appends a random version 4 UUID in its textual form.
func appendUUID(b []byte, rng *rand.ChaCha8) []byte {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], rng.Uint64())
	binary.BigEndian.PutUint64(u[8:], rng.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return uuidtext.Append(b, u)
}

// cycle is one unit of work of the run's mode.
func (w *benchWorker) cycle(index int) {
	r := w.r
	api := r.cfg.api
	switch r.cfg.mode {
	case benchHealthz:
		if w.do(kindHealthz, http.MethodGet, r.cfg.ops, r.cfg.ops.Path+"/healthz", nil, http.StatusOK) {
			w.cycles.Add(1)
		}
	case benchSemaphore:
		if w.sem == "" {
			w.sem = string(appendUUID([]byte(api.Path+"/semaphore/uuid/"), w.rng))
		}
		if !w.do(kindAcquire, http.MethodPost, api, w.sem, r.acquireBody, http.StatusCreated) {
			return
		}
		slot, ok := slotOf(w.buf[:w.got])
		if !ok {
			w.fail("201 without a slot id")
			return
		}
		if w.do(kindRelease, http.MethodDelete, api, w.sem+"/"+slot, nil, http.StatusOK) {
			w.cycles.Add(1)
		}
	case benchHold:
		if w.do(kindAcquire, http.MethodPost, api, w.freshPath(), r.acquireBody, http.StatusCreated) {
			w.cycles.Add(1)
		}
	default:
		var path string
		switch r.cfg.mode {
		case benchContended:
			path = r.keyPaths[index%len(r.keyPaths)]
		case benchKeyed:
			// Worker index owns the locks index, index + concurrency, …
			// and takes them in turn.
			share := (len(r.keyPaths) - index + len(r.workers) - 1) / len(r.workers)
			path = r.keyPaths[index+len(r.workers)*(w.turn%share)]
			w.turn++
		default:
			path = w.freshPath()
		}
		if w.do(kindAcquire, http.MethodPost, api, path, r.acquireBody, http.StatusCreated) &&
			w.do(kindRelease, http.MethodDelete, api, path, nil, http.StatusOK) {
			w.cycles.Add(1)
		}
	}
}

// waitTurn takes the next cycle's slot of the --rate schedule and sleeps
// until it is due; its first request's latency will count from then. It
// reports false when the run stopped meanwhile: the stop wakes it, since an
// idle worker's turn can be up to --concurrency slots ahead, and waiting for
// it would stretch the run past --duration and lower its reported rate.
func (w *benchWorker) waitTurn() bool {
	r := w.r
	w.due = r.start.Add(time.Duration(r.tickets.Add(1)-1) * r.interval)
	if d := time.Until(w.due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.stopped:
		}
	}
	return !r.stop.Load()
}

func (w *benchWorker) freshPath() string {
	w.path = appendUUID(w.path[:w.prefix], w.rng)
	return string(w.path)
}

// do sends one request and reads the whole answer; it reports whether the
// status was want. Latency counts from sending to the end of the body, for
// every request that got an answer.
func (w *benchWorker) do(kind int, method string, base *url.URL, path string, body []byte, want int) bool {
	req := &http.Request{
		Method:     method,
		URL:        &url.URL{Scheme: base.Scheme, Host: base.Host, Path: path},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     w.r.plain,
		Host:       base.Host,
	}
	if body != nil {
		req.Header = w.r.withBody
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	w.requests.Add(1)
	start := time.Now()
	if !w.due.IsZero() { // a cycle's first request, under --rate
		start, w.due = w.due, time.Time{}
	}
	resp, err := w.r.tr.RoundTrip(req)
	if err != nil {
		w.fail(networkError(err))
		return false
	}
	n, err := w.readBody(resp.Body)
	w.got = n
	_ = resp.Body.Close()
	if err != nil {
		w.fail(networkError(err))
		return false
	}
	w.hist[kind].record(time.Since(start))
	if resp.StatusCode != want {
		w.fail(statusError(resp.StatusCode, w.buf[:n]))
		return false
	}
	return true
}

// readBody reads a body to its end, keeping its first bytes in w.buf; an
// unread body would cost the connection.
func (w *benchWorker) readBody(body io.Reader) (int, error) {
	n := 0
	for n < len(w.buf) {
		m, err := body.Read(w.buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	for {
		_, err := body.Read(w.sink[:])
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// benchSlotLimit is the limit of --mode semaphore's semaphores: room for
// any worker's slot, so that a cycle is never refused.
const benchSlotLimit = 1000

// slotOf finds the slot id in a slot object's JSON without decoding it all
// (the bench must cost the server's side of the run little).
func slotOf(body []byte) (string, bool) {
	const field = `"slot":"`
	i := bytes.Index(body, []byte(field))
	if i < 0 {
		return "", false
	}
	rest := body[i+len(field):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

func (w *benchWorker) fail(key string) {
	w.errors.Add(1)
	w.errs[key]++
}
