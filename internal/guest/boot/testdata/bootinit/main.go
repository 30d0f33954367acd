// Command bootinit stands in for banger-agent in the boot package's QEMU
// test: package boot as PID 1, and a marker line when started as the agent.
package main

import (
	"fmt"
	"os"

	"github.com/banger/banger/internal/guest/boot"
)

func main() {
	if os.Getpid() == 1 {
		boot.Main()
	}
	fmt.Printf("BANGER-TEST-AGENT %s pid %d\n", os.Args[0], os.Getpid())
}
