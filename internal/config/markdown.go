package config

import (
	"fmt"
	"strings"
)

// Markdown renders the key reference that docs/config.md holds; a test keeps
// the file equal to it.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# banger config reference\n\n")
	b.WriteString("banger reads `/etc/banger/config.toml`, then `~/.config/banger/config.toml`\n")
	b.WriteString("(`$XDG_CONFIG_HOME/banger/config.toml`); the user file wins per key. Every key\n")
	b.WriteString("is optional. Unknown keys and bad values are errors that name the file, the\n")
	b.WriteString("line and the key. This file is generated from `internal/config` (`Keys`).\n\n")
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	for _, k := range Keys() {
		def := k.Default
		if def == "" {
			def = "—"
		}
		doc := k.Doc
		if k.Env != "" {
			doc += fmt.Sprintf(" Overridden by `$%s`.", k.Env)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", k.Name, k.Type, strings.ReplaceAll(def, "|", `\|`), strings.ReplaceAll(doc, "|", `\|`))
	}
	return b.String()
}
