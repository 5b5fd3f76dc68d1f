package client_test

import (
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

func TestRefresh(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	target := client.UUID(u1)
	l, err := c.Acquire(t.Context(), target, client.WithTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Refresh(t.Context(), target, client.WithSecret(l.Secret), client.WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if r.FencingToken != l.FencingToken || !r.AcquiredAt.Equal(l.AcquiredAt) || !r.Protected || r.Name != u1 {
		t.Errorf("refreshed %+v, from %+v: token and acquired_at must stay", r, l)
	}
	if !r.ExpiresAt.After(l.ExpiresAt) || r.ExpiresIn < 3599 || r.ExpiresIn > 3600 {
		t.Errorf("refreshed expiry %v (in %d s), was %v", r.ExpiresAt, r.ExpiresIn, l.ExpiresAt)
	}
	if d := time.Until(r.ExpiresAt); d < time.Hour-5*time.Second || d > time.Hour {
		t.Errorf("expires in %v, want an hour from now", d)
	}
	if r.Secret != "" || r.Created {
		t.Errorf("Refresh filled in Secret %q / Created %v", r.Secret, r.Created)
	}
	stored, _ := s.stored(t, locklock.DefaultNamespace, target)
	if !stored.ExpiresAt.Equal(r.ExpiresAt) {
		t.Errorf("server has %v, client was told %v", stored.ExpiresAt, r.ExpiresAt)
	}

	// Rounded up to whole seconds, and shortening is allowed.
	r, err = c.Refresh(t.Context(), target, client.WithSecret(l.Secret), client.WithTTL(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if stored, _ := s.stored(t, locklock.DefaultNamespace, target); time.Until(stored.ExpiresAt) > 2*time.Second || time.Until(stored.ExpiresAt) < time.Second {
		t.Errorf("WithTTL(1.5s): expires at %v, %v from now", stored.ExpiresAt, time.Until(stored.ExpiresAt))
	}
	// No TTL: the server's default lifetime.
	if r, err = c.Refresh(t.Context(), target, client.WithSecret(l.Secret)); err != nil {
		t.Fatal(err)
	}
	if want := int64(locklock.DefaultTTL / time.Second); r.ExpiresIn != want && r.ExpiresIn != want-1 {
		t.Errorf("refresh without TTL: expires_in %d, want %d", r.ExpiresIn, want)
	}

	for _, opts := range [][]client.LockOption{nil, {client.WithSecret("wrong")}, {client.Unprotected()}} {
		if _, err := c.Refresh(t.Context(), target, opts...); !errors.Is(err, locklock.ErrSecretMismatch) {
			t.Errorf("refresh with %d options: %v, want ErrSecretMismatch", len(opts), err)
		}
	}
	if after, _ := s.stored(t, locklock.DefaultNamespace, target); !after.ExpiresAt.Equal(r.ExpiresAt) {
		t.Error("a refused refresh changed the lock")
	}

	// An unprotected lock is refreshed by anyone.
	if _, err := c.Acquire(t.Context(), client.UUID(u2), client.Unprotected(), client.WithTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	if r, err := s.client(t).Refresh(t.Context(), client.UUID(u2), client.WithTTL(time.Minute)); err != nil || r.ExpiresIn < 59 {
		t.Errorf("refresh of an unprotected lock: %+v %v", r, err)
	}
}

func TestReleaseAndGet(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	target := client.UUID(u1)
	l, err := c.Acquire(t.Context(), target, client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.client(t).Get(t.Context(), client.UUID(toUpper(u1)))
	if err != nil {
		t.Fatal(err)
	}
	if got.FencingToken != l.FencingToken || !got.ExpiresAt.Equal(l.ExpiresAt) || !got.AcquiredAt.Equal(l.AcquiredAt) ||
		got.Name != u1 || got.Namespace != locklock.DefaultNamespace || !got.Protected || got.Secret != "" {
		t.Errorf("get %+v, acquired %+v", got, l)
	}

	rel, err := c.Release(t.Context(), target, client.WithSecret(l.Secret))
	if err != nil {
		t.Fatal(err)
	}
	if rel.FencingToken != l.FencingToken || rel.Name != u1 || !rel.Protected || !rel.AcquiredAt.Equal(l.AcquiredAt) {
		t.Errorf("released %+v, acquired %+v", rel, l)
	}
	if _, err := c.Get(t.Context(), target); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("get after release: %v", err)
	}
	if _, err := c.Release(t.Context(), target, client.WithSecret(l.Secret)); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("second release: %v", err)
	}
	// The next holder gets a greater fencing token.
	next, err := c.Acquire(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	if next.FencingToken <= l.FencingToken {
		t.Errorf("token %d after %d", next.FencingToken, l.FencingToken)
	}
}

// An expired lock is gone: Get and Release say ErrNotFound, and it can be
// taken again.
func TestExpiredLock(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := s.client(t)
	l, err := c.Acquire(t.Context(), client.UUID(u1), client.WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(l.ExpiresAt) + 50*time.Millisecond)
	if _, err := c.Get(t.Context(), client.UUID(u1)); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("get: %v", err)
	}
	if _, err := c.Refresh(t.Context(), client.UUID(u1), client.WithSecret(l.Secret)); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("refresh: %v", err)
	}
	if next, err := s.client(t).Acquire(t.Context(), client.UUID(u1)); err != nil || !next.Created || next.FencingToken <= l.FencingToken {
		t.Errorf("acquire after expiry: %+v %v", next, err)
	}
}

func TestList(t *testing.T) {
	s := newServer(t)
	pro := s.client(t, client.WithAPIKey(s.ProKey))

	var uuids []string
	secrets := map[string]string{}
	for range 7 {
		id := newUUID(t)
		uuids = append(uuids, id)
		l, err := pro.Acquire(t.Context(), client.UUID(id))
		if err != nil {
			t.Fatal(err)
		}
		secrets[id] = l.Secret
	}
	sort.Strings(uuids)
	for _, name := range []string{"b", "a", "c.d"} {
		if _, err := pro.Acquire(t.Context(), client.Key(name)); err != nil {
			t.Fatal(err)
		}
	}
	// Someone else's locks, in other namespaces.
	if _, err := s.client(t).Acquire(t.Context(), client.UUID(u1)); err != nil {
		t.Fatal(err)
	}
	dev := s.client(t, client.WithAPIKey(s.DevKey))
	if _, err := dev.Acquire(t.Context(), client.UUID(u2)); err != nil {
		t.Fatal(err)
	}

	if _, err := s.client(t).List(t.Context(), client.ListOptions{}); !errors.Is(err, locklock.ErrUnauthorized) {
		t.Errorf("anonymous list: %v, want ErrUnauthorized", err)
	}

	// Pages of 3 in name order: 3, 3, 1, and no cursor after the last.
	var names []string
	var sizes []int
	after := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("the listing does not end")
		}
		p, err := pro.List(t.Context(), client.ListOptions{Limit: 3, After: after})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(p.Locks))
		for _, l := range p.Locks {
			if l.Namespace != "acme" || l.Kind != locklock.KindUUID || !l.Protected || l.FencingToken == 0 || l.Secret != "" {
				t.Errorf("listed %+v", l)
			}
			names = append(names, l.Name)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if !slices.Equal(names, uuids) {
		t.Errorf("listed %v, want %v", names, uuids)
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("page sizes %v, want [3 3 1]", sizes)
	}

	// Without a limit: the server's default (all 7 here), one page.
	if p, err := pro.List(t.Context(), client.ListOptions{}); err != nil || len(p.Locks) != 7 || p.Next != "" {
		t.Errorf("default list: %d locks, next %q, %v", len(p.Locks), p.Next, err)
	}
	// A prefix.
	p, err := pro.List(t.Context(), client.ListOptions{Prefix: uuids[3][:8]})
	if err != nil || len(p.Locks) == 0 {
		t.Fatalf("prefix list: %+v %v", p, err)
	}
	for _, l := range p.Locks {
		if l.Name[:8] != uuids[3][:8] {
			t.Errorf("prefix %s listed %s", uuids[3][:8], l.Name)
		}
	}
	// Key locks.
	p, err = pro.List(t.Context(), client.ListOptions{Kind: locklock.KindKey})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range p.Locks {
		keys = append(keys, l.Name)
	}
	if !slices.Equal(keys, []string{"a", "b", "c.d"}) {
		t.Errorf("key locks %v", keys)
	}
	// Another namespace sees only its own.
	p, err = dev.List(t.Context(), client.ListOptions{})
	if err != nil || len(p.Locks) != 1 || p.Locks[0].Name != u2 || p.Locks[0].Namespace != "devco" {
		t.Errorf("devco's listing: %+v %v", p, err)
	}
	// A released lock is no longer listed.
	if _, err := pro.Release(t.Context(), client.UUID(uuids[0]), client.WithSecret(secrets[uuids[0]])); err != nil {
		t.Fatal(err)
	}
	p, err = pro.List(t.Context(), client.ListOptions{Limit: 1})
	if err != nil || len(p.Locks) != 1 || p.Locks[0].Name != uuids[1] || p.Next == "" {
		t.Errorf("after releasing the first: %+v %v", p, err)
	}
}

func toUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
