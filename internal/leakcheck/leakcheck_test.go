package leakcheck_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/locklock/locklock/internal/leakcheck"
	"github.com/locklock/locklock/locklock"
)

// TestSecretFormsFindEncodedSecrets checks the checker: each form is found
// embedded as a store might embed it.
func TestSecretFormsFindEncodedSecrets(t *testing.T) {
	secret := "s3cret-canary-" + rand.Text()
	forms := leakcheck.Forms(secret)
	sum := sha256.Sum256([]byte(secret))
	salt := make([]byte, 16)
	for k := range 3 {
		for _, v := range [][]byte{[]byte(secret), sum[:]} {
			blob := append(append([]byte{}, salt[:k+1]...), v...) // value at offset k+1 inside a longer field
			j, _ := json.Marshal(struct{ G []byte }{blob})
			u := base64.URLEncoding.EncodeToString(blob)
			for _, stored := range [][]byte{j, []byte(u), []byte(fmt.Sprintf("x%xy", blob))} {
				if leakcheck.Find(stored, forms) == "" {
					t.Errorf("no form found in %s", stored)
				}
			}
		}
	}
	if what := leakcheck.Find([]byte(locklock.NewGuard(secret)), forms); what != "" {
		t.Errorf("the salted guard itself matched %s", what)
	}
}
