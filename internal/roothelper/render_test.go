package roothelper

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
)

func TestNATRulesText(t *testing.T) {
	var got []string
	for _, r := range natRules("banger0", "bgtap7", netip.MustParseAddr("172.16.0.9")) {
		got = append(got, r.chain+" "+r.role+": "+ruleText(r.exprs))
	}
	want := []string{
		`postrouting masquerade: ip saddr 172.16.0.9 oifname != "banger0" masquerade`,
		`forward forward-out: iifname "bgtap7" accept`,
		`forward forward-return: oifname "bgtap7" ct state established,related accept`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
}

func TestRuleTextForeign(t *testing.T) {
	tests := []struct {
		name  string
		exprs []expr.Any
		want  string
	}{
		{"daddr drop", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 0, 0, 1}},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}, "ip daddr 10.0.0.1 drop"},
		{"unknown payload and counter", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 22}},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: "x"},
		}, "payload(base 2, offset 2, len 2) 0x0016 *expr.Counter verdict(-3)"},
		{"ct new", []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{8, 0, 0, 0}, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}, "ct state new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ruleText(tt.exprs); got != tt.want {
				t.Errorf("ruleText = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNATTag(t *testing.T) {
	ip := netip.MustParseAddr("172.16.0.2")
	tag := natTag(roleForwardOut, ip, "bgtap1")
	if tag != "banger forward-out 172.16.0.2 bgtap1" {
		t.Errorf("natTag = %q", tag)
	}
	role, gotIP, tap, ok := parseNATTag(tag)
	if !ok || role != roleForwardOut || gotIP != ip || tap != "bgtap1" {
		t.Errorf("parseNATTag(%q) = %q %v %q %v", tag, role, gotIP, tap, ok)
	}
	for _, bad := range []string{"", "banger", "docker masquerade 172.16.0.2 bgtap1", "banger masquerade nothere bgtap1", "banger a b c d"} {
		if _, _, _, ok := parseNATTag(bad); ok {
			t.Errorf("parseNATTag(%q) accepted", bad)
		}
	}
}
