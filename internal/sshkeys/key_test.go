package sshkeys

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/banger/banger/internal/api"
	"github.com/google/go-cmp/cmp"
)

// needKeygen skips a test that runs the real ssh-keygen when it is absent.
func needKeygen(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		if os.Getenv("BANGER_E2E") == "1" {
			t.Fatal("ssh-keygen not found (install openssh-client)")
		}
		t.Skip("ssh-keygen not found (install openssh-client)")
	}
}

// newKey makes a throwaway ed25519 pair with the real ssh-keygen and
// returns the private key's path.
func newKey(t *testing.T, dir, name string) string {
	t.Helper()
	needKeygen(t)
	p := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return p
}

func readPub(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// derived is what ssh-keygen -y makes of a private key: "TYPE BASE64".
func derived(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-y", "-f", key).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -y -f %s: %v", key, err)
	}
	f := strings.Fields(string(out))
	return f[0] + " " + f[1]
}

func typeBlob(t *testing.T, line string) string {
	t.Helper()
	typ, blob, _, err := ParsePublic(line)
	if err != nil {
		t.Fatal(err)
	}
	return typ + " " + blob
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestEnsureKeyGeneratesOnce(t *testing.T) {
	needKeygen(t)
	dir := filepath.Join(t.TempDir(), "ssh")
	key := filepath.Join(dir, "id_ed25519")
	pub, err := EnsureKey(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub, "ssh-ed25519 ") || !strings.HasSuffix(pub, " "+KeyComment) {
		t.Errorf("public key %q: want an ed25519 key with comment %q", pub, KeyComment)
	}
	if got, want := typeBlob(t, pub), derived(t, key); got != want {
		t.Errorf("the .pub does not belong to the private key: %q vs %q", got, want)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, key: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
		}
	}
	again, err := EnsureKey(t.Context(), key)
	if err != nil || again != pub {
		t.Errorf("second EnsureKey = %q, %v; want the same key %q", again, err, pub)
	}
	if diff := cmp.Diff([]string{"id_ed25519", "id_ed25519.pub"}, dirNames(t, dir)); diff != "" {
		t.Errorf("files left in the ssh dir (-want +got):\n%s", diff)
	}
}

func TestEnsureKeyConcurrentCallersGetOneKey(t *testing.T) {
	needKeygen(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	const n = 8
	pubs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pubs[i], errs[i] = EnsureKey(t.Context(), key)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if pubs[i] != pubs[0] {
			t.Errorf("caller %d got %q, caller 0 got %q", i, pubs[i], pubs[0])
		}
	}
	if got, want := typeBlob(t, readPub(t, key)), derived(t, key); got != want {
		t.Errorf("the pair on disk does not match: %q vs %q", got, want)
	}
	if diff := cmp.Diff([]string{"id_ed25519", "id_ed25519.pub"}, dirNames(t, dir)); diff != "" {
		t.Errorf("files left in the ssh dir (-want +got):\n%s", diff)
	}
}

func TestEnsureKeyRepairs(t *testing.T) {
	needKeygen(t)
	tests := []struct {
		name    string
		prepare func(t *testing.T, key string)
		// keep: the existing private key must survive
		keep bool
	}{
		{"public half missing", func(t *testing.T, key string) {
			newKey(t, filepath.Dir(key), filepath.Base(key))
			os.Remove(key + ".pub")
		}, true},
		{"only a public half (crash between the renames)", func(t *testing.T, key string) {
			other := newKey(t, t.TempDir(), "other")
			os.Rename(other+".pub", key+".pub")
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := filepath.Join(t.TempDir(), "id_ed25519")
			tt.prepare(t, key)
			var before []byte
			if tt.keep {
				before, _ = os.ReadFile(key)
			}
			pub, err := EnsureKey(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := typeBlob(t, pub), derived(t, key); got != want {
				t.Errorf("public %q does not match the private key (%q)", got, want)
			}
			if tt.keep {
				after, _ := os.ReadFile(key)
				if string(after) != string(before) {
					t.Error("the existing private key was replaced")
				}
			}
		})
	}
}

func TestLoadPublic(t *testing.T) {
	needKeygen(t)
	dir := t.TempDir()
	good := newKey(t, dir, "good")
	noPub := newKey(t, dir, "nopub")
	os.Remove(noPub + ".pub")
	badPub := newKey(t, dir, "badpub")
	os.WriteFile(badPub+".pub", []byte("ssh-ed25519 not-base64!\n"), 0o644)
	tests := []struct {
		name, key, want, err string
		notExist             bool
	}{
		{name: "pair", key: good, want: readPub(t, good)},
		{name: "no private key", key: filepath.Join(dir, "absent"), err: "ssh key", notExist: true},
		{name: "no public key", key: noPub, err: "public key of", notExist: true},
		{name: "not a key", key: badPub, err: "bad base64"},
		{name: "a directory", key: dir, err: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadPublic(tt.key)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("LoadPublic = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("LoadPublic error = %v; want it to mention %q", err, tt.err)
			}
			if errors.Is(err, fs.ErrNotExist) != tt.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", !tt.notExist, tt.notExist)
			}
		})
	}
}

func TestParsePublic(t *testing.T) {
	// "ssh-ed25519" blob: uint32 length 11, the type, then a 32-byte key.
	const ed = "AAAAC3NzaC1lZDI1NTE5AAAAILM4qcYtGrPU7mBJxvORBZ0Mjxj4UNSLVY2YpPkGNNzU"
	tests := []struct {
		in                 string
		typ, blob, comment string
		err                string
	}{
		{in: "ssh-ed25519 " + ed, typ: "ssh-ed25519", blob: ed},
		{in: "  ssh-ed25519 " + ed + " root@debian\n", typ: "ssh-ed25519", blob: ed, comment: "root@debian"},
		{in: "ssh-ed25519 " + ed + " two words", typ: "ssh-ed25519", blob: ed, comment: "two words"},
		{in: "ssh-rsa " + ed, err: "not a ssh-rsa key"},
		{in: "ssh-ed25519", err: "want"},
		{in: "ssh-ed25519 %%%", err: "bad base64"},
		{in: "ssh-ed25519 AAAA", err: "blob too short"},
		{in: "ssh-ed25519 AAAABnNzaC1lZA==", err: "not a ssh-ed25519 key"},
		{in: "ssh-ed25519 " + ed + "\nssh-ed25519 " + ed, err: "more than one line"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			typ, blob, comment, err := ParsePublic(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want it to mention %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{tt.typ, tt.blob, tt.comment}, []string{typ, blob, comment}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFingerprintMatchesSSHKeygen(t *testing.T) {
	key := newKey(t, t.TempDir(), "k")
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Fingerprint(readPub(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Fields(string(out))[1]; got != want {
		t.Errorf("Fingerprint = %s, ssh-keygen says %s", got, want)
	}
}

func TestStoreAuthorizedKey(t *testing.T) {
	needKeygen(t)
	dir := t.TempDir()
	user := newKey(t, dir, "user_key")
	noPub := newKey(t, dir, "nopub_key")
	os.Remove(noPub + ".pub")
	tests := []struct {
		name, keyPath string
		want          string // "generated", or the expected key
		err, hint     string
	}{
		{name: "banger's own key", want: "generated"},
		{name: "configured key", keyPath: user, want: readPub(t, user)},
		{name: "configured key without .pub", keyPath: noPub, err: "ssh_key_path", hint: "ssh-keygen -y -f " + noPub + " > " + noPub + ".pub"},
		{name: "configured key missing", keyPath: filepath.Join(dir, "absent"), err: "ssh_key_path", hint: "point ssh_key_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sshDir := filepath.Join(t.TempDir(), "ssh")
			s := NewStore(StoreConfig{Dir: sshDir, KeyPath: tt.keyPath})
			got, err := s.AuthorizedKey(t.Context())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(api.HintOf(err), tt.hint) {
					t.Fatalf("error = %v (hint %q); want %q with hint %q", err, api.HintOf(err), tt.err, tt.hint)
				}
				if _, err := os.Stat(sshDir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a configured key's failure created %s", sshDir)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "generated" {
				if s.KeyPath() != filepath.Join(sshDir, "id_ed25519") {
					t.Errorf("KeyPath = %s", s.KeyPath())
				}
				if typeBlob(t, got) != derived(t, s.KeyPath()) {
					t.Errorf("AuthorizedKey %q is not the key at %s", got, s.KeyPath())
				}
				return
			}
			if got != tt.want || s.KeyPath() != tt.keyPath {
				t.Errorf("AuthorizedKey = %q (KeyPath %s); want %q (%s)", got, s.KeyPath(), tt.want, tt.keyPath)
			}
		})
	}
}
