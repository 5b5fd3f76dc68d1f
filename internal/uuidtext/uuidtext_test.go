package uuidtext

import (
	"testing"

	"github.com/locklock/locklock/locklock"
)

func TestAppend(t *testing.T) {
	u := [16]byte{0x18, 0x0d, 0xa6, 0x5c, 0xcf, 0x80, 0x49, 0x97, 0x85, 0x74, 0x0c, 0x08, 0x01, 0x81, 0x7d, 0x6f}
	got := string(Append([]byte("x/"), u))
	if got != "x/180da65c-cf80-4997-8574-0c0801817d6f" {
		t.Fatalf("Append = %q", got)
	}
	if id, err := locklock.NewID(locklock.DefaultNamespace, locklock.KindUUID, got[2:]); err != nil || id.Name != got[2:] {
		t.Errorf("the core does not take %q as a canonical UUID name: %v %v", got[2:], id, err)
	}
}
