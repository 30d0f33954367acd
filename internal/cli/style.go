package cli

import (
	"io"
	"os"

	"github.com/mattn/go-isatty"
)

// Style colours output only on a terminal and never when NO_COLOR is set.
type Style struct{ color bool }

// NewStyle decides colour for w.
func NewStyle(w io.Writer) Style {
	if _, ok := os.LookupEnv("NO_COLOR"); ok {
		return Style{}
	}
	f, ok := w.(*os.File)
	return Style{color: ok && isatty.IsTerminal(f.Fd())}
}

func (s Style) wrap(code, text string) string {
	if !s.color {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

func (s Style) Pass(t string) string { return s.wrap("32", t) }
func (s Style) Warn(t string) string { return s.wrap("33", t) }
func (s Style) Fail(t string) string { return s.wrap("31;1", t) }
func (s Style) Dim(t string) string  { return s.wrap("2", t) }
func (s Style) Bold(t string) string { return s.wrap("1", t) }
