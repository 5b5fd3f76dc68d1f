package locklock_test

import (
	"testing"

	"github.com/locklock/locklock/locklock"
)

// BenchmarkGuard: the cost of a lock's secret — salting and hashing it on
// acquire (new), checking it on release and refresh (admits).
func BenchmarkGuard(b *testing.B) {
	const secret = "J5TDAZVWQ4Y2LNXE7KRB6OHM3P" // like the Go client's random secrets (rand.Text)
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = locklock.NewGuard(secret)
		}
	})
	g := locklock.NewGuard(secret)
	b.Run("admits", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !g.Admits(secret) {
				b.Fatal("the guard refused its secret")
			}
		}
	})
}

// BenchmarkNewID: checking and canonicalizing a lock name, done on every
// request.
func BenchmarkNewID(b *testing.B) {
	for _, c := range []struct {
		name string
		kind locklock.Kind
		id   string
	}{
		{"uuid", locklock.KindUUID, "180DA65C-CF80-4997-8574-0C0801817D6F"},
		{"key", locklock.KindKey, "nightly-report:2026-11-26"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := locklock.NewID(locklock.DefaultNamespace, c.kind, c.id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
