package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// decoder applies one file's values onto a Config and collects its problems.
// The TOML decoder gives values (and rejects bad syntax, duplicate keys);
// the position index from the AST gives each key's line.
type decoder struct {
	file  string
	home  string
	lines map[string]int // key as printed in errors -> line
	known map[string]field
	errs  []*Error
}

// decodeFile applies data, the contents of file, onto c and returns its
// problems in line order.
func decodeFile(c *Config, file string, data []byte, home string, known map[string]field) []*Error {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		e := &Error{File: file, Msg: "syntax error: " + strings.TrimPrefix(err.Error(), "toml: ")}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			e.Line, _ = de.Position()
		}
		return []*Error{e}
	}
	d := &decoder{file: file, home: home, lines: keyLines(data), known: known}
	d.walk(doc, "", "", func(f field, key string, v any) bool {
		if f.apply == nil {
			return false
		}
		f.apply(d, c, key, v)
		c.Origins[f.Name] = file
		return true
	})
	slices.SortStableFunc(d.errs, func(a, b *Error) int { return a.Line - b.Line })
	return d.errs
}

// walk visits table t in document order. name is the Keys name prefix
// ("network.", "file_sync[]."), key the printed one ("file_sync[2].").
// Tables are descended into; leaves go to leaf, which returns false for a
// field that does not belong there (an entry field at the top level).
func (d *decoder) walk(t map[string]any, name, key string, leaf func(f field, key string, v any) bool) {
	for _, k := range d.ordered(key, t) {
		v, kn, kk := t[k], name+k, key+keyPart(k)
		f, ok := d.known[kn]
		switch {
		case !ok || kk != key+k: // a quoted "network.cidr" is not network.cidr
			d.unknown(kk, v)
		case f.Type == typeTable:
			if sub, ok := d.table(kk, v); ok {
				d.walk(sub, kn+".", kk+".", leaf)
			}
		default:
			if !leaf(f, kk, v) {
				d.unknown(kk, v)
			}
		}
	}
}

// ordered returns t's keys by line, so problems come in document order.
func (d *decoder) ordered(prefix string, t map[string]any) []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := d.line(prefix+keyPart(a)) - d.line(prefix+keyPart(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return keys
}

// unknown reports the first key under an unknown one, so that a misspelt
// table points at a full key: unknown key "vm_defualts.vcpu".
func (d *decoder) unknown(key string, v any) {
	for {
		if arr, ok := v.([]any); ok && len(arr) > 0 {
			if _, ok := arr[0].(map[string]any); ok {
				key, v = index(key, 0), arr[0]
			}
		}
		t, ok := v.(map[string]any)
		if !ok || len(t) == 0 {
			break
		}
		k := d.ordered(key+".", t)[0]
		key, v = key+"."+keyPart(k), t[k]
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: d.line(key), Msg: fmt.Sprintf("unknown key %q", key)})
}

// line finds key's line, or its closest ancestor's.
func (d *decoder) line(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func (d *decoder) fail(key string, err error) {
	d.errs = append(d.errs, &Error{File: d.file, Line: d.line(key), Key: key, Msg: err.Error()})
}

func (d *decoder) wrongType(key, want string, v any) {
	d.fail(key, fmt.Errorf("expected %s, got %s", want, typeName(v)))
}

func (d *decoder) str(key string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.wrongType(key, "a string", v)
	}
	return s, ok
}

func (d *decoder) boolean(key string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		d.wrongType(key, "a boolean", v)
	}
	return b, ok
}

func (d *decoder) table(key string, v any) (map[string]any, bool) {
	t, ok := v.(map[string]any)
	if !ok {
		d.wrongType(key, "a table", v)
	}
	return t, ok
}

func (d *decoder) array(key string, v any) ([]any, bool) {
	a, ok := v.([]any)
	if !ok {
		d.wrongType(key, "an array", v)
	}
	return a, ok
}

func (d *decoder) intIn(key string, v any, lo, hi int) (int, bool) {
	n, ok := v.(int64)
	if !ok {
		d.wrongType(key, "an integer", v)
		return 0, false
	}
	if n < int64(lo) || n > int64(hi) {
		d.fail(key, fmt.Errorf("must be between %d and %d (got %d)", lo, hi, n))
		return 0, false
	}
	return int(n), true
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	case time.Time, toml.LocalDateTime:
		return "datetime"
	case toml.LocalDate:
		return "date"
	case toml.LocalTime:
		return "time"
	}
	return fmt.Sprintf("%T", v)
}

// asString adapts a setter of a string key; its error is reported at the key.
func asString(set func(c *Config, s, home string) error) applyFunc {
	return func(d *decoder, c *Config, key string, v any) {
		if s, ok := d.str(key, v); ok {
			if err := set(c, s, d.home); err != nil {
				d.fail(key, err)
			}
		}
	}
}

// binary sets an optional path to an executable; empty keeps the PATH lookup.
func binary(dst func(c *Config) *string) applyFunc {
	return asString(func(c *Config, s, home string) error {
		if s == "" {
			*dst(c) = ""
			return nil
		}
		p, err := hostPath(s, home)
		if err != nil {
			return err
		}
		*dst(c) = p
		return nil
	})
}

func entryString(set func(e *FileSync, s, home string) error) entryFunc {
	return func(d *decoder, e *FileSync, key string, v any) {
		if s, ok := d.str(key, v); ok {
			if err := set(e, s, d.home); err != nil {
				d.fail(key, err)
			}
		}
	}
}

// applyFileSync reads the file_sync array, written as [[file_sync]] tables
// or as an array of inline tables.
func applyFileSync(d *decoder, c *Config, key string, v any) {
	arr, ok := d.array(key, v)
	if !ok {
		return
	}
	out := make([]FileSync, 0, len(arr))
	for i, raw := range arr {
		ek := index(key, i)
		t, ok := d.table(ek, raw)
		if !ok {
			continue
		}
		var e FileSync
		d.walk(t, "file_sync[].", ek+".", func(f field, key string, v any) bool {
			if f.entry == nil {
				return false
			}
			f.entry(d, &e, key, v)
			return true
		})
		for _, req := range []string{"host", "guest"} {
			if _, ok := t[req]; !ok {
				d.fail(ek+"."+req, errors.New("missing; every [[file_sync]] entry needs host and guest"))
			}
		}
		out = append(out, e)
	}
	c.FileSync = out
}

func index(key string, i int) string { return key + "[" + strconv.Itoa(i) + "]" }

// keyPart prints one key component as TOML would need it written.
func keyPart(k string) string {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(lowerDigit(c) || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return strconv.Quote(k)
		}
	}
	if k == "" {
		return `""`
	}
	return k
}

// keyLines maps every key of a document that toml.Unmarshal accepted, as
// errors print it ("network.cidr", "file_sync[1].mode", "upstream_dns[0]"),
// to the line where it is first written.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	entries := map[string]int{} // array of tables -> entries seen so far
	var p unstable.Parser
	p.Reset(data)
	lineOf := func(n *unstable.Node) int {
		if n.Raw.Length == 0 {
			return 0
		}
		return p.Shape(n.Raw).Start.Line
	}
	mark := func(key string, line int) {
		if _, ok := lines[key]; !ok && line > 0 {
			lines[key] = line
		}
	}
	join := func(prefix, part string) string {
		if prefix == "" {
			return part
		}
		return prefix + "." + part
	}
	var keyValue func(prefix string, n *unstable.Node)
	var value func(key string, n *unstable.Node, line int)
	keyValue = func(prefix string, n *unstable.Node) {
		key, line := prefix, 0
		for it := n.Key(); it.Next(); {
			k := it.Node()
			key, line = join(key, keyPart(string(k.Data))), lineOf(k)
			mark(key, line)
		}
		value(key, n.Value(), line)
	}
	value = func(key string, n *unstable.Node, line int) {
		switch n.Kind {
		case unstable.InlineTable:
			for it := n.Children(); it.Next(); {
				if kv := it.Node(); kv.Kind == unstable.KeyValue {
					keyValue(key, kv)
				}
			}
		case unstable.Array:
			i := 0
			for it := n.Children(); it.Next(); {
				el := it.Node()
				if el.Kind == unstable.Comment {
					continue
				}
				ek, l := index(key, i), lineOf(el)
				if l == 0 {
					l = line // nested arrays carry no position
				}
				mark(ek, l)
				value(ek, el, l)
				i++
			}
		}
	}
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			keyValue(table, e)
		case unstable.Table, unstable.ArrayTable:
			table = ""
			for it := e.Key(); it.Next(); {
				k := it.Node()
				table = join(table, keyPart(string(k.Data)))
				mark(table, lineOf(k))
				n, isArray := entries[table]
				switch {
				case it.IsLast() && e.Kind == unstable.ArrayTable:
					entries[table] = n + 1
					table = index(table, n)
				case isArray:
					table = index(table, n-1) // [a.b] under [[a]] is in a's last entry
				}
				mark(table, lineOf(k))
			}
		}
	}
	return lines
}
