package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressBar redraws one line on a terminal, with \r, while a mode runs:
// requests done of total and the current rate.
type progressBar struct {
	w     io.Writer
	label string
	total int64
	done  *atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startProgress draws a bar on w until the returned function is called,
// which erases it. A nil w draws nothing.
func startProgress(w io.Writer, label string, total int, done *atomic.Int64) (stop func()) {
	if w == nil {
		return func() {}
	}
	p := &progressBar{w: w, label: label, total: int64(total), done: done, stop: make(chan struct{})}
	p.wg.Go(p.loop)
	return func() {
		close(p.stop)
		p.wg.Wait()
	}
}

func (p *progressBar) loop() {
	const width = 30
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	last := 0
	for {
		select {
		case <-p.stop:
			fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", last))
			return
		case <-tick.C:
		}
		n := p.done.Load()
		filled := int(int64(width) * n / max(p.total, 1))
		rate := float64(n) / time.Since(start).Seconds()
		line := fmt.Sprintf("%s [%s%s] %d/%d requests, %.0f/s",
			p.label, strings.Repeat("#", filled), strings.Repeat(".", width-filled), n, p.total, rate)
		pad := max(last-len(line), 0)
		fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
		last = len(line)
	}
}
