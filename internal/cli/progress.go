package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/banger/banger/internal/api"
	"github.com/mattn/go-isatty"
	"golang.org/x/term"
)

// progress returns a renderer for the events of a long operation, and done,
// which must be called when the operation ends (either way). On a terminal
// each stage is one line that updates in place (message, bar when the
// stage has a total, elapsed time) and is closed with the stage's time
// when the next stage starts; otherwise each stage prints one line when it
// starts. Everything goes to the error stream, so stdout stays for results.
func (a *App) progress() (event func(api.Event), done func()) {
	tty, width := false, 0
	if f, ok := a.Err.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		tty = true
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			width = w
		}
	}
	p := newProgress(a.Err, NewStyle(a.Err), tty, width, time.Second)
	return p.event, p.done
}

// progressLine renders events; see App.progress.
type progressLine struct {
	w     io.Writer
	style Style
	tty   bool
	width int
	now   func() time.Time

	mu      sync.Mutex
	stage   string
	started time.Time
	last    api.Event // the stage's latest event, for redraws
	drawn   bool      // a stage line is on screen (tty)
	stop    chan struct{}
	tick    time.Duration
	ended   bool
}

func newProgress(w io.Writer, style Style, tty bool, width int, tick time.Duration) *progressLine {
	if width <= 0 {
		width = 80
	}
	return &progressLine{w: w, style: style, tty: tty, width: width, now: time.Now, tick: tick}
}

func (p *progressLine) event(ev api.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	switch ev.Type {
	case api.EventLog:
		p.clear()
		fmt.Fprintln(p.w, ev.Message)
		p.redraw()
		return
	case api.EventProgress:
	default:
		return
	}
	if ev.Stage != p.stage || p.stage == "" {
		p.closeStage()
		p.stage, p.started = ev.Stage, p.now()
		if !p.tty {
			line := p.style.Dim("==>") + " " + ev.Stage
			if ev.Message != "" {
				line += ": " + ev.Message
			}
			fmt.Fprintln(p.w, line)
		}
	}
	p.last = ev
	if p.tty {
		p.draw()
		p.startTicker()
	}
}

// done closes the current stage line.
func (p *progressLine) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.ended = true
	if p.stop != nil {
		close(p.stop)
	}
	p.closeStage()
}

// closeStage ends the current stage's line with its time (tty).
func (p *progressLine) closeStage() {
	if !p.tty || p.stage == "" || !p.drawn {
		return
	}
	p.clear()
	fmt.Fprintf(p.w, "%s %s %s\n", p.style.Dim("==>"), p.stage, p.style.Dim("("+elapsed(p.now().Sub(p.started))+")"))
	p.drawn = false
}

func (p *progressLine) clear() {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

func (p *progressLine) redraw() {
	if p.tty && p.drawn {
		p.draw()
	}
}

// draw rewrites the stage line: "==> stage  message [bar] (time)", cut to
// the terminal's width.
func (p *progressLine) draw() {
	ev := p.last
	tail := " (" + elapsed(p.now().Sub(p.started)) + ")"
	if ev.Total > 0 {
		pct := min(100, ev.Current*100/ev.Total)
		const barWidth = 20
		fill := int(pct * barWidth / 100)
		tail = fmt.Sprintf(" [%s%s] %3d%%", strings.Repeat("=", fill), strings.Repeat(" ", barWidth-fill), pct) + tail
	}
	head := "==> " + ev.Stage
	msg := ""
	if ev.Message != "" {
		msg = "  " + ev.Message
	}
	// Keep one column free so the cursor never wraps.
	room := p.width - 1 - utf8.RuneCountInString(head) - utf8.RuneCountInString(tail)
	if n := utf8.RuneCountInString(msg); n > room {
		if room <= 1 {
			msg = ""
		} else {
			msg = string([]rune(msg)[:room-1]) + "…"
		}
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s %s%s%s", p.style.Dim("==>"), ev.Stage, msg, p.style.Dim(tail))
	p.drawn = true
}

// startTicker redraws every tick, so the time moves while a stage is quiet.
func (p *progressLine) startTicker() {
	if p.stop != nil || p.tick <= 0 {
		return
	}
	p.stop = make(chan struct{})
	go func(stop chan struct{}) {
		t := time.NewTicker(p.tick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.mu.Lock()
				if !p.ended {
					p.redraw()
				}
				p.mu.Unlock()
			}
		}
	}(p.stop)
}

// elapsed formats a duration for humans: "0.4s", "42s", "3m12s".
func elapsed(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	default:
		return d.Truncate(time.Second).String()
	}
}
