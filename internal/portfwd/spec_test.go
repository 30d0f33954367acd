package portfwd

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		str     string
		wantErr string
	}{
		{in: "8080:80", want: Spec{netip.MustParseAddrPort("127.0.0.1:8080"), 80}, str: "127.0.0.1:8080:80"},
		{in: "0:3000", want: Spec{netip.MustParseAddrPort("127.0.0.1:0"), 3000}, str: "127.0.0.1:0:3000"},
		{in: "0.0.0.0:8080:80", want: Spec{netip.MustParseAddrPort("0.0.0.0:8080"), 80}, str: "0.0.0.0:8080:80"},
		{in: "10.1.2.3:65535:1", want: Spec{netip.MustParseAddrPort("10.1.2.3:65535"), 1}, str: "10.1.2.3:65535:1"},
		{in: "[::1]:8080:80", want: Spec{netip.MustParseAddrPort("[::1]:8080"), 80}, str: "[::1]:8080:80"},
		{in: "[::]:0:22", want: Spec{netip.MustParseAddrPort("[::]:0"), 22}, str: "[::]:0:22"},
		{in: "[::ffff:127.0.0.1]:80:80", want: Spec{netip.MustParseAddrPort("127.0.0.1:80"), 80}, str: "127.0.0.1:80:80"},

		{in: "", wantErr: `-p "": want [hostaddr:]hostport:guestport, such as 8080:80, 127.0.0.1:8080:80 or [::1]:8080:80`},
		{in: "80", wantErr: `-p "80": want [hostaddr:]hostport:guestport, such as 8080:80, 127.0.0.1:8080:80 or [::1]:8080:80`},
		{in: "8080:0", wantErr: `-p "8080:0": guest port "0" is not a number from 1 to 65535`},
		{in: "8080:65536", wantErr: `-p "8080:65536": guest port "65536" is not a number from 1 to 65535`},
		{in: "8080:", wantErr: `-p "8080:": guest port "" is not a number from 1 to 65535`},
		{in: "8080:+80", wantErr: `-p "8080:+80": guest port "+80" is not a number from 1 to 65535`},
		{in: "8080:http", wantErr: `-p "8080:http": guest port "http" is not a number from 1 to 65535`},
		{in: "-1:80", wantErr: `-p "-1:80": host port "-1" is not a number from 0 to 65535 (0 picks a free port)`},
		{in: "99999:80", wantErr: `-p "99999:80": host port "99999" is not a number from 0 to 65535 (0 picks a free port)`},
		{in: ":80", wantErr: `-p ":80": host port "" is not a number from 0 to 65535 (0 picks a free port)`},
		{in: "localhost:8080:80", wantErr: `-p "localhost:8080:80": host address "localhost" is not an IP address`},
		{in: ":8080:80", wantErr: `-p ":8080:80": host address "" is not an IP address`},
		{in: "::1:8080:80", wantErr: `-p "::1:8080:80": IPv6 host addresses go in brackets, such as [::1]:8080:80`},
		{in: "1.2.3.4:8080:80:1", wantErr: `-p "1.2.3.4:8080:80:1": IPv6 host addresses go in brackets, such as [::1]:8080:80`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseSpec(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("ParseSpec(%q) (-want +got):\n%s", tt.in, diff)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}

func TestSpecJSON(t *testing.T) {
	in := []Spec{
		{netip.MustParseAddrPort("127.0.0.1:8080"), 80},
		{netip.MustParseAddrPort("[::1]:0"), 22},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `["127.0.0.1:8080:80","[::1]:0:22"]`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var out []Spec
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}
