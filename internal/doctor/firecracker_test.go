package doctor

import (
	"errors"
	"strings"
	"testing"

	"github.com/banger/banger/internal/host"
)

func TestFirecrackerCheck(t *testing.T) {
	tests := []struct {
		name   string
		tool   host.Tool
		status Status
		detail string
	}{
		{"missing", host.Tool{Name: "firecracker", Err: errors.New("not found")}, Warn, "not found"},
		{"current", host.Tool{Path: "/usr/bin/firecracker", Version: "1.16.1"}, Pass, "through ACPI"},
		{"before ACPI", host.Tool{Path: "/usr/bin/firecracker", Version: "1.7.0"}, Warn, "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES"},
		{"too old", host.Tool{Path: "/usr/bin/firecracker", Version: "0.25.2"}, Warn, "older than 1.0.0, not used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, detail, fix := firecrackerCheck(tt.tool)
			if s != tt.status || !strings.Contains(detail, tt.detail) {
				t.Errorf("got %s %q, want %s with %q", s, detail, tt.status, tt.detail)
			}
			if s != Pass && fix == "" {
				t.Error("no fix given")
			}
		})
	}
}

func TestJailerCheck(t *testing.T) {
	fc := host.Tool{Path: "/usr/bin/firecracker", Version: "1.16.1"}
	tests := []struct {
		name   string
		jailer host.Tool
		status Status
	}{
		{"matching", host.Tool{Path: "/usr/bin/jailer", Version: "1.16.1"}, Pass},
		{"other release", host.Tool{Path: "/usr/bin/jailer", Version: "1.15.0"}, Fail},
		{"missing", host.Tool{Err: errors.New("not found")}, Fail},
	}
	for _, tt := range tests {
		if s, detail, _ := jailerCheck(tt.jailer, fc); s != tt.status {
			t.Errorf("%s: got %s %q, want %s", tt.name, s, detail, tt.status)
		}
	}
}
