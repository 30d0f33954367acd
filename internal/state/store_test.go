package state

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/banger/internal/api"
	"github.com/google/go-cmp/cmp"
)

type rec struct {
	Name string `json:"name"`
	CPUs int    `json:"cpus"`
}

func TestPutGetListDelete(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []rec{{"b", 2}, {"a", 1}} {
		if err := s.Put(KindVM, r.Name, r); err != nil {
			t.Fatal(err)
		}
	}
	var got rec
	if err := s.Get(KindVM, "a", &got); err != nil || got.CPUs != 1 {
		t.Fatalf("get a = %+v, %v", got, err)
	}
	all, err := All[rec](s, KindVM)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]rec{{"a", 1}, {"b", 2}}, all); diff != "" {
		t.Errorf("All (-want +got):\n%s", diff)
	}
	if err := s.Create(KindVM, "a", rec{"a", 9}); !errors.Is(err, api.ErrAlreadyExists) {
		t.Errorf("Create existing = %v, want already_exists", err)
	}
	if err := s.Delete(KindVM, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Get(KindVM, "a", &got); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Get deleted = %v, want not_found", err)
	}
	if err := s.Delete(KindVM, "a"); err != nil {
		t.Errorf("deleting a missing record: %v", err)
	}
}

func TestRejectsHostileNames(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"", "../x", "a/b", "UP", ".hidden", strings.Repeat("a", 200)} {
		if err := s.Put(KindVM, n, rec{}); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("Put(%q) = %v, want bad_request", n, err)
		}
	}
}

func TestListIgnoresTempFiles(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	s.Put(KindImage, "img", rec{"img", 0})
	os.WriteFile(filepath.Join(dir, "images", ".img.json.tmp-x-1"), []byte("{"), 0o600)
	names, _ := s.List(KindImage)
	if diff := cmp.Diff([]string{"img"}, names); diff != "" {
		t.Error(diff)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "meta.json"), []byte(`{"schema": 99}`), 0o600)
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer store = %v, want a 'newer' error", err)
	}
}

func TestMigratesOlderSchema(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Put(KindVM, "a", map[string]any{"name": "a", "vcpu": 3})
	// Pretend the binary now speaks schema 2, which renamed vcpu to cpus.
	migs := []Migration{{From: 1, Apply: func(k Kind, r json.RawMessage) (json.RawMessage, error) {
		var m map[string]any
		json.Unmarshal(r, &m)
		m["cpus"] = m["vcpu"]
		delete(m, "vcpu")
		return json.Marshal(m)
	}}}
	if _, err := open(dir, 2, migs); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "vms", "a.json"))
	var env envelope
	json.Unmarshal(b, &env)
	var got rec
	json.Unmarshal(env.Record, &got)
	if env.Schema != 2 || got.CPUs != 3 {
		t.Errorf("after migration: schema %d record %s", env.Schema, env.Record)
	}
	m, _ := os.ReadFile(filepath.Join(dir, "meta.json"))
	if !strings.Contains(string(m), `"schema": 2`) {
		t.Errorf("meta not bumped: %s", m)
	}
}
