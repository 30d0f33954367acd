package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSystemUpstreams(t *testing.T) {
	const resolved = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
	tests := []struct {
		name    string
		files   map[string]string
		want    []string
		wantErr bool
	}{
		{"plain", map[string]string{"etc/resolv.conf": "# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver 192.0.2.53\nsearch example\n"},
			[]string{"192.0.2.53:53", "[2001:db8::53]:53"}, false},
		{"resolved stub replaced by its upstreams", map[string]string{
			"etc/resolv.conf":                      resolved,
			"run/systemd/resolve/resolv.conf":      "nameserver 10.0.0.1\nnameserver fe80::1%eth0\n",
			"run/systemd/resolve/stub-resolv.conf": resolved,
		}, []string{"10.0.0.1:53", "[fe80::1%eth0]:53"}, false},
		{"resolved stub without resolved's list is kept", map[string]string{"etc/resolv.conf": resolved},
			[]string{"127.0.0.53:53"}, false},
		{"resolved lists nothing", map[string]string{"etc/resolv.conf": resolved, "run/systemd/resolve/resolv.conf": "# no servers\n"},
			[]string{"127.0.0.53:53"}, false},
		{"other loopback resolvers stay", map[string]string{"etc/resolv.conf": "nameserver 127.0.0.1\nnameserver ::1\n"},
			[]string{"127.0.0.1:53", "[::1]:53"}, false},
		{"garbage skipped", map[string]string{"etc/resolv.conf": "nameserver\nnameserver nope\nnameserver 0.0.0.0\nnameserver 192.0.2.1 extra\n"},
			[]string{"192.0.2.1:53"}, false},
		{"empty", map[string]string{"etc/resolv.conf": "search lan\n"}, nil, true},
		{"missing", map[string]string{}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := systemUpstreams(root)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			var want []netip.AddrPort
			for _, s := range tt.want {
				want = append(want, netip.MustParseAddrPort(s))
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
				t.Errorf("upstreams (-want +got):\n%s", diff)
			}
		})
	}
}
