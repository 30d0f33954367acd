package sshkeys

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Two real ed25519 public keys (as a guest's ssh_host_ed25519_key.pub).
const (
	keyA  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM4qcYtGrPU7mBJxvORBZ0Mjxj4UNSLVY2YpPkGNNzU root@guest"
	keyB  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBdD6gJQ49NomUSd0MPoBrrUx0MsQ5TA8ttVA3v425Tl root@guest"
	blobA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM4qcYtGrPU7mBJxvORBZ0Mjxj4UNSLVY2YpPkGNNzU"
	blobB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBdD6gJQ49NomUSd0MPoBrrUx0MsQ5TA8ttVA3v425Tl"
)

var (
	ip5 = netip.MustParseAddr("10.42.0.5")
	ip6 = netip.MustParseAddr("10.42.0.6")
)

// userLines are lines banger must keep byte for byte.
const userLines = "# my hosts\n" +
	"github.com " + blobB + "\n" +
	"\n" +
	"@cert-authority *.example " + blobA + " banger:dev\n" +
	"dev.vm " + blobB + " mine\n" +
	"|1|c2FsdA==|aGFzaA== " + blobA + "\n"

func TestKnownHosts(t *testing.T) {
	type op struct {
		do      string // set, check, remove
		name    string
		ip      netip.Addr
		key     string
		changed bool
		err     error // errors.Is target, for check
	}
	tests := []struct {
		name   string
		before string
		ops    []op
		want   string
	}{
		{
			name: "set on a missing file",
			ops:  []op{{do: "set", name: "dev", ip: ip5, key: keyA}},
			want: "dev.vm " + blobA + " banger:dev\n10.42.0.5 " + blobA + " banger:dev\n",
		},
		{
			name:   "set keeps every line that is not banger's",
			before: userLines,
			ops:    []op{{do: "set", name: "dev", ip: ip5, key: keyA}},
			want:   userLines + "dev.vm " + blobA + " banger:dev\n10.42.0.5 " + blobA + " banger:dev\n",
		},
		{
			name:   "a last line without newline gets one",
			before: "github.com " + blobB,
			ops:    []op{{do: "set", name: "dev", ip: ip5, key: keyA}},
			want:   "github.com " + blobB + "\ndev.vm " + blobA + " banger:dev\n10.42.0.5 " + blobA + " banger:dev\n",
		},
		{
			name: "same key again changes nothing",
			ops: []op{
				{do: "set", name: "dev", ip: ip5, key: keyA},
				{do: "set", name: "dev", ip: ip5, key: blobA},
				{do: "check", name: "dev", ip: ip5, key: keyA},
			},
			want: "dev.vm " + blobA + " banger:dev\n10.42.0.5 " + blobA + " banger:dev\n",
		},
		{
			name: "new key: check fails, set replaces and says changed",
			ops: []op{
				{do: "set", name: "dev", ip: ip5, key: keyA},
				{do: "check", name: "dev", ip: ip5, key: keyB, err: ErrHostKeyChanged},
				{do: "set", name: "dev", ip: ip5, key: keyB, changed: true},
				{do: "check", name: "dev", ip: ip5, key: keyB},
			},
			want: "dev.vm " + blobB + " banger:dev\n10.42.0.5 " + blobB + " banger:dev\n",
		},
		{
			name: "check with nothing recorded passes",
			ops:  []op{{do: "check", name: "dev", ip: ip5, key: keyA}},
		},
		{
			name: "another VM is not a conflict",
			ops: []op{
				{do: "set", name: "dev", ip: ip5, key: keyA},
				{do: "set", name: "web", ip: ip6, key: keyB},
				{do: "check", name: "web", ip: ip6, key: keyB},
			},
			want: "dev.vm " + blobA + " banger:dev\n10.42.0.5 " + blobA + " banger:dev\n" +
				"web.vm " + blobB + " banger:web\n10.42.0.6 " + blobB + " banger:web\n",
		},
		{
			name: "a reused address drops the old VM's line for it",
			ops: []op{
				{do: "set", name: "dev", ip: ip5, key: keyA},
				{do: "set", name: "web", ip: ip5, key: keyB},
			},
			want: "dev.vm " + blobA + " banger:dev\n" +
				"web.vm " + blobB + " banger:web\n10.42.0.5 " + blobB + " banger:web\n",
		},
		{
			name: "a VM's new address replaces its old line",
			ops: []op{
				{do: "set", name: "dev", ip: ip5, key: keyA},
				{do: "set", name: "dev", ip: ip6, key: keyA},
			},
			want: "dev.vm " + blobA + " banger:dev\n10.42.0.6 " + blobA + " banger:dev\n",
		},
		{
			name:   "remove takes only banger's lines for the VM",
			before: userLines,
			ops: []op{
				{do: "set", name: "dev", ip: ip5, key: keyA},
				{do: "set", name: "web", ip: ip6, key: keyB},
				{do: "remove", name: "dev", ip: ip5},
				{do: "check", name: "dev", ip: ip5, key: keyB},
			},
			want: userLines + "web.vm " + blobB + " banger:web\n10.42.0.6 " + blobB + " banger:web\n",
		},
		{
			name:   "remove of what is not there leaves the file alone",
			before: "github.com " + blobB,
			ops:    []op{{do: "remove", name: "dev", ip: ip5}},
			want:   "github.com " + blobB,
		},
		{
			name: "remove then set again is a fresh start",
			ops: []op{
				{do: "set", name: "dev", ip: ip5, key: keyA},
				{do: "remove", name: "dev", ip: ip5},
				{do: "set", name: "dev", ip: ip5, key: keyB},
			},
			want: "dev.vm " + blobB + " banger:dev\n10.42.0.5 " + blobB + " banger:dev\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ssh", "known_hosts")
			if tt.before != "" {
				os.MkdirAll(filepath.Dir(path), 0o700)
				if err := os.WriteFile(path, []byte(tt.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			kh := &KnownHosts{Path: path}
			for i, o := range tt.ops {
				switch o.do {
				case "set":
					changed, err := kh.Set(o.name, o.ip, o.key)
					if err != nil || changed != o.changed {
						t.Fatalf("op %d: Set = %v, %v; want changed=%v", i, changed, err, o.changed)
					}
				case "check":
					err := kh.Check(o.name, o.ip, o.key)
					if (o.err == nil) != (err == nil) || (o.err != nil && !errors.Is(err, o.err)) {
						t.Fatalf("op %d: Check = %v; want %v", i, err, o.err)
					}
				case "remove":
					if err := kh.Remove(o.name, o.ip); err != nil {
						t.Fatalf("op %d: Remove: %v", i, err)
					}
				}
			}
			got, err := os.ReadFile(path)
			if err != nil && tt.want != "" {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("known_hosts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKnownHostsRejects(t *testing.T) {
	kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	tests := []struct {
		name, vm, key, err string
	}{
		{"bad name", "Dev VM", keyA, "not a valid name"},
		{"pattern as name", "*", keyA, "not a valid name"},
		{"not a key", "dev", "hello", "want"},
		{"two keys", "dev", keyA + "\n" + keyB, "more than one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kh.Set(tt.vm, ip5, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "add host key of ") {
				t.Fatalf("Set error = %v, want \"add host key of ...: %s\"", err, tt.err)
			}
		})
	}
	if _, err := os.Stat(kh.Path); err == nil {
		t.Error("a rejected Set wrote the file")
	}
}

func TestHostKeyChangedErrorNamesTheVM(t *testing.T) {
	kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	if _, err := kh.Set("dev", ip5, keyA); err != nil {
		t.Fatal(err)
	}
	err := kh.Check("dev", ip5, keyB)
	var hk *HostKeyChangedError
	if !errors.As(err, &hk) {
		t.Fatalf("Check = %v, want a *HostKeyChangedError", err)
	}
	fa, _ := Fingerprint(keyA)
	fb, _ := Fingerprint(keyB)
	want := fmt.Sprintf(`host key of VM "dev" changed (known %s, the guest has %s): possible impersonation; if you recreated the VM, run banger vm delete dev first`, fa, fb)
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
}

// TestKnownHostsParsesWithSSHKeygen asks the real ssh-keygen to find the
// entries, so the format is the one ssh reads.
func TestKnownHostsParsesWithSSHKeygen(t *testing.T) {
	needKeygen(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(path, []byte(userLines), 0o644)
	kh := &KnownHosts{Path: path}
	if _, err := kh.Set("dev", ip5, keyA); err != nil {
		t.Fatal(err)
	}
	if _, err := kh.Set("web", ip6, keyB); err != nil {
		t.Fatal(err)
	}
	find := func(host string) []string {
		out, err := exec.Command("ssh-keygen", "-F", host, "-f", path).Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return nil // not found
		}
		if err != nil {
			t.Fatalf("ssh-keygen -F %s: %v", host, err)
		}
		var keys []string
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 3 && !strings.HasPrefix(l, "#") {
				keys = append(keys, f[0]+" "+f[1]+" "+f[2])
			}
		}
		return keys
	}
	check := func(host string, want ...string) {
		t.Helper()
		if diff := cmp.Diff(want, find(host)); diff != "" {
			t.Errorf("ssh-keygen -F %s (-want +got):\n%s", host, diff)
		}
	}
	// The user's own dev.vm line stays and ssh sees both.
	check("dev.vm", "dev.vm "+blobB, "dev.vm "+blobA)
	check("10.42.0.5", "10.42.0.5 "+blobA)
	check("web.vm", "web.vm "+blobB)
	check("10.42.0.6", "10.42.0.6 "+blobB)
	if err := kh.Remove("web", ip6); err != nil {
		t.Fatal(err)
	}
	check("web.vm")
	check("10.42.0.6")
	check("github.com", "github.com "+blobB)
}

func TestKnownHostsConcurrentSets(t *testing.T) {
	kh := &KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = kh.Set(fmt.Sprintf("vm%d", i), netip.AddrFrom4([4]byte{10, 42, 1, byte(i + 2)}), keyA)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if err := kh.Check(fmt.Sprintf("vm%d", i), netip.Addr{}, keyB); !errors.Is(err, ErrHostKeyChanged) {
			t.Errorf("vm%d: entry lost (Check with another key = %v)", i, err)
		}
	}
	b, _ := os.ReadFile(kh.Path)
	if got := strings.Count(string(b), "\n"); got != 2*n {
		t.Errorf("%d lines, want %d:\n%s", got, 2*n, b)
	}
}

func TestStoreHostKey(t *testing.T) {
	s := NewStore(StoreConfig{Dir: t.TempDir()})
	if err := s.HostKey("dev", ip5, keyA, true); err != nil {
		t.Fatal(err)
	}
	if err := s.HostKey("dev", ip5, keyA, false); err != nil {
		t.Fatalf("same key on a later boot: %v", err)
	}
	if err := s.HostKey("dev", ip5, keyB, false); !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("another key on a later boot = %v, want ErrHostKeyChanged", err)
	}
	if err := s.KnownHosts().Check("dev", ip5, keyA); err != nil {
		t.Errorf("a refused key was recorded: %v", err)
	}
	if err := s.HostKey("dev", ip5, keyB, true); err != nil {
		t.Fatalf("a recreated VM's key: %v", err)
	}
	if err := s.Forget("dev", ip5); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(s.KnownHostsPath()); len(b) != 0 {
		t.Errorf("after Forget: %q", b)
	}
	if diff := cmp.Diff(filepath.Join(filepath.Dir(s.KnownHostsPath()), "id_ed25519"), s.Paths().KeyPath); diff != "" {
		t.Error(diff)
	}
}
