package transport

import "net/http"

// whoamiJSON is GET /whoami's answer: what the caller's key (or anonymity)
// lets it do, so that a client — the dashboard — can offer only what
// will work. Never the key itself.
type whoamiJSON struct {
	Namespace   string `json:"namespace"`
	Anonymous   bool   `json:"anonymous"`
	KeyID       string `json:"key_id,omitempty"`
	Plan        string `json:"plan,omitempty"`
	CustomNames bool   `json:"custom_names"`
	Operator    bool   `json:"operator"`
}

// whoami serves GET and HEAD /whoami. It takes no query parameters.
func (h *handler) whoami(w http.ResponseWriter, r *http.Request) {
	c, err := h.caller(w, r)
	if err == nil {
		_, err = parseQuery(r.URL.RawQuery)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, whoamiJSON{
		Namespace: c.Namespace, Anonymous: c.Anonymous, KeyID: c.KeyID, Plan: c.Plan,
		CustomNames: c.CustomNames, Operator: c.Operator && !c.Anonymous,
	})
}
