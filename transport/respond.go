package transport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/locklock/locklock/locklock"
)

// writeLock sends a lock object, encoded by hand (appendLock) into a
// pooled buffer: it is most of what the server answers.
func writeLock(w http.ResponseWriter, r *http.Request, status int, l locklock.Lock) {
	writeAppended(w, r, status, func(b []byte) []byte { return appendLock(b, l) }, func() any { return lockOf(l) })
}

// writeReleased sends the answer to a release.
func writeReleased(w http.ResponseWriter, r *http.Request, l locklock.Lock) {
	writeAppended(w, r, http.StatusOK, func(b []byte) []byte {
		b = append(b, `{"released":true,"lock":`...)
		if b = appendLock(b, l); b == nil {
			return nil
		}
		return append(b, '}')
	}, func() any { return releasedJSON{Released: true, Lock: lockOf(l)} })
}

// writeAppended sends what appendBody writes, or encoding/json's encoding
// of slow() when appendBody gives up (returns nil).
func writeAppended(w http.ResponseWriter, r *http.Request, status int, appendBody func([]byte) []byte, slow func() any) {
	buf := bodies.Get().(*[]byte)
	defer bodies.Put(buf)
	body := appendBody((*buf)[:0])
	if body == nil {
		body = encode(slow())
	} else {
		body = append(body, '\n') // as json.Encoder ends every value
		*buf = body               // keep what the buffer grew to
	}
	send(w, r, status, contentJSON, body)
}

// bodies recycles answer buffers: net/http copies a body into its own
// buffer by the time Write returns.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeJSON sends any other success body, with encoding/json.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	send(w, r, status, contentJSON, encode(v))
}

func writeBody(w http.ResponseWriter, r *http.Request, status int, contentType string, v any) {
	ct := contentJSON
	if contentType != "application/json" {
		ct = []string{contentType}
	}
	send(w, r, status, ct, encode(v))
}

func encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // responses are not HTML; keep "<key>" readable
	if err := enc.Encode(v); err != nil {
		// Only our own plain structs are encoded here.
		panic(fmt.Sprintf("transport: cannot encode response: %v", err))
	}
	return buf.Bytes()
}

// Header values every answer shares. Assigning these slices directly skips
// canonicalising the (already canonical) names; net/http never changes them.
var (
	contentJSON = []string{"application/json"}
	noStore     = []string{"no-store"}
	noSniff     = []string{"nosniff"}
)

// autoLengthMax: net/http sets Content-Length itself for a body shorter than
// its 2 KiB response buffer that the handler wrote in full before
// returning — without the string and slice this would allocate. Longer
// bodies (and HEAD answers, which have none) get it from us, so that no
// answer is chunked.
const autoLengthMax = 2048

func send(w http.ResponseWriter, r *http.Request, status int, contentType []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentType
	if r.Method == http.MethodHead || len(body) >= autoLengthMax {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	h["Cache-Control"] = noStore
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // a client that went away cannot be told
	}
}
