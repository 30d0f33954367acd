package golden

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDigestStable(t *testing.T) {
	a, b := DefaultSpec().Digest(), DefaultSpec().Digest()
	if a != b {
		t.Fatalf("two digests of the same spec differ: %s %s", a, b)
	}
	if len(a) != 64 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("digest %q is not hex sha256", a)
	}
	s := DefaultSpec()
	slices.Reverse(s.Packages)
	if got := s.Digest(); got != a {
		t.Errorf("package order changed the digest: %s, want %s", got, a)
	}
}

// TestDigestSensitive changes every field of Spec, nested ones included,
// found by reflection so a field added later is covered (or fails here).
func TestDigestSensitive(t *testing.T) {
	base := DefaultSpec().Digest()
	seen := map[string]string{base: "base"}
	var walk func(path string, v reflect.Value, mutate func(func(reflect.Value)))
	walk = func(path string, v reflect.Value, mutate func(func(reflect.Value))) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				walk(path+"."+f.Name, v.Field(i), func(change func(reflect.Value)) {
					mutate(func(parent reflect.Value) { change(parent.Field(i)) })
				})
			}
		case reflect.String:
			mutate(func(v reflect.Value) { v.SetString(v.String() + "x") })
			mutate(func(v reflect.Value) { v.SetString("") })
		case reflect.Slice:
			mutate(func(v reflect.Value) { v.Set(reflect.Append(v, reflect.ValueOf("extra-package"))) })
			mutate(func(v reflect.Value) { v.Set(v.Slice(0, v.Len()-1)) })
		default:
			t.Fatalf("%s: kind %s not handled by this test; extend it", path, v.Kind())
		}
	}
	n := 0
	walk("Spec", reflect.ValueOf(DefaultSpec()), func(change func(reflect.Value)) {
		s := DefaultSpec()
		change(reflect.ValueOf(&s).Elem())
		n++
		d := s.Digest()
		if prev, ok := seen[d]; ok {
			t.Errorf("mutation %d (%+v) gives the same digest as %s", n, s, prev)
		}
		seen[d] = "mutation"
	})
	if n < 10 {
		t.Fatalf("only %d mutations: the walk missed fields", n)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultSpec().validate(); err != nil {
		t.Fatalf("default spec: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Spec)
	}{
		{"name with slash", func(s *Spec) { s.Name = "../x" }},
		{"empty name", func(s *Spec) { s.Name = "" }},
		{"suite as option", func(s *Spec) { s.Suite = "--no-check-gpg" }},
		{"no packages", func(s *Spec) { s.Packages = nil }},
		{"package list smuggled", func(s *Spec) { s.Packages = append(s.Packages, "vim,nano") }},
		{"package as option", func(s *Spec) { s.Packages = append(s.Packages, "--no-check-gpg") }},
		{"npm package as option", func(s *Spec) { s.Mise.Package = "--registry=x" }},
		{"mise version range", func(s *Spec) { s.Mise.Version = "^2026.1.0" }},
		{"mise sha short", func(s *Spec) { s.Mise.SHA256 = "abc" }},
		{"mise sha upper case", func(s *Spec) { s.Mise.SHA256 = strings.ToUpper(DefaultSpec().Mise.SHA256) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultSpec()
			tt.change(&s)
			if err := s.validate(); err == nil {
				t.Errorf("validate accepted %+v", s)
			}
		})
	}
}
