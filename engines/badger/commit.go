package badger

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// Group commit.
//
// With SyncWrites every Badger commit pays one fsync, and a lock step
// (acquire, release, refresh, the removal of an expired lock, a round of
// Sweep) writes a few hundred bytes: run one transaction per step and the
// disk's sync latency caps the engine, however many clients wait. So every
// writing step goes through one goroutine per engine, the committer, which
// runs whatever steps are queued (up to maxBatch) one after another, in
// arrival order, in one read-write transaction, commits it once (one write,
// one fsync), and only then answers each step. While it commits, new steps
// queue up: batches grow with the load.
//
// Invariants:
//
//   - Steps run one at a time, in arrival order, against one transaction.
//     Badger's Txn.Get answers from the transaction's own pending writes
//     first, so a step sees the effects of the steps before it in its batch,
//     exactly as if each had committed alone; pending writes are kept per key,
//     last write wins, so a lock touched several times in a batch commits
//     only its final record and index entry (put and remove keep the two
//     consistent step by step). Batches run one after another, so the order
//     of steps is one total order: arrival order within a batch, batch order
//     across batches. Fencing tokens are taken in that order, and so rise in
//     commit order (tokens.go still reserves every block on disk, in a
//     transaction of its own, before it hands out a token of it).
//   - A step is answered only after its batch has committed (is durable): no
//     success, and no answer that an earlier step of the batch decided,
//     reaches a caller for a batch that did not commit. If the commit fails
//     every step of the batch gets the storage error: the outcome is unknown,
//     as with any failed commit.
//   - A step's events (events.go) are reported only from the attempt that
//     committed, once its commit has succeeded, in step order, and before
//     any step of its batch is answered; a failed or conflicting commit, or
//     a step taken out of its batch, reports nothing.
//   - A step's error is either an answer (wrapped with answer: a live holder,
//     no such lock, a refused allow callback, a refusal for lack of space),
//     which the step decides before it writes anything, or a failure that may
//     follow a write. A failure poisons the transaction: it is discarded and
//     the batch runs again from a fresh transaction without the failed step,
//     which gets its error with nothing applied. An unmarked error is treated
//     as a failure, which is always safe (it costs a rerun). Steps decide from
//     the store and their arguments alone (the allow callbacks are pure), so
//     a rerun decides the same; only the tokens differ, as the discarded
//     attempt's are skipped (gaps are allowed).
//   - A batch that Badger finds too big (ErrTxnTooBig) commits the steps
//     before the one that overflowed it; that step and the rest go first in
//     the next batch.
//   - Only the committer writes lock records and index entries (Sweep's
//     rounds are steps too), so commits do not conflict; should one
//     (ErrConflict), the whole batch runs again from a fresh transaction.
//   - A step whose context ends while it is still queued is dropped and its
//     caller gets the context's error: nothing was applied. Once the
//     committer has taken it, the caller waits for the outcome; a commit is
//     short and cannot be interrupted halfway anyway.
//
// Pipelining. A commit is mostly waiting (the write, the sync), and
// running a batch's steps is mostly CPU: so while one batch commits, the
// committer runs the next batch's steps, in a transaction it opened just
// before that commit (Badger gives a transaction the snapshot of its start,
// and one opened after a commit has begun waits for that commit to finish).
// That snapshot lacks the batch in flight, so a step of the next batch that
// reads a lock the flight writes would decide from a stale record; Badger's
// conflict detection catches exactly that: a transaction that read a key
// committed after its start fails its commit with ErrConflict. The next
// batch is committed only after the flight has landed, and answered only
// after its own commit, so:
//   - if the flight conflicted (its own snapshot lacked the batch before
//     it), it and the batch after run again, together, in arrival order;
//   - if the next batch conflicts with the flight, it runs again on a fresh
//     snapshot;
//   - a batch that wrote nothing commits without Badger's check; its steps'
//     answers may then come from the snapshot before the flight, which is
//     linearizable: every one of them was called before the flight's steps
//     were answered, so it may take effect before them.
// In steady load two cohorts of callers alternate: one's steps run while the
// other's commit. A lock's consecutive steps by one caller never meet this
// way (the caller waits for its answer, which comes after its batch landed,
// and its next step joins a batch opened after that).
//
// Reads (Get of a live lock, List, CountHeld, Ping) stay direct read-only
// transactions and see only committed batches. That is linearizable: a step
// takes effect at its batch's commit, between its call and its answer, and a
// read that starts after an answer starts after that commit and sees it.
// Get then waits for the events of what it read to be reported (events.go).

// maxBatch bounds the steps of one transaction: at most a few writes each
// (a Sweep round: sweepBatch locks), which keeps a batch far below Badger's
// transaction limit (15 % of memTableSize, about 6,500 entries) and the
// wait of the batch's first step short.
const maxBatch = 256

// Step states: a queued step is taken by the committer or canceled by its
// caller, whichever comes first.
const (
	stepQueued int32 = iota
	stepTaken
	stepCanceled
)

// step is one caller's read-modify-write.
type step struct {
	fn    stepFunc
	state atomic.Int32
	// events are those of the changes fn made in its latest run: reported
	// once that run's batch has committed (events.go).
	events eventLog
	done   chan struct{} // closed once err (and panicked) are set
	err    error
	// panicked is what fn panicked with: re-raised in the caller's
	// goroutine, as it would have been without the committer, instead of
	// killing the process from the committer's.
	panicked any
}

var errStepPanicked = errors.New("badger engine: step panicked")

// stepFunc is a step's read-modify-write in txn; it records the events of
// the changes it makes in ev, in the order it makes them.
type stepFunc func(txn *bdg.Txn, ev *eventLog) error

// run runs the step in txn; record says whether its events are wanted (an
// engine without a sink records none). A rerun starts its events over.
func (s *step) run(txn *bdg.Txn, record bool) (err error) {
	s.events = eventLog{on: record}
	defer func() {
		if p := recover(); p != nil {
			s.panicked, err = p, errStepPanicked
		}
	}()
	return s.fn(txn, &s.events)
}

func (s *step) finish(err error) {
	s.err = err
	close(s.done)
}

// answerError marks an error a step decided before writing anything.
type answerError struct{ err error }

func (a answerError) Error() string { return a.err.Error() }
func (a answerError) Unwrap() error { return a.err }

// answer marks err as an answer: the step wrote nothing, and the batch's
// other steps can commit. Only use it before the step's first write.
func answer(err error) error { return answerError{err} }

// committer runs the engine's write steps in batches; see above.
type committer struct {
	db *bdg.DB
	// gate, when set (tests only), is received from before each batch is
	// taken, so that a test can queue steps and release them as one batch.
	gate <-chan struct{}
	// commitWith starts a batch's commit: (*bdg.Txn).CommitWith, or in
	// tests a stand-in that delays or fails it.
	commitWith func(txn *bdg.Txn, cb func(error))

	// sink receives the committed batches' events (events.go); nil: none.
	sink atomic.Pointer[locklock.EventSink]
	// lastReported is the reported channel of the flight launched last:
	// once it is closed, that flight's events and every earlier flight's
	// are reported. (The channel alone, not the flight and its steps.)
	lastReported atomic.Pointer[chan struct{}]

	mu    sync.Mutex
	queue []*step

	wake   chan struct{} // capacity 1: a step was queued
	stop   chan struct{}
	exited chan struct{}

	statsMu sync.Mutex
	stats   CommitStats
}

// startCommitter starts db's committer. gate and commitWith are for tests
// (see committer); nil: none, and Badger's CommitWith.
func startCommitter(db *bdg.DB, gate <-chan struct{}, commitWith func(*bdg.Txn, func(error))) *committer {
	if commitWith == nil {
		commitWith = (*bdg.Txn).CommitWith
	}
	c := &committer{db: db, gate: gate, commitWith: commitWith, wake: make(chan struct{}, 1), stop: make(chan struct{}), exited: make(chan struct{})}
	go c.loop()
	return c
}

// submit queues fn as one step and waits for its outcome: fn's error (an
// answer unwrapped), or the commit's. fn may run several times (reruns); only
// the run in the committed transaction counts, so fn must reset whatever it
// reports through variables it closes over.
func (c *committer) submit(ctx context.Context, fn stepFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := &step{fn: fn, done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, s)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		if s.state.CompareAndSwap(stepQueued, stepCanceled) {
			return ctx.Err() // the committer will drop it unrun
		}
		<-s.done // taken: its batch is being committed
	}
	if s.panicked != nil {
		panic(s.panicked)
	}
	return s.err
}

// close stops the committer once it is idle. The engine calls it when no
// operation is in flight, so nothing is queued; a step that still is (a
// caller that did not enter the engine) gets ErrClosed, unapplied.
func (c *committer) close() {
	close(c.stop)
	<-c.exited
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.queue {
		if s.state.CompareAndSwap(stepQueued, stepTaken) {
			s.finish(locklock.ErrClosed)
		}
	}
	c.queue = nil
}

func (c *committer) loop() {
	defer close(c.exited)
	var (
		carry []*step  // taken, not yet committed: they go first
		fl    *flight  // the batch whose commit is under way
		next  *bdg.Txn // opened just before fl's commit, for the batch after it
	)
	defer func() {
		if next != nil {
			next.Discard()
		}
	}()
	for {
		if len(carry) == 0 && !c.pending() {
			if fl != nil {
				// Nothing to run meanwhile: land it. A transaction opened
				// before its commit would miss it, so open a fresh one later.
				if next != nil {
					next.Discard()
					next = nil
				}
				if c.land(fl) != nil {
					carry = fl.steps // it conflicted: run it again
				}
				fl = nil
				continue
			}
			select {
			case <-c.wake:
				continue
			case <-c.stop:
				return
			}
		}
		if c.gate != nil && len(carry) == 0 { // steps run again pass freely
			select {
			case <-c.gate:
			case <-c.stop:
				return
			}
		}
		txn, live, results, left := c.run(next, c.take(carry))
		next = nil
		if fl != nil {
			if c.land(fl) != nil {
				// The flight conflicted, and its steps come before these,
				// which ran without its effects: run all of them again.
				if txn != nil {
					txn.Discard()
				}
				carry = append(append(slices.Clone(fl.steps), live...), left...)
				fl = nil
				continue
			}
			fl = nil
		}
		carry = left
		if txn == nil {
			continue // every step failed
		}
		next = c.db.NewTransaction(true)
		fl = c.launch(txn, live, results)
	}
}

// flight is a batch whose commit is under way.
type flight struct {
	steps   []*step
	results []error
	began   time.Time
	took    time.Duration // set before done is sent
	done    chan error
	// reported is closed once the commit's outcome is known and, if it
	// succeeded, its events have been reported.
	reported chan struct{}
}

// launch starts committing txn, which holds steps' effects. Once the commit
// has succeeded, and before land answers any step, the callback reports the
// steps' events (events.go): a flight is launched only after the one before
// it has landed, so batches report in commit order.
func (c *committer) launch(txn *bdg.Txn, steps []*step, results []error) *flight {
	reported := make(chan struct{})
	f := &flight{steps: steps, results: results, began: time.Now(), done: make(chan error, 1), reported: reported}
	// Published before the commit can become visible to readers (see
	// awaitReported).
	c.lastReported.Store(&reported)
	c.commitWith(txn, func(err error) {
		f.took = time.Since(f.began)
		if err == nil {
			c.report(steps)
		}
		close(f.reported)
		f.done <- err
	})
	return f
}

// land waits for f's commit and answers its steps. It returns ErrConflict,
// answering none, when the commit conflicted: the steps are to run again.
func (c *committer) land(f *flight) error {
	err := <-f.done
	if errors.Is(err, bdg.ErrConflict) {
		c.note(func(st *CommitStats) { st.Reruns++ })
		return err
	}
	c.note(func(st *CommitStats) { st.add(len(f.steps), f.took, err != nil) })
	if err != nil {
		err = storageErr("commit", err)
		for _, s := range f.steps {
			s.finish(err)
		}
		return nil
	}
	for i, s := range f.steps {
		s.finish(f.results[i])
	}
	return nil
}

func (c *committer) pending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) > 0
}

// take returns carry followed by queued steps, in arrival order, up to
// maxBatch in all. Steps canceled while queued are dropped.
func (c *committer) take(carry []*step) []*step {
	batch := carry
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for ; i < len(c.queue) && len(batch) < maxBatch; i++ {
		if s := c.queue[i]; s.state.CompareAndSwap(stepQueued, stepTaken) {
			batch = append(batch, s)
		}
	}
	n := copy(c.queue, c.queue[i:])
	clear(c.queue[n:])
	c.queue = c.queue[:n]
	return batch
}

// run runs batch's steps in arrival order in txn (a fresh transaction if
// txn is nil). A step that fails (not an answer) is answered with its error
// and the rest run again in a fresh transaction without it; when Badger
// finds the transaction too big, the steps from the one that overflowed it
// on are left for the next batch. It returns the transaction holding the
// effects of live, their results, and the steps left; the transaction is nil
// when no step is left to commit.
func (c *committer) run(txn *bdg.Txn, batch []*step) (_ *bdg.Txn, live []*step, results []error, left []*step) {
	live = batch
	for len(live) > 0 {
		if txn == nil {
			txn = c.db.NewTransaction(true)
		}
		began := time.Now()
		results = make([]error, 0, len(live))
		failed, failure := -1, error(nil)
		record := c.sink.Load() != nil
		for i, s := range live {
			err := s.run(txn, record)
			if a, ok := err.(answerError); ok {
				err = a.err
			} else if err != nil {
				failed, failure = i, err
				break
			}
			results = append(results, err)
		}
		ran := time.Since(began)
		c.note(func(st *CommitStats) { st.StepTime += ran })
		if failed < 0 {
			return txn, live, results, left
		}
		txn.Discard()
		txn = nil
		c.note(func(st *CommitStats) { st.Reruns++ })
		if errors.Is(failure, bdg.ErrTxnTooBig) && failed > 0 {
			left = append(slices.Clone(live[failed:]), left...)
			live = live[:failed]
		} else {
			live[failed].finish(failure)
			live = slices.Delete(live, failed, failed+1)
		}
	}
	return nil, nil, nil, left
}
