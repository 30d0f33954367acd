package boot

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var paramsCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestCmdlineRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		want string
	}{
		{
			name: "full",
			p: Params{
				Image: Disk{Serial: "banger-image"}, Layer: Disk{Serial: "banger-layer"}, Work: Disk{Serial: "banger-work"},
				Address: netip.MustParsePrefix("172.30.0.5/24"), Gateway: netip.MustParseAddr("172.30.0.1"),
				MAC: mustMAC("02:fc:00:00:00:05"), DNS: []netip.Addr{netip.MustParseAddr("172.30.0.1"), netip.MustParseAddr("9.9.9.9")},
				Hostname: "dev-box", Agent: AgentVsock(1024), Init: "/lib/systemd/systemd", Debug: true,
			},
			want: "banger.image=serial:banger-image banger.layer=serial:banger-layer banger.work=serial:banger-work " +
				"banger.ip=172.30.0.5/24 banger.gw=172.30.0.1 banger.mac=02:fc:00:00:00:05 banger.dns=172.30.0.1,9.9.9.9 " +
				"banger.hostname=dev-box banger.agent=vsock:1024 banger.init=/lib/systemd/systemd banger.debug=1",
		},
		{
			name: "minimal, disks by name",
			p:    Params{Image: Disk{Name: "vda"}, Layer: Disk{Name: "vdb"}, Agent: AgentVirtioSerial},
			want: "banger.image=vda banger.layer=vdb banger.agent=virtio-serial",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.Cmdline()
			if got != tt.want {
				t.Fatalf("Cmdline:\n got %s\nwant %s", got, tt.want)
			}
			// Embedded in a real command line, among other parameters.
			back, err := ParseCmdline("console=ttyS0 reboot=k panic=-1 " + got + " net.ifnames=0 quiet")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.p, back, paramsCmp); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	base := "banger.image=vda banger.layer=vdb "
	tests := []struct {
		name, cmdline, err string
	}{
		{"no image", "banger.layer=vdb", "banger.image is required"},
		{"no layer", "banger.image=vda", "banger.layer is required"},
		{"same disk twice", "banger.image=serial:x banger.layer=serial:x", "banger.image and banger.layer name the same disk"},
		{"unknown key", base + "banger.ipaddr=10.0.0.2/24", "unknown parameter banger.ipaddr"},
		{"bad disk", "banger.image=/dev/vda banger.layer=vdb", "want serial:S or a virtio disk name"},
		{"long serial", "banger.image=serial:123456789012345678901 banger.layer=vdb", "1-20 printable"},
		{"ip without mac", base + "banger.ip=10.0.0.2/24", "needs banger.mac"},
		{"ip without prefix", base + "banger.ip=10.0.0.2 banger.mac=02:00:00:00:00:01", "banger.ip"},
		{"ipv6", base + "banger.ip=fd00::2/64 banger.mac=02:00:00:00:00:01", "only IPv4"},
		{"gateway outside", base + "banger.ip=10.0.0.2/24 banger.mac=02:00:00:00:00:01 banger.gw=10.0.1.1", "not inside 10.0.0.0/24"},
		{"gateway alone", base + "banger.gw=10.0.0.1", "needs banger.ip"},
		{"bad mac", base + "banger.mac=zz:00", "banger.mac"},
		{"long mac", base + "banger.mac=00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "not an Ethernet address"},
		{"bad dns", base + "banger.dns=1.1.1.1,one", "banger.dns"},
		{"bad hostname", base + "banger.hostname=Dev_Box", "not a DNS label"},
		{"bad agent", base + "banger.agent=tcp:22", "want virtio-serial or vsock:PORT"},
		{"vsock port zero", base + "banger.agent=vsock:0", "vsock:PORT"},
		{"relative init", base + "banger.init=sbin/init", "clean absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCmdline(tt.cmdline)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestVsockPort(t *testing.T) {
	for _, tt := range []struct {
		agent string
		port  uint32
		ok    bool
	}{{AgentVsock(52), 52, true}, {AgentVirtioSerial, 0, false}, {"", 0, false}} {
		port, ok := Params{Agent: tt.agent}.VsockPort()
		if port != tt.port || ok != tt.ok {
			t.Errorf("%q: got %d %v, want %d %v", tt.agent, port, ok, tt.port, tt.ok)
		}
	}
}

func TestModuleParams(t *testing.T) {
	cmdline := `console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio-mmio.device=4K@0xd0001000:6 ` +
		`virtio_mmio.force_legacy=1 virtio_mmio_extra.x=1 dyndbg="file virtio_mmio.c +p" ` +
		`overlay.metacopy="on" banger.debug=1 virtio_blk.=bad`
	tests := []struct{ module, want string }{
		{"virtio_mmio", "device=4K@0xd0000000:5 device=4K@0xd0001000:6 force_legacy=1"},
		{"virtio-mmio", "device=4K@0xd0000000:5 device=4K@0xd0001000:6 force_legacy=1"},
		{"overlay", `metacopy="on"`},
		{"virtio_blk", ""},
		{"ext4", ""},
	}
	for _, tt := range tests {
		t.Run(tt.module, func(t *testing.T) {
			if got := ModuleParams(cmdline, tt.module); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSplitCmdline(t *testing.T) {
	got := splitCmdline(` a=1  b="x y" "c=z w"` + "\td\n")
	want := []cmdArg{{"a=1", "a=1"}, {"b=x y", `b="x y"`}, {"c=z w", `"c=z w"`}, {"d", "d"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(cmdArg{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
