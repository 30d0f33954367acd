package golden

// file is one file the builder writes into the root filesystem.
type file struct {
	Path    string // inside the root, absolute
	Mode    uint32 // permission bits
	Content string
}

// Unit and file names other parts of banger may rely on.
const (
	SSHDropIn  = "/etc/ssh/sshd_config.d/99-banger.conf"
	KeygenUnit = "banger-ssh-keygen.service"
)

const sshdDropIn = `# banger: guests are single-user sandboxes reached only with the owner's key.
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile /root/.ssh/authorized_keys
# One ed25519 host key per VM: generating RSA keys costs ~10 s of a boot
# under software emulation, and banger pins the ed25519 key anyway.
HostKey /etc/ssh/ssh_host_ed25519_key
`

// Debian's sshd refuses to start without host keys and does not create them,
// and the image ships none so that no two VMs share a key.
const keygenUnit = `[Unit]
Description=Generate this VM's SSH host keys
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=ssh.service ssh.socket
`

// Packages installed later inside a VM stay as small as the image.
const dpkgExcludes = `# banger: no documentation in sandboxes (copyright files stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
`

// hostname is a placeholder; each VM is given its own name at boot.
const hostname = "banger\n"

const hosts = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
`

// rootFiles are written into the root after the packages are installed.
// debootstrap copies the build host's hostname, hosts and resolv.conf; none
// of them may leak into the image.
func rootFiles() []file {
	return []file{
		{SSHDropIn, 0o644, sshdDropIn},
		{"/etc/systemd/system/" + KeygenUnit, 0o644, keygenUnit},
		{"/etc/dpkg/dpkg.cfg.d/banger-nodoc", 0o644, dpkgExcludes},
		{"/etc/hostname", 0o644, hostname},
		{"/etc/hosts", 0o644, hosts},
		// glibc's built-in UTF-8 locale; without it pam_env complains on
		// every login and tmux draws in ASCII.
		{"/etc/default/locale", 0o644, "LANG=C.UTF-8\n"},
		// Each VM's network setup writes its resolver.
		{"/etc/resolv.conf", 0o644, ""},
		// banger's init mounts everything.
		{"/etc/fstab", 0o644, ""},
		// Empty: systemd makes one per boot and does not treat the boot as a
		// first boot (no firstboot prompts on the console).
		{"/etc/machine-id", 0o444, ""},
	}
}

// maskedUnits would slow boot, touch the network or do host maintenance that
// makes no sense in a throwaway sandbox. Masking also survives upgrades.
func maskedUnits() []string {
	return []string{
		"apt-daily.timer",
		"apt-daily-upgrade.timer",
		"dpkg-db-backup.timer",
		"e2scrub_all.timer",
		"e2scrub_reap.service",
		"fstrim.timer",
		// Nothing in the guest provides network-online.target, and a waiter
		// would hold up docker.service for its full timeout.
		"systemd-networkd-wait-online.service",
	}
}

func enabledUnits() []string {
	return []string{KeygenUnit, "ssh.service", "docker.service"}
}

// bashrcMise is appended to /root/.bashrc so mise-managed tools are on PATH in
// interactive shells.
const bashrcMise = `
# banger: mise-managed tools
if [ -x /usr/local/bin/mise ]; then
	eval "$(/usr/local/bin/mise activate bash)"
fi
`
