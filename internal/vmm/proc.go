package vmm

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat is what banger reads of /proc/<pid>/stat.
type procStat struct {
	State     byte   // field 3: R, S, D, Z, X, ...
	Session   int    // field 6
	StartTime uint64 // field 22: clock ticks after boot
}

// readStat parses /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from its last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse stat: no command name in %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3, so field n is f[n-3].
	if len(f) < 22-3+1 {
		return procStat{}, fmt.Errorf("parse stat: %d fields", len(f)+2)
	}
	var st procStat
	if len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse stat: state %q", f[0])
	}
	st.State = f[0][0]
	sid, err := strconv.Atoi(f[6-3])
	if err != nil {
		return procStat{}, fmt.Errorf("parse stat: session: %w", err)
	}
	st.Session = sid
	if st.StartTime, err = strconv.ParseUint(f[22-3], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("parse stat: start time: %w", err)
	}
	return st, nil
}

// exited: a zombie has exited and only waits to be reaped.
func (s procStat) exited() bool { return s.State == 'Z' || s.State == 'X' }

// readCmdline returns /proc/<pid>/cmdline as argv.
func readCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// bootID changes at every boot; with it a (pid, start time) pair recorded
// before a reboot can never match a process after it.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
