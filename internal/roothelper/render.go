package roothelper

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// ruleText renders a rule in nft syntax, as far as the expressions banger
// itself writes go; anything else shows up as its Go type, so a rule that
// someone changed never reads like one of ours.
func ruleText(exprs []expr.Any) string {
	var out []string
	lhs := ""    // what register 1 holds, in nft words
	ctMask := "" // ct state bits selected by a bitwise before a cmp
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Payload:
			switch {
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 12 && e.Len == 4:
				lhs = "ip saddr"
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 16 && e.Len == 4:
				lhs = "ip daddr"
			default:
				lhs = fmt.Sprintf("payload(base %d, offset %d, len %d)", e.Base, e.Offset, e.Len)
			}
		case *expr.Meta:
			switch e.Key {
			case expr.MetaKeyIIFNAME:
				lhs = "iifname"
			case expr.MetaKeyOIFNAME:
				lhs = "oifname"
			default:
				lhs = fmt.Sprintf("meta(%d)", e.Key)
			}
		case *expr.Ct:
			if e.Key == expr.CtKeySTATE {
				lhs = "ct state"
			} else {
				lhs = fmt.Sprintf("ct(%d)", e.Key)
			}
		case *expr.Bitwise:
			if lhs == "ct state" && len(e.Mask) == 4 && bytes.Equal(e.Xor, make([]byte, 4)) {
				ctMask = ctStates(binaryutil.NativeEndian.Uint32(e.Mask))
			} else {
				out = append(out, fmt.Sprintf("bitwise(%x, %x)", e.Mask, e.Xor))
			}
		case *expr.Cmp:
			out = append(out, cmpText(lhs, ctMask, e))
			lhs, ctMask = "", ""
		case *expr.Masq:
			out = append(out, "masquerade")
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				out = append(out, "accept")
			case expr.VerdictDrop:
				out = append(out, "drop")
			default:
				out = append(out, fmt.Sprintf("verdict(%d)", e.Kind))
			}
		default:
			out = append(out, fmt.Sprintf("%T", e))
		}
	}
	return strings.Join(out, " ")
}

func cmpText(lhs, ctMask string, e *expr.Cmp) string {
	// "ct state est,rel" is bitwise-and then "!= 0".
	if ctMask != "" && e.Op == expr.CmpOpNeq && bytes.Equal(e.Data, make([]byte, 4)) {
		return lhs + " " + ctMask
	}
	op := ""
	switch e.Op {
	case expr.CmpOpEq:
	case expr.CmpOpNeq:
		op = "!= "
	default:
		op = fmt.Sprintf("cmp(%d) ", e.Op)
	}
	var val string
	switch lhs {
	case "iifname", "oifname":
		val = fmt.Sprintf("%q", strings.TrimRight(string(e.Data), "\x00"))
	case "ip saddr", "ip daddr":
		if a, ok := netip.AddrFromSlice(e.Data); ok {
			val = a.String()
		}
	}
	if val == "" {
		val = fmt.Sprintf("0x%x", e.Data)
	}
	if lhs == "" {
		lhs = "?"
	}
	return lhs + " " + op + val
}

func ctStates(bits uint32) string {
	var names []string
	for _, s := range []struct {
		bit  uint32
		name string
	}{
		{expr.CtStateBitINVALID, "invalid"},
		{expr.CtStateBitESTABLISHED, "established"},
		{expr.CtStateBitRELATED, "related"},
		{expr.CtStateBitNEW, "new"},
		{expr.CtStateBitUNTRACKED, "untracked"},
	} {
		if bits&s.bit != 0 {
			names = append(names, s.name)
			bits &^= s.bit
		}
	}
	if bits != 0 {
		names = append(names, fmt.Sprintf("0x%x", bits))
	}
	return strings.Join(names, ",")
}
