package transport

import (
	"time"

	"github.com/locklock/locklock/locklock"
)

// slotJSON is the slot object of API.md §10, built field by field from
// locklock.Slot so that the guard can never leak into a response.
type slotJSON struct {
	Namespace    string        `json:"namespace"`
	Kind         locklock.Kind `json:"kind"`
	Name         string        `json:"name"`
	Slot         string        `json:"slot"`
	Limit        int           `json:"limit"`
	Weight       int           `json:"weight"`
	AcquiredAt   string        `json:"acquired_at"`
	ExpiresAt    string        `json:"expires_at"`
	ExpiresIn    int64         `json:"expires_in"`
	FencingToken uint64        `json:"fencing_token"`
	Protected    bool          `json:"protected"`
	// Holder and Metadata appear only when set, as on a lock.
	Holder   string            `json:"holder,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func slotOf(s locklock.Slot) slotJSON {
	return slotJSON{
		Namespace:    s.Semaphore.Namespace,
		Kind:         s.Semaphore.Kind,
		Name:         s.Semaphore.Name,
		Slot:         s.ID,
		Limit:        s.Limit,
		Weight:       s.Weight,
		AcquiredAt:   formatTime(s.AcquiredAt),
		ExpiresAt:    formatTime(s.ExpiresAt),
		ExpiresIn:    int64(s.Remaining() / time.Second), // whole seconds, rounded down
		FencingToken: s.Token,
		Protected:    s.Protected(),
		Holder:       s.Holder,
		Metadata:     s.Metadata,
	}
}

// semaphoreJSON is a semaphore with a page of its slots, by fencing token.
// Next, the after of the following page, is omitted on the last page.
type semaphoreJSON struct {
	Namespace string        `json:"namespace"`
	Kind      locklock.Kind `json:"kind"`
	Name      string        `json:"name"`
	Limit     int           `json:"limit"`
	InUse     int           `json:"in_use"`
	Slots     []slotJSON    `json:"slots"`
	Next      string        `json:"next,omitempty"`
}

func semaphoreOf(s locklock.Semaphore) semaphoreJSON {
	out := semaphoreJSON{
		Namespace: s.Namespace, Kind: s.Kind, Name: s.Name, Limit: s.Limit, InUse: s.InUse,
		Slots: make([]slotJSON, 0, len(s.Slots)), Next: s.Next,
	}
	for _, sl := range s.Slots {
		out.Slots = append(out.Slots, slotOf(sl))
	}
	return out
}

type releasedSlotJSON struct {
	Released bool     `json:"released"`
	Slot     slotJSON `json:"slot"`
}

// semaphoreSummaryJSON is a semaphore in GET /semaphores: its slots
// counted, not listed.
type semaphoreSummaryJSON struct {
	Name  string        `json:"name"`
	Kind  locklock.Kind `json:"kind"`
	Limit int           `json:"limit"`
	InUse int           `json:"in_use"`
	Slots int           `json:"slots"`
}

// semaphoreListJSON is one page of GET /semaphores. Next is omitted on the
// last page.
type semaphoreListJSON struct {
	Semaphores []semaphoreSummaryJSON `json:"semaphores"`
	Next       string                 `json:"next,omitempty"`
}
