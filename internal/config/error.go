package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a config file, or in the environment when File is
// empty. It prints as one line a user can act on:
//
//	/etc/banger/config.toml:7: vm_defaults.vcpu: must be between 1 and 64 (got 0)
type Error struct {
	File string // the config file; "" for an environment variable
	Line int    // 1-based line of the key; 0 when unknown
	// Key is the full dotted key, with 0-based indexes for array entries
	// ("file_sync[0].mode"), or the environment variable. It is empty for
	// syntax errors and unknown keys, whose Msg names the key itself.
	Key string
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
