package etcd_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/internal/leakcheck"
	"github.com/locklock/locklock/locklock"
)

// TestSecretsAtRest: lock secrets live in etcd only as salted hashes. After
// acquires, refreshes, releases (right and wrong) and a waiter through the
// Service, no key or value in the whole keyspace, at any revision since the
// test began (etcd keeps overwritten and deleted values in its history until
// compaction), holds a secret or its plain SHA-256, raw, in hex or in base64.
func TestSecretsAtRest(t *testing.T) {
	endpoints := etcdtest.Endpoints(t)
	client := etcdtest.Client(t, endpoints...)
	prefix := fmt.Sprintf("/locklock-test/at-rest-%d/", time.Now().UnixNano())
	engine := etcd.New(client, etcd.WithPrefix(prefix))
	t.Cleanup(func() { _ = engine.Close() })
	svc := locklock.NewService(engine)
	first := revision(t, client) + 1

	forms := leakcheck.Run(t, svc).Forms()
	leaks, guards := keyspaceLeaks(t, client, first, prefix, forms)
	if len(leaks) > 0 {
		t.Errorf("secrets in etcd:\n%q", leaks)
	}
	// The seven acquires each stored a record (the refreshes rewrote two):
	// the scan must have seen their guards, or it proves nothing.
	if guards < 7 {
		t.Errorf("saw %d protected lock records, want at least the 7 acquired: the scan proves nothing", guards)
	}
}

// TestSecretsAtRestScanFindsPlainHashes is the control: a lock stored
// straight through the engine with the secret's plain SHA-256 as its guard
// (JSON makes it base64) is found.
func TestSecretsAtRestScanFindsPlainHashes(t *testing.T) {
	endpoints := etcdtest.Endpoints(t)
	client := etcdtest.Client(t, endpoints...)
	prefix := fmt.Sprintf("/locklock-test/at-rest-control-%d/", time.Now().UnixNano())
	engine := etcd.New(client, etcd.WithPrefix(prefix))
	t.Cleanup(func() { _ = engine.Close() })
	first := revision(t, client) + 1
	secret := "s3cret-canary-" + rand.Text()
	sum := sha256.Sum256([]byte(secret))
	now := time.Now().UTC().Truncate(time.Millisecond)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "at-rest-control"}
	if _, err := engine.TryAcquire(t.Context(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Hour), Guard: locklock.Guard(sum[:])}, now); err != nil {
		t.Fatal(err)
	}
	if leaks, _ := keyspaceLeaks(t, client, first, prefix, leakcheck.Forms(secret)); len(leaks) == 0 {
		t.Error("the plain hash stored as a guard was not found")
	}
}

func revision(t *testing.T, client *clientv3.Client) int64 {
	t.Helper()
	resp, err := client.Get(t.Context(), "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// keyspaceLeaks reads the whole keyspace at every revision from first to
// now and reports each key or value that holds a form. guards counts the
// distinct protected lock records seen under prefix.
func keyspaceLeaks(t *testing.T, client *clientv3.Client, first int64, prefix string, forms map[string][]byte) (leaks []string, guards int) {
	t.Helper()
	last := revision(t, client)
	type version struct {
		key string
		rev int64
	}
	seen := make(map[version]bool)
	for rev := first; rev <= last; rev++ {
		resp, err := client.Get(t.Context(), "\x00", clientv3.WithFromKey(), clientv3.WithRev(rev))
		if err != nil {
			t.Fatalf("read the keyspace at revision %d: %v", rev, err)
		}
		for _, kv := range resp.Kvs {
			v := version{string(kv.Key), kv.ModRevision}
			if seen[v] {
				continue
			}
			seen[v] = true
			if what := leakcheck.Find(kv.Key, forms); what != "" {
				leaks = append(leaks, fmt.Sprintf("key %q holds %s", kv.Key, what))
			}
			if what := leakcheck.Find(kv.Value, forms); what != "" {
				leaks = append(leaks, fmt.Sprintf("value of %q (revision %d) holds %s", kv.Key, kv.ModRevision, what))
			}
			var r struct{ Guard []byte }
			if bytes.HasPrefix(kv.Key, []byte(prefix)) && json.Unmarshal(kv.Value, &r) == nil && len(r.Guard) > 0 {
				guards++
			}
		}
	}
	t.Logf("read %d key versions over revisions %d to %d", len(seen), first, last)
	return leaks, guards
}
