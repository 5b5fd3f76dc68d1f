package clustertest

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// EtcdLeader returns the member that leads the etcd cluster now.
func (e *Env) EtcdLeader(ctx context.Context) (*Node, error) {
	var lastErr error
	for _, m := range e.Etcd {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := e.etcd.Status(sctx, "http://"+m.HostAddr)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		e.memberID[st.Header.MemberId] = m
		if st.Leader == 0 {
			lastErr = fmt.Errorf("%s knows no leader", m.Name)
			continue
		}
		if l, ok := e.memberID[st.Leader]; ok {
			return l, nil
		}
		lastErr = fmt.Errorf("leader %x not among the members seen so far", st.Leader)
	}
	return nil, lastErr
}

// WaitHealthy waits until all three etcd members answer and agree on a
// leader, and every locklock server is ready (its /readyz does a
// linearizable etcd read).
func (e *Env) WaitHealthy(within time.Duration) error {
	ctx, cancel := context.WithTimeout(e.ctx, within)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	var last error
	for {
		last = e.healthy(ctx, hc)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *Env) healthy(ctx context.Context, hc *http.Client) error {
	leaders := map[uint64]bool{}
	for _, m := range e.Etcd {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := e.etcd.Status(sctx, "http://"+m.HostAddr)
		cancel()
		if err != nil {
			return fmt.Errorf("etcd member %s: %w", m.Name, err)
		}
		e.memberID[st.Header.MemberId] = m
		if st.Leader == 0 {
			return fmt.Errorf("etcd member %s has no leader", m.Name)
		}
		leaders[st.Leader] = true
	}
	if len(leaders) != 1 {
		return fmt.Errorf("etcd members disagree on the leader")
	}
	for _, s := range e.Servers {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("locklock %s: %w", s.Name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("locklock %s: /readyz %d", s.Name, resp.StatusCode)
		}
	}
	return nil
}
