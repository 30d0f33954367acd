// Package state keeps banger's durable records (VMs, images, kernels,
// address leases) as one JSON document per record under a directory.
//
// Why files and not SQLite: one process (bangerd) owns the records, the
// counts are small (tens to hundreds), every write is a whole record, and a
// file per record can be read with cat and repaired with an editor. Each
// write is atomic (temp file, fsync, rename, fsync dir), so a crash or a
// full disk leaves the previous record intact. The store carries a schema
// version; Open migrates older stores forward and refuses newer ones.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/atomicfile"
)

// SchemaVersion is the record format this binary writes.
const SchemaVersion = 1

// Kind is a record type; each kind is a subdirectory.
type Kind string

const (
	KindVM     Kind = "vms"
	KindImage  Kind = "images"
	KindKernel Kind = "kernels"
	KindLease  Kind = "leases"
)

var kinds = []Kind{KindVM, KindImage, KindKernel, KindLease}

// Migration rewrites one record from schema From to From+1.
type Migration struct {
	From  int
	Apply func(kind Kind, record json.RawMessage) (json.RawMessage, error)
}

// migrations lists the upgrades from each older schema, in order. Empty
// while SchemaVersion is 1; a later schema change appends here.
var migrations []Migration

// Store is a directory of records. It is safe for concurrent use within one
// process; one process (bangerd) owns a store.
type Store struct {
	dir string
	mu  sync.RWMutex
}

type envelope struct {
	Schema int             `json:"schema"`
	Record json.RawMessage `json:"record"`
}

type meta struct {
	Schema int `json:"schema"`
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)

// Open opens (creating if needed) the store in dir and migrates it to
// SchemaVersion.
func Open(dir string) (*Store, error) {
	return open(dir, SchemaVersion, migrations)
}

func open(dir string, version int, migs []Migration) (*Store, error) {
	for _, k := range kinds {
		if err := os.MkdirAll(filepath.Join(dir, string(k)), 0o700); err != nil {
			return nil, fmt.Errorf("open state %s: %w", dir, err)
		}
	}
	s := &Store{dir: dir}
	metaPath := filepath.Join(dir, "meta.json")
	var m meta
	b, err := os.ReadFile(metaPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		m.Schema = version
		if err := s.writeJSON(metaPath, m); err != nil {
			return nil, err
		}
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("open state %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("open state: %s is corrupt: %w", metaPath, err)
	}
	if m.Schema > version {
		return nil, api.WithHint(fmt.Errorf("state in %s has schema %d, newer than this bangerd understands (%d)", dir, m.Schema, version),
			"run the newer banger that wrote it, or move the directory aside")
	}
	for m.Schema < version {
		if err := s.migrate(m.Schema, migs); err != nil {
			return nil, err
		}
		m.Schema++
		if err := s.writeJSON(metaPath, m); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// migrate rewrites every record from schema `from` to from+1. Each record
// write is atomic and carries its own schema, so an interrupted migration
// resumes where it stopped.
func (s *Store) migrate(from int, migs []Migration) error {
	var mig *Migration
	for i := range migs {
		if migs[i].From == from {
			mig = &migs[i]
		}
	}
	if mig == nil {
		return fmt.Errorf("migrate state: no migration from schema %d", from)
	}
	for _, k := range kinds {
		names, err := s.List(k)
		if err != nil {
			return err
		}
		for _, n := range names {
			env, err := s.readEnvelope(k, n)
			if err != nil {
				return err
			}
			if env.Schema != from {
				continue
			}
			rec, err := mig.Apply(k, env.Record)
			if err != nil {
				return fmt.Errorf("migrate %s/%s from schema %d: %w", k, n, from, err)
			}
			if err := s.writeJSON(s.path(k, n), envelope{Schema: from + 1, Record: rec}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(k Kind, name string) string {
	return filepath.Join(s.dir, string(k), name+".json")
}

func checkName(k Kind, name string) error {
	if !nameRe.MatchString(name) {
		return api.Errorf(api.CodeBadRequest, "invalid %s record name %q", strings.TrimSuffix(string(k), "s"), name)
	}
	return nil
}

func (s *Store) writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// Put writes (creating or replacing) a record.
func (s *Store) Put(k Kind, name string, v any) error {
	if err := checkName(k, name); err != nil {
		return err
	}
	rec, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeJSON(s.path(k, name), envelope{Schema: SchemaVersion, Record: rec}); err != nil {
		return fmt.Errorf("save %s %q: %w", strings.TrimSuffix(string(k), "s"), name, err)
	}
	return nil
}

// Create writes a record that must not exist yet.
func (s *Store) Create(k Kind, name string, v any) error {
	if err := checkName(k, name); err != nil {
		return err
	}
	rec, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Lstat(s.path(k, name)); err == nil {
		return fmt.Errorf("%s %q: %w", strings.TrimSuffix(string(k), "s"), name, api.ErrAlreadyExists)
	}
	return s.writeJSON(s.path(k, name), envelope{Schema: SchemaVersion, Record: rec})
}

func (s *Store) readEnvelope(k Kind, name string) (envelope, error) {
	var env envelope
	b, err := os.ReadFile(s.path(k, name))
	if errors.Is(err, os.ErrNotExist) {
		return env, fmt.Errorf("%s %q: %w", strings.TrimSuffix(string(k), "s"), name, &api.Error{Code: api.CodeNotFound,
			Message: fmt.Sprintf("no %s named %q", strings.TrimSuffix(string(k), "s"), name)})
	}
	if err != nil {
		return env, err
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return env, fmt.Errorf("record %s is corrupt: %w", s.path(k, name), err)
	}
	return env, nil
}

// Get reads a record into v. A missing record is api.ErrNotFound.
func (s *Store) Get(k Kind, name string, v any) error {
	if err := checkName(k, name); err != nil {
		return fmt.Errorf("%w", &api.Error{Code: api.CodeNotFound, Message: err.Error()})
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	env, err := s.readEnvelope(k, name)
	if err != nil {
		return err
	}
	if env.Schema != SchemaVersion {
		return fmt.Errorf("record %s has schema %d, want %d", s.path(k, name), env.Schema, SchemaVersion)
	}
	return json.Unmarshal(env.Record, v)
}

// List returns the names of all records of a kind, sorted.
func (s *Store) List(k Kind) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, string(k)))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || !nameRe.MatchString(n) {
			continue // temp files, strays
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Delete removes a record; deleting a missing record is not an error.
func (s *Store) Delete(k Kind, name string) error {
	if err := checkName(k, name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.path(k, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(filepath.Join(s.dir, string(k)))
}

// All reads every record of a kind.
func All[T any](s *Store, k Kind) ([]T, error) {
	names, err := s.List(k)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(names))
	for _, n := range names {
		var v T
		if err := s.Get(k, n, &v); err != nil {
			if errors.Is(err, api.ErrNotFound) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
