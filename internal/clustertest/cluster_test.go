//go:build cluster

package clustertest_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/locklock/locklock/app"
	"github.com/locklock/locklock/internal/clustertest"
	"github.com/locklock/locklock/internal/lockmodel"
)

// Thresholds the run must reach for its verdict to mean something.
const (
	minOps    = 1000
	minFaults = 3
)

// slack is how long past expires_at etcd may still hold a lock, for the
// lock model: etcd ends expired leases on a 500 ms cycle through a raft
// proposal, and a new leader restarts every lease's countdown (lease
// checkpointing is off by default) after an election that may begin up to
// an election timeout after the old leader stopped. A lock may therefore
// outlive its expires_at by about its TTL again plus an election and the
// cycle. The slack only lets "held" answers come later; a lock that frees
// before expires_at is never allowed.
const slack = 2*clustertest.MaxTTL + clustertest.ElectionTimeout + 2*time.Second

// TestCluster: 3 etcd members and 3 `locklock serve --engine etcd` servers
// in containers; clients drive a mixed history through all three servers
// while a nemesis kills, freezes and cuts off one process at a time; the
// history must be linearizable under the lock model, no two grants may be
// held at once, the fenced resource must refuse every stale write and no
// on-time one, and after each fault heals every server must grant a lock
// within a TTL plus an election timeout.
func TestCluster(t *testing.T) {
	cycles := 2
	if v := os.Getenv("LOCKLOCK_CLUSTER_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("LOCKLOCK_CLUSTER_CYCLES=%q: want a positive number", v)
		}
		cycles = n
	}
	// The verdict is the last line the test prints: after the cleanup
	// (cleanups run last registered, first run), after the figures of the
	// frozen-member phase.
	var (
		line   string
		frozen []string
	)
	t.Cleanup(func() {
		for _, l := range frozen {
			fmt.Println(l)
		}
		if line != "" {
			fmt.Println(line)
		}
	})
	begin := time.Now()
	env := clustertest.Start(t)
	var urls []string
	for _, s := range env.Servers {
		urls = append(urls, s.URL())
	}
	wl, err := clustertest.NewWorkload(urls)
	if err != nil {
		t.Fatal(err)
	}
	nemesis, err := clustertest.NewNemesis(env, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The servers' etcd member probe, as the figures name it.
	probe := app.DefaultConfig().Etcd.ProbeInterval.String()
	if env.ProbeInterval != "" {
		d, _ := time.ParseDuration(env.ProbeInterval) // Start checked it
		probe = d.String()
		if d == 0 {
			probe = "off"
		}
	}
	t.Logf("history: %d clients (%d pausing past their TTL) on %d locks, TTLs 2-3 s, through %d servers; %d cycles of %d faults, then %d frozen etcd members (servers' etcd probe: %s)",
		clustertest.Workers+clustertest.SlowHolders, clustertest.SlowHolders, clustertest.LockNames, len(urls), cycles, len(clustertest.Schedule), len(clustertest.FrozenPhase), probe)
	stop, done := make(chan struct{}), make(chan struct{})
	recordBegin := time.Now()
	go func() {
		defer close(done)
		wl.Run(ctx, stop)
	}()
	faults := nemesis.Run(ctx, cycles)
	time.Sleep(clustertest.Quiet)
	close(stop)
	<-done
	ops := wl.Ops()
	notSent, internal, bad := wl.Stats()
	t.Logf("recorded %d operations in %v (%d more refused at connect, left out)", len(ops), time.Since(recordBegin).Round(time.Second), notSent)
	logOutcomes(t, ops)
	for _, s := range bad {
		t.Errorf("answer that means the test is wrong: %s", s)
	}
	for i, s := range internal {
		if i < 10 {
			t.Logf("500 internal (recorded as unknown): %s", s)
		}
	}

	// No two holders at once, from the answers alone.
	grants := clustertest.HeldIntervals(ops)
	overlaps := clustertest.DoubleHolds(grants)
	held := 0
	for _, gs := range grants {
		for _, g := range gs {
			if g.Held() {
				held++
			}
		}
	}
	t.Logf("double-hold check: %d grants, %d with a certain holding interval, %d overlapping pairs", countGrants(grants), held, len(overlaps))
	for i, o := range overlaps {
		if i == 10 {
			break
		}
		t.Errorf("two holders at once:\n  %s  held [%s, %s)\n  %s  held [%s, %s)", o.A.Op, clock(o.A.Start), clock(o.A.End), o.B.Op, clock(o.B.Start), clock(o.B.End))
	}
	for i, r := range clustertest.TokenRegressions(grants) {
		if i == 10 {
			break
		}
		t.Errorf("fencing token did not rise: %s, then %s", r[0].Op, r[1].Op)
	}

	// The fenced resource.
	fencing := wl.Resource.Report(grants)
	t.Log(fencing)
	if fencing.StaleAccepted > 0 {
		t.Errorf("the fenced resource took %d stale writes", fencing.StaleAccepted)
	}
	for _, w := range fencing.Refused {
		t.Errorf("on-time write refused: worker %d wrote lock %s with token %d at %s, the resource had seen %d",
			w.Worker, w.Name, w.Token, clock(w.At), w.Highest)
	}
	if fencing.Late == 0 {
		t.Errorf("no paused holder ever wrote late: the fencing check saw nothing to stop")
	}

	// Linearizability under the lock model.
	hist := make([]lockmodel.HistoryOp, len(ops))
	for i, op := range ops {
		hist[i] = op.HistoryOp
	}
	checkBegin := time.Now()
	res, info := lockmodel.Check(hist, slack, 3*time.Minute)
	linearizable := res == porcupine.Ok
	t.Logf("porcupine: %v in %v (slack past expires_at %v)", res, time.Since(checkBegin).Round(time.Millisecond), slack)
	if !linearizable {
		reportNonLinearizable(t, res, info, hist)
	}

	// The checks must not be vacuous on this history: with one 409 turned
	// into a 201 while another client held the lock, both must object.
	if forged, at, ok := clustertest.ForgeDoubleGrant(ops); ok {
		fhist := make([]lockmodel.HistoryOp, len(forged))
		for i, op := range forged {
			fhist[i] = op.HistoryOp
		}
		n := len(clustertest.DoubleHolds(clustertest.HeldIntervals(forged)))
		fres, _ := lockmodel.Check(fhist, slack, time.Minute)
		t.Logf("sanity: the same history with one forged grant (%s): %d double holds, porcupine %v", at, n, fres)
		if n == 0 || fres == porcupine.Ok {
			t.Errorf("the checks missed a forged double grant: %d double holds, porcupine %v", n, fres)
		}
	} else {
		t.Errorf("no 409 given while another client held a lock: the history is too tame to check")
	}

	// Availability after each fault heals.
	t.Logf("faults (times to the first granted acquire through locklock0..2; failover counts from injection, '-' for the server at fault):")
	for i, f := range faults {
		t.Logf("  %2d %s", i+1, f)
		if f.Err != nil {
			t.Errorf("fault %d (%s): %v", i+1, f.Kind, f.Err)
		}
		answered, total := 0, 0
		for _, op := range ops {
			// Once the election a fault may cause is over.
			if op.CallAt.After(f.Injected.Add(2*clustertest.ElectionTimeout)) && op.CallAt.Before(f.Healed) {
				total++
				if op.Outcome != lockmodel.Unknown {
					answered++
				}
			}
		}
		if total > 0 {
			t.Logf("     while it lasted (from 2 s after injection): %d of %d requests answered (%.0f%%)", answered, total, 100*float64(answered)/float64(total))
		}
		for s, d := range f.Recovery {
			if d < 0 || d > clustertest.AvailabilityBound {
				t.Errorf("fault %d (%s): an acquire through locklock%d succeeded %v after healing, want within %v (TTL %v + election timeout %v)",
					i+1, f.Kind, s, d, clustertest.AvailabilityBound, clustertest.MaxTTL, clustertest.ElectionTimeout)
			}
		}
	}

	// What a frozen member cost, measured and printed, not asserted: the
	// target is throughput ≥ 0.5 of normal and p99 ≤ 2000 ms.
	for _, f := range faults {
		if f.Kind.Role() == "" || f.Err != nil {
			continue
		}
		fig := clustertest.MeasureFrozen(ops, f, clustertest.FrozenQuiet, probe)
		t.Log(fig)
		frozen = append(frozen, fig.String())
	}

	if path := os.Getenv("LOCKLOCK_CLUSTER_DUMP"); path != "" || t.Failed() {
		if path == "" {
			path = fmt.Sprintf("%s/locklock-cluster-%s.txt", os.TempDir(), env.RunID)
		}
		if err := dump(path, ops, grants, wl.Resource.Writes(), faults); err != nil {
			t.Logf("dump: %v", err)
		} else {
			t.Logf("the whole history, lock by lock, is in %s", path)
		}
	}

	t.Logf("whole run, builds included: %v", time.Since(begin).Round(time.Second))
	line = fmt.Sprintf("cluster history: ops=%d faults=%d double_holds=%d linearizable=%t", len(ops), len(faults), len(overlaps), linearizable)
	switch {
	case len(overlaps) != 0 || !linearizable:
		t.Errorf("%s: want double_holds=0 and linearizable=true", line)
	case len(ops) < minOps || len(faults) < minFaults:
		t.Errorf("%s: want ops ≥ %d and faults ≥ %d", line, minOps, minFaults)
	}
}

func countGrants(grants map[string][]clustertest.Grant) int {
	n := 0
	for _, gs := range grants {
		n += len(gs)
	}
	return n
}

func logOutcomes(t *testing.T, ops []clustertest.Op) {
	counts := map[string]int{}
	lat := map[string][]time.Duration{}
	for _, op := range ops {
		if op.Outcome != lockmodel.Unknown {
			k := [...]string{"acquire", "release", "refresh"}[op.Kind]
			if op.Wait > 0 {
				k += "+wait"
			}
			lat[k] = append(lat[k], op.ReturnAt.Sub(op.CallAt))
		}
		counts[[...]string{"acquire", "release", "refresh"}[op.Kind]+"/"+op.Outcome.String()]++
		if op.Wait > 0 {
			counts["acquire with wait"]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%d", k, counts[k])
	}
	t.Logf("outcomes:%s", s)
	s = ""
	for _, k := range []string{"acquire", "acquire+wait", "release", "refresh"} {
		d := lat[k]
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		s += fmt.Sprintf(" %s p50=%v p99=%v", k, d[len(d)/2].Round(time.Millisecond), d[len(d)*99/100].Round(time.Millisecond))
	}
	t.Logf("latency of answered requests:%s", s)
}

func reportNonLinearizable(t *testing.T, res porcupine.CheckResult, info porcupine.LinearizationInfo, hist []lockmodel.HistoryOp) {
	t.Helper()
	if res == porcupine.Unknown {
		t.Errorf("porcupine gave up before deciding: linearizable=false")
		return
	}
	t.Errorf("the history is not linearizable under the lock model")
	model := lockmodel.Model()
	for _, part := range info.PartialLinearizationsOperations() {
		if len(part) == 0 {
			continue
		}
		longest := slices.MaxFunc(part, func(a, b []porcupine.Operation) int { return len(a) - len(b) })
		for _, op := range longest[max(0, len(longest)-5):] {
			t.Logf("  end of the longest linearizable prefix: %s", model.DescribeOperation(op.Input, op.Output))
		}
	}
	path := os.Getenv("LOCKLOCK_LIN_DUMP")
	if path == "" {
		path = fmt.Sprintf("%s/locklock-cluster-history-%d.txt", os.TempDir(), time.Now().Unix())
	}
	if err := lockmodel.Dump(path, hist, slack, info); err != nil {
		t.Logf("dump history: %v", err)
	} else {
		t.Logf("the failing partitions are in %s", path)
	}
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

// dump writes the history lock by lock in call order, with each grant's
// certain interval and the writes to the fenced resource, for reading a
// failure.
func dump(path string, ops []clustertest.Op, grants map[string][]clustertest.Grant, writes []clustertest.Write, faults []clustertest.Fault) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for i, fl := range faults {
		fmt.Fprintf(f, "fault %d: %s %s injected %s healed %s\n", i+1, fl.Kind, fl.Target, clock(fl.Injected), clock(fl.Healed))
	}
	type line struct {
		at time.Time
		s  string
	}
	byName := map[string][]line{}
	for _, op := range ops {
		s := op.String()
		if op.Err != "" {
			s += " err=" + op.Err
		}
		byName[op.Name] = append(byName[op.Name], line{op.CallAt, s})
	}
	for name, gs := range grants {
		for _, g := range gs {
			byName[name] = append(byName[name], line{g.Start, fmt.Sprintf("  grant token=%d c%d held [%s, %s)", g.Op.Token, g.Op.Client, clock(g.Start), clock(g.End))})
		}
	}
	for _, w := range writes {
		byName[w.Name] = append(byName[w.Name], line{w.At, fmt.Sprintf("  write w%d token=%d on_time=%v accepted=%v highest=%d at %s", w.Worker, w.Token, w.OnTime, w.Accepted, w.Highest, clock(w.At))})
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(f, "== lock %s\n", n)
		ls := byName[n]
		slices.SortStableFunc(ls, func(a, b line) int { return a.at.Compare(b.at) })
		for _, l := range ls {
			fmt.Fprintln(f, l.s)
		}
	}
	return nil
}
