package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConsoleTail(t *testing.T) {
	tests := []struct {
		name    string
		content string
		n       int
		want    string
	}{
		{"last lines", "one\ntwo\nthree\nfour\n", 2, "three | four"},
		{"fewer than n", "one\n", 5, "one"},
		{"blank lines skipped", "a\n\n  \r\nb\n\n", 2, "a | b"},
		{"crlf and lone cr", "x\r\nprogress 10%\rprogress 100%\r\n", 2, "progress 10% | progress 100%"},
		{"ansi colours", "[  \x1b[0;32mOK\x1b[0m  ] Started ssh\n", 1, "[  OK  ] Started ssh"},
		{"osc title", "\x1b]0;title\x07prompt$\n", 1, "prompt$"},
		{"control chars", "a\x00b\x07c\td\x1b\n", 1, "abc d"},
		{"bad utf-8", "caf\xc3\n", 1, "caf?"},
		{"long line", strings.Repeat("x", 300) + "\n", 1, strings.Repeat("x", 240) + "..."},
		{"empty", "", 3, ""},
		{"zero n", "a\n", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "console.log")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := ConsoleTail(p, tt.n); got != tt.want {
				t.Errorf("ConsoleTail = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConsoleTailMissingFile(t *testing.T) {
	if got := ConsoleTail(filepath.Join(t.TempDir(), "nope"), 3); got != "" {
		t.Errorf("ConsoleTail of a missing file = %q, want empty", got)
	}
}

func TestConsoleTailLargeFile(t *testing.T) {
	// More than the read window: the line cut by the window must not show.
	var b strings.Builder
	for b.Len() < 2*consoleWindow {
		b.WriteString("filler line of the boot log\n")
	}
	b.WriteString("second to last\nlast\n")
	p := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := ConsoleTail(p, 2), "second to last | last"; got != want {
		t.Errorf("ConsoleTail = %q, want %q", got, want)
	}
	all := strings.Split(ConsoleTail(p, 1<<20), " | ")
	for _, l := range all[:len(all)-2] {
		if l != "filler line of the boot log" {
			t.Fatalf("a partial line leaked from the window edge: %q", l)
		}
	}
}
