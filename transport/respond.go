package transport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// writeJSON sends a success body.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	writeBody(w, r, status, "application/json", v)
}

func writeBody(w http.ResponseWriter, r *http.Request, status int, contentType string, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // responses are not HTML; keep "<key>" readable
	if err := enc.Encode(v); err != nil {
		// Only our own plain structs are encoded here.
		panic(fmt.Sprintf("transport: cannot encode response: %v", err))
	}
	body := buf.Bytes()
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // a client that went away cannot be told
	}
}
