package install

import (
	"bytes"
	"fmt"
	"os/user"
	"strings"
	"text/template"

	"github.com/banger/banger/internal/paths"
)

// UnitOptions shape the two systemd units.
type UnitOptions struct {
	BinDir string
	Owner  Owner
	Layout paths.Layout
	// ExtraGroups are supplementary groups for the owner daemon (kvm, so the
	// VMM it starts can open /dev/kvm).
	ExtraGroups []string
}

// The helper's unit carries the lessons of the reference (§3.8, §9.3):
// KillMode=process and SendSIGKILL=no so restarting or upgrading the helper
// never kills VMs; RuntimeDirectoryPreserve so /run/banger-root survives a
// restart; a bounded capability set.
const helperUnit = `[Unit]
Description=banger root helper (bridge, taps, NAT, resolver routing)
Documentation=file://{{.BinDir}}/banger
After=network.target
Before=bangerd.service

[Service]
Type=simple
ExecStart={{.BinDir}}/bangerd-root
Restart=on-failure
RestartSec=1s
KillMode=process
SendSIGKILL=no
RuntimeDirectory=banger-root
RuntimeDirectoryMode=0711
RuntimeDirectoryPreserve=yes
CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_KILL CAP_MKNOD CAP_NET_ADMIN CAP_NET_RAW CAP_SETGID CAP_SETUID CAP_SYS_ADMIN CAP_SYS_CHROOT
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_VSOCK
LockPersonality=yes
SystemCallArchitectures=native
ProtectHome=read-only
UMask=0077

[Install]
WantedBy=multi-user.target
`

// The owner daemon runs the VMMs as its children, so it too must not take
// them down when it stops or restarts: KillMode=process, SendSIGKILL=no. It
// has no capabilities at all and sees the owner's home read-only.
const daemonUnit = `[Unit]
Description=banger owner daemon (VMs, images, kernels, DNS)
Documentation=file://{{.BinDir}}/banger
Wants=bangerd-root.service
After=network.target bangerd-root.service

[Service]
Type=simple
User={{.Owner.User}}
Group={{.Group}}
{{- if .ExtraGroups}}
SupplementaryGroups={{join .ExtraGroups " "}}
{{- end}}
ExecStart={{.BinDir}}/bangerd --system
Restart=on-failure
RestartSec=1s
KillMode=process
SendSIGKILL=no
RuntimeDirectory=banger
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
StateDirectory=banger
StateDirectoryMode=0700
CacheDirectory=banger
CacheDirectoryMode=0700
CapabilityBoundingSet=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_VSOCK
LockPersonality=yes
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=multi-user.target
`

// Units renders both unit files, keyed by file name.
func Units(o UnitOptions) (map[string]string, error) {
	group := o.Owner.User
	if g, err := user.LookupGroupId(fmt.Sprint(o.Owner.GID)); err == nil {
		group = g.Name
	}
	data := struct {
		UnitOptions
		Group string
	}{o, group}
	funcs := template.FuncMap{"join": strings.Join}
	out := map[string]string{}
	for name, text := range map[string]string{paths.HelperUnit: helperUnit, paths.DaemonUnit: daemonUnit} {
		t, err := template.New(name).Funcs(funcs).Parse(text)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return nil, err
		}
		out[name] = b.String()
	}
	return out, nil
}
