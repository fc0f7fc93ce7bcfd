// Package progress draws a progress bar of a long phase on stderr.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Bar reports a long phase on a writer (stderr): done/total, items per
// second and the time left, redrawn in place at most every 250 ms, and a
// final line when it ends. A nil *Bar reports nothing.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	name  string
	total int
	done  int
	start time.Time
	last  time.Time
	width int
	tty   bool // redraw in place; else a line every 10%
	next  int  // the next 10% step to print, without a terminal
}

// New starts reporting phase name of total items on w; w nil gives a
// silent Bar.
func New(w io.Writer, name string, total int) *Bar {
	if w == nil {
		return nil
	}
	now := time.Now()
	return &Bar{w: w, name: name, total: total, start: now, last: now.Add(-time.Second), tty: isTerminal(w), next: 1}
}

// Add records n more items done.
func (p *Bar) Add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if !p.tty {
		if p.total > 0 && p.done*10 >= p.next*p.total && p.done < p.total {
			for p.done*10 >= p.next*p.total {
				p.next++
			}
			p.draw(false)
			fmt.Fprintln(p.w)
		}
		return
	}
	if now := time.Now(); now.Sub(p.last) >= 250*time.Millisecond || p.done >= p.total {
		p.last = now
		p.draw(false)
	}
}

// Finish ends the line.
func (p *Bar) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(true)
	fmt.Fprintln(p.w)
}

func (p *Bar) draw(final bool) {
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.done) / el
	}
	const barW = 24
	filled := 0
	if p.total > 0 {
		filled = min(barW, barW*p.done/p.total)
	}
	bar := make([]byte, barW)
	for i := range bar {
		bar[i] = ' '
		if i < filled {
			bar[i] = '='
		}
	}
	tail := "ETA ?"
	if final {
		tail = fmt.Sprintf("%.1fs", el)
	} else if rate > 0 {
		tail = fmt.Sprintf("ETA %.0fs", float64(p.total-p.done)/rate)
	}
	line := fmt.Sprintf("%s [%s] %d/%d  %.1f img/s  %s", p.name, bar, p.done, p.total, rate, tail)
	if !p.tty {
		fmt.Fprint(p.w, line)
		return
	}
	pad := ""
	for i := len(line); i < p.width; i++ {
		pad += " "
	}
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
