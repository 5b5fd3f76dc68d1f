package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress writes the progress line: the rates over the last interval.
type progress struct {
	r        *benchRun
	w        io.Writer
	terminal bool // rewrite one line rather than add lines
	wrote    bool
	last     [3]int64
	lastAt   time.Duration
}

func newProgress(r *benchRun, w io.Writer) *progress {
	p := &progress{r: r, w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) write(at time.Duration) {
	var now [3]int64
	for _, w := range p.r.workers {
		now[0] += w.cycles.Load()
		now[1] += w.requests.Load()
		now[2] += w.errors.Load()
	}
	secs := (at - p.lastAt).Seconds()
	line := fmt.Sprintf("bench %s %4.0fs  %9.0f cycles/s  %9.0f req/s  %7.0f errors/s  (%d cycles, %d errors)",
		p.r.cfg.mode, at.Seconds(), float64(now[0]-p.last[0])/secs, float64(now[1]-p.last[1])/secs,
		float64(now[2]-p.last[2])/secs, now[0], now[2])
	p.last, p.lastAt = now, at
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.wrote = true
}

func (p *progress) finish() {
	if p.terminal && p.wrote {
		fmt.Fprintln(p.w)
	}
}
