package sandbox

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/banger/banger/internal/api"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "web-1", "x0", strings.Repeat("a", 63), "9lives"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "MyVM", "a_b", "a.b", "a/b", "../x", "é", "a b", strings.Repeat("a", 64)} {
		if err := ValidateName(bad); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("ValidateName(%q) = %v, want bad_request", bad, err)
		}
	}
}

func TestGeneratedNamesAreValidAndFree(t *testing.T) {
	taken := map[string]bool{}
	for range 50 {
		n := generateName(func(s string) bool { return taken[s] })
		if err := ValidateName(n); err != nil || taken[n] {
			t.Fatalf("generated %q: %v (taken %v)", n, err, taken[n])
		}
		taken[n] = true
	}
}

func TestNextAddress(t *testing.T) {
	br := netip.MustParsePrefix("172.16.0.1/29") // .0 net, .1 bridge, .2-.6 guests, .7 broadcast
	used := map[netip.Addr]bool{}
	var got []string
	for range 5 {
		a, err := nextAddress(br, used)
		if err != nil {
			t.Fatal(err)
		}
		used[a] = true
		got = append(got, a.String())
	}
	if strings.Join(got, ",") != "172.16.0.2,172.16.0.3,172.16.0.4,172.16.0.5,172.16.0.6" {
		t.Errorf("allocated %v", got)
	}
	if _, err := nextAddress(br, used); !errors.Is(err, api.ErrConflict) {
		t.Errorf("full subnet: %v", err)
	}
	delete(used, netip.MustParseAddr("172.16.0.3"))
	if a, _ := nextAddress(br, used); a.String() != "172.16.0.3" {
		t.Errorf("released address not reused first: %v", a)
	}
	br2 := netip.MustParsePrefix("10.0.0.5/24") // bridge in the middle
	if a, _ := nextAddress(br2, map[netip.Addr]bool{}); a.String() != "10.0.0.1" {
		t.Errorf("got %v", a)
	}
}

func TestMACAndTap(t *testing.T) {
	if m := macFor("1a2b3c4d"); m != "52:54:00:1a:2b:3c" {
		t.Errorf("mac %s", m)
	}
	if tp := tapFor("1a2b3c4d"); tp != "bgtap1a2b3c4d" || len(tp) > 15 {
		t.Errorf("tap %s", tp)
	}
}
