package main

import (
	"net/http"

	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/transport"
)

// keyAuthenticator is what app hands transport for store: the keys file's
// authenticator, its Caller converted to transport's.
func keyAuthenticator(store *keys.Store) func(*http.Request) (transport.Caller, error) {
	auth := keyauth.New(keyauth.Access{Keys: store})
	return func(r *http.Request) (transport.Caller, error) {
		c, err := auth(r)
		return transport.Caller(c), err
	}
}
