package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// Resuming across servers (API.md §9): positions are etcd revisions, so a
// client that read up to P on one server may resume on any other. The
// Service serves what its hub retains; for the rest — a P older than that
// (from before the server started, or pushed out), or one this server's
// watch has not reached yet — it asks EventsAfter, which reads etcd's
// history with a watch of its own from P's revision, and builds the events
// exactly as the live watch does, so that they and their positions are
// the same. That watch asks for previous values (WithPrevKV): it reads
// each change once, and replays are rare, unlike the live watch.
const (
	// maxReplays is how many replays run at once; more wait their turn.
	maxReplays = 4
	// maxReplayScan bounds the changes under the prefix one replay reads
	// (with their previous values, about 600 bytes each): a resume from
	// further back starts afresh, as from a compacted revision. It keeps
	// a client that sends an old position from making the server, and
	// etcd, read unbounded history.
	maxReplayScan = 100_000
	// maxReplayEvents bounds the events one replay returns, like the
	// Service's own retention.
	maxReplayEvents = locklock.DefaultEventRetention
	// replayTimeout bounds one replay (and its wait for a turn).
	replayTimeout = 15 * time.Second
	// replayMark is the key a replay writes to know when its watch has
	// shown every change up to the revision it needs (see replay). It is
	// in the replay watch's range (locks/ … sems/) and is no lock, slot or
	// marker key: it makes no event. One key per prefix, rewritten.
	replayMark = "replay"
)

// historyGone says why a stream cannot resume.
func historyGone(format string, args ...any) error {
	return fmt.Errorf("%w: %s", locklock.ErrHistoryGone, fmt.Sprintf(format, args...))
}

// EventsAfter implements locklock.EventHistory from etcd's history: a
// compacted revision gives ErrHistoryGone, and so does a replay of more
// than maxReplayScan changes or maxReplayEvents events.
func (e *Engine) EventsAfter(ctx context.Context, f locklock.Filter, from, to locklock.Position) ([]*locklock.Event, error) {
	// Like every operation, refused after Close; but the replay itself
	// does not hold Close up: it has a watch and a timeout of its own.
	done, err := e.enter(ctx)
	if err != nil {
		return nil, err
	}
	done()
	epoch := e.feed.currentEpoch()
	if epoch == "" || from.Epoch != epoch || to.Epoch != epoch {
		return nil, historyGone("position %s is not one of this etcd cluster and prefix", from)
	}
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	if !to.After(from) {
		return nil, e.reached(ctx, from)
	}
	select {
	case e.replaying <- struct{}{}:
		defer func() { <-e.replaying }()
	case <-ctx.Done():
		return nil, storeErr(ctx, "replay events", ctx.Err())
	}
	return e.replay(ctx, f, from, to)
}

// reached checks that etcd has reached from: a position another server
// handed out, from a revision this server's watch has not shown yet.
func (e *Engine) reached(ctx context.Context, from locklock.Position) error {
	resp, err := e.client.Get(ctx, e.prefix+"token-base", clientv3.WithCountOnly())
	if err != nil {
		return storeErr(ctx, "read the revision", err)
	}
	cur := uint64(resp.Header.Revision)
	// (cur+1, 0) stands for all of cur.
	if from.Seq > cur+1 || from.Seq == cur+1 && from.Sub > 0 {
		return historyGone("position %s is ahead of etcd (revision %d)", from, cur)
	}
	return nil
}

// replay reads the events after from up to and including to from etcd's
// history.
func (e *Engine) replay(ctx context.Context, f locklock.Filter, from, to locklock.Position) ([]*locklock.Event, error) {
	// The last revision needed: to's, or the one before when to stands
	// for "everything before its revision" (Sub 0).
	last := int64(to.Seq)
	if to.Sub == 0 {
		last--
	}
	start := max(int64(from.Seq), 1)
	if last < start {
		return nil, nil
	}
	// The watch shows the changes in its range in revision order, but
	// has no change to show at last when last changed nothing there; nor
	// can etcd's progress notifications say it has passed last: etcd
	// releases without the fix of etcd-io/etcd#15220 (Debian's 3.4.23
	// among them) may send one, with the current revision, ahead of the
	// history still to be sent, and some with it do not answer a new
	// watch that has nothing to send (etcd-io/etcd#17507). So the replay
	// writes a change of its own in the range, after last (last is at
	// most the current revision): once the watch shows a change after
	// last, it has shown every change up to last. A replay to an event
	// (to.Sub > 0) needs none: the watch reaches that event.
	if to.Sub == 0 {
		if _, err := e.client.Put(ctx, e.prefix+replayMark, ""); err != nil {
			return nil, storeErr(ctx, "replay events", err)
		}
	}
	// A watcher of its own: its own gRPC stream, which Close ends.
	w := clientv3.NewWatcher(e.client)
	defer w.Close()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// Lock keys, release markers, the replay mark and slot keys: locks/
	// up to the end of sems/ (delay records sort before locks/, the token
	// base after sems/; nothing else is written between).
	wch := w.Watch(wctx, e.prefix+locksSegment,
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(e.prefix+semsSegment)),
		clientv3.WithRev(start), clientv3.WithPrevKV())
	var (
		out     []*locklock.Event
		scanned int
	)
	for {
		resp, ok := <-wch
		if !ok {
			return nil, storeErr(ctx, "replay events", errors.Join(ctx.Err(), errors.New("watch closed")))
		}
		switch err := resp.Err(); {
		case resp.CompactRevision != 0 || errors.Is(err, rpctypes.ErrCompacted):
			return nil, historyGone("etcd compacted its history past position %s", from)
		case err != nil:
			return nil, storeErr(ctx, "replay events", err)
		}
		evs := resp.Events
		for len(evs) > 0 {
			rev := evs[0].Kv.ModRevision
			if rev > last {
				return out, nil
			}
			n := 1
			for n < len(evs) && evs[n].Kv.ModRevision == rev {
				n++
			}
			if scanned += n; scanned > maxReplayScan {
				return nil, historyGone("more than %d changes since position %s", maxReplayScan, from)
			}
			for _, ev := range e.changes(rev, evs[:n], replayPast{e}) {
				ev.Pos.Epoch = from.Epoch
				if ev.Pos.After(from) && !ev.Pos.After(to) && f.Selects(ev) {
					out = append(out, ev)
				}
			}
			if len(out) > maxReplayEvents {
				return nil, historyGone("more than %d events since position %s", maxReplayEvents, from)
			}
			if rev == last {
				return out, nil
			}
			evs = evs[n:]
		}
	}
}

// replayPast is a replay's past (see changes): the previous values its
// watch carries. A delete without one (its revision was compacted) is not
// known.
type replayPast struct{ e *Engine }

func (p replayPast) lock(ev *clientv3.Event, tail string) (locklock.Lock, bool) {
	if ev.PrevKv == nil {
		return locklock.Lock{}, false
	}
	id, _ := parseTail(tail)
	l, _, err := p.e.decodeEvent(id, ev.PrevKv.Value, ev.PrevKv.CreateRevision)
	return l, err == nil
}

func (p replayPast) slot(ev *clientv3.Event, tail string) (locklock.Slot, bool) {
	if ev.PrevKv == nil {
		return locklock.Slot{}, false
	}
	id, slot, _ := parseSlotTail(tail)
	sl, _, err := p.e.decodeSlotEvent(id, slot, ev.PrevKv.Value, ev.PrevKv.CreateRevision)
	return sl, err == nil
}

func (replayPast) putLock(string, locklock.Lock) {}
func (replayPast) putSlot(string, locklock.Slot) {}
