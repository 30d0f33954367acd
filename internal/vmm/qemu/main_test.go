package qemu

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain turns the test binary into a stand-in qemu-system-x86_64 when
// BANGER_FAKE_QEMU names a behaviour:
//
//	serve  open the -qmp socket and answer QMP; system_powerdown and quit end it
//	fail   print an error the way QEMU does and exit 1
//	hang   never open the QMP socket
func TestMain(m *testing.M) {
	switch os.Getenv("BANGER_FAKE_QEMU") {
	case "":
		os.Exit(m.Run())
	case "serve":
		fakeServe(os.Args[1:])
	case "fail":
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -drive file=/nope,if=none: Could not open '/nope': No such file or directory")
		os.Exit(1)
	case "hang":
		select {}
	}
	os.Exit(2)
}

// fakeServe answers QMP on the socket named by -qmp unix:PATH,....
func fakeServe(args []string) {
	var path string
	for i, a := range args {
		if a == "-qmp" && i+1 < len(args) {
			path, _, _ = strings.Cut(strings.TrimPrefix(args[i+1], "unix:"), ",")
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		os.Exit(1)
	}
	fmt.Println("fake qemu listening on", path)
	if fd3, err := os.Readlink("/proc/self/fd/3"); err == nil {
		fmt.Println("fake qemu fd 3:", fd3)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		fakeQMPConn(c)
	}
}

func fakeQMPConn(c net.Conn) {
	defer c.Close()
	enc := json.NewEncoder(c)
	enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 22}}, "capabilities": []string{"oob"}}})
	sc := bufio.NewScanner(c)
	negotiated := false
	for sc.Scan() {
		var req struct {
			Execute string `json:"execute"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			enc.Encode(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "bad json"}})
			continue
		}
		if !negotiated && req.Execute != "qmp_capabilities" {
			enc.Encode(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}})
			continue
		}
		// An event before every reply, as QEMU may send one at any time.
		enc.Encode(map[string]any{"event": "RTC_CHANGE", "data": map[string]int{"offset": 0}, "timestamp": map[string]int{"seconds": 1, "microseconds": 2}})
		switch req.Execute {
		case "qmp_capabilities":
			negotiated = true
			enc.Encode(map[string]any{"return": map[string]any{}})
		case "query-version":
			enc.Encode(map[string]any{"return": map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 22}, "package": "fake"}})
		case "query-status":
			enc.Encode(map[string]any{"return": map[string]any{"status": "running", "running": true}})
		case "system_powerdown":
			enc.Encode(map[string]any{"return": map[string]any{}})
			time.Sleep(50 * time.Millisecond) // the guest takes a moment to power off
			os.Exit(0)
		case "quit":
			enc.Encode(map[string]any{"return": map[string]any{}})
			os.Exit(0)
		default:
			enc.Encode(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "The command " + req.Execute + " has not been found"}})
		}
	}
}
