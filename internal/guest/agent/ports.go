package agent

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Port is one listening socket in the guest.
type Port struct {
	Proto   string     `json:"proto"` // "tcp" or "udp"
	Address netip.Addr `json:"address"`
	Port    uint16     `json:"port"`
	// PID and Process name the owner when it could be found.
	PID     int    `json:"pid,omitempty"`
	Process string `json:"process,omitempty"`

	inode uint64
}

func (a *Agent) handlePorts(w http.ResponseWriter, r *http.Request) {
	ps, err := listPorts(a.proc)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

// listPorts reads the socket tables of procfs and names each socket's
// owner by matching inodes under /proc/*/fd (no dependency on ss).
func listPorts(proc string) ([]Port, error) {
	var all []Port
	for _, t := range []struct{ file, proto string }{
		{"tcp", "tcp"}, {"tcp6", "tcp"}, {"udp", "udp"}, {"udp6", "udp"},
	} {
		f, err := os.Open(filepath.Join(proc, "net", t.file))
		if os.IsNotExist(err) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, err
		}
		ps, err := parseSockets(f, t.proto)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f.Name(), err)
		}
		all = append(all, ps...)
	}
	owners := socketOwners(proc)
	for i := range all {
		if pid, ok := owners[all[i].inode]; ok {
			all[i].PID = pid
			if b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "comm")); err == nil {
				all[i].Process = strings.TrimSpace(string(b))
			}
		}
	}
	slices.SortFunc(all, func(a, b Port) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), a.Address.Compare(b.Address))
	})
	return all, nil
}

const (
	tcpListen = "0A"
	tcpClose  = "07" // an unconnected UDP socket
)

// parseSockets reads one /proc/net/{tcp,tcp6,udp,udp6} table, keeping TCP
// sockets in LISTEN and UDP sockets bound but not connected.
func parseSockets(r io.Reader, proto string) ([]Port, error) {
	var ps []Port
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // column titles
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		local, remote, state := f[1], f[2], f[3]
		if proto == "tcp" && state != tcpListen {
			continue
		}
		if proto == "udp" {
			if state != tcpClose {
				continue
			}
			if _, rport, err := parseHexAddr(remote); err != nil || rport != 0 {
				continue
			}
		}
		addr, port, err := parseHexAddr(local)
		if err != nil {
			return nil, err
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("inode %q: %w", f[9], err)
		}
		ps = append(ps, Port{Proto: proto, Address: addr, Port: port, inode: inode})
	}
	return ps, sc.Err()
}

// parseHexAddr decodes "0100007F:1F90". The kernel prints the address as
// 32-bit words in host byte order, the port as a plain number.
func parseHexAddr(s string) (netip.Addr, uint16, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("address %q has no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("port in %q: %w", s, err)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, fmt.Errorf("address %q is not 4 or 16 hex bytes", s)
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i += 4 {
		b = binary.NativeEndian.AppendUint32(b, binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return addr.Unmap(), uint16(port), nil
}

// socketOwners maps socket inodes to the first process holding them.
// Processes that vanish or cannot be read are skipped.
func socketOwners(proc string) map[uint64]int {
	owners := map[uint64]int{}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return owners
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(proc, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			s, ok := strings.CutPrefix(link, "socket:[")
			if !ok {
				continue
			}
			inode, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
			if err != nil {
				continue
			}
			if _, ok := owners[inode]; !ok {
				owners[inode] = pid
			}
		}
	}
	return owners
}
