package locklock

// WaitersFor is how many long-poll acquires wait for id right now; tests use
// it to check the per-lock waiter cap.
func WaitersFor(s *Service, id ID) int {
	s.waits.mu.Lock()
	defer s.waits.mu.Unlock()
	return len(s.waits.queues[lockWait(id)])
}
