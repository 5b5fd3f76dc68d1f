package main

import (
	"errors"
	"slices"
	"testing"
)

// TestFencedStore: the same holder may write again; once a newer holder
// has written, the older one is refused.
func TestFencedStore(t *testing.T) {
	var s fencedStore
	for _, w := range []struct {
		token uint64
		value string
		stale bool
	}{
		{7, "a", false},
		{7, "b", false}, // the same holder again
		{9, "c", false}, // the lock passed on
		{7, "d", true},  // the old holder, back from a pause
		{9, "e", false},
	} {
		if err := s.Write(w.token, w.value); errors.Is(err, errStaleToken) != w.stale {
			t.Errorf("Write(%d, %q) = %v, want stale %v", w.token, w.value, err, w.stale)
		}
	}
	if want := []string{"a", "b", "c", "e"}; !slices.Equal(s.data, want) {
		t.Errorf("stored %q, want %q", s.data, want)
	}
}
