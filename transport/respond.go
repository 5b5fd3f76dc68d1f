package transport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// writeJSON sends a success body. The lock objects of the hot path are
// encoded by hand (appendLock), everything else by encoding/json.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var body []byte
	switch v := v.(type) {
	case lockJSON:
		body = appendLock(make([]byte, 0, 320), v)
	case releasedJSON:
		body = append(make([]byte, 0, 352), `{"released":`...)
		body = strconv.AppendBool(body, v.Released)
		body = append(body, `,"lock":`...)
		body = appendLock(body, v.Lock)
		body = append(body, '}')
	default:
		body = encode(v)
	}
	if body == nil {
		body = encode(v)
	} else {
		body = append(body, '\n') // as json.Encoder ends every value
	}
	send(w, r, status, contentJSON, body)
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

func send(w http.ResponseWriter, r *http.Request, status int, contentType []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = noStore
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // a client that went away cannot be told
	}
}
