package sshkeys

import (
	"strings"

	"github.com/banger/banger/internal/api"
)

// DefaultUser is the guest account ssh logs in as.
const DefaultUser = "root"

// Command is the argv of the system ssh client reaching the VM described by
// info: banger's key only, banger's known_hosts only, strict host key
// checking against the entry for NAME.vm. extra follows the destination;
// ssh still reads options there (-L, -p, -t, ...) until the first word that
// is not one, which starts the remote command.
func Command(info api.SSHInfo, extra []string) []string {
	user := info.User
	if user == "" {
		user = DefaultUser
	}
	argv := []string{
		"ssh",
		"-i", info.KeyPath, // ssh checks -i's file before expanding %-tokens
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + configValue(escapeTokens(info.KnownHosts)),
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "HostKeyAlias=" + Host(info.Name),
		"-o", "User=" + user,
		"-o", "LogLevel=ERROR",
		info.IP,
	}
	return append(argv, extra...)
}

// escapeTokens protects a path from ssh's %-token expansion.
func escapeTokens(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// configValue quotes a value for an ssh_config line (or -o) when it holds
// white space; ssh_config has no escape for '"' itself.
func configValue(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}
