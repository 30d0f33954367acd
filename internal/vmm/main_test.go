package vmm

import (
	"os"
	"os/signal"
	"testing"
)

// TestMain turns the test binary into a stand-in VMM process when a test
// asks for one (BANGER_FAKE_VMM=1): it lives, with whatever command line
// the test gave it, until it is killed.
func TestMain(m *testing.M) {
	if os.Getenv("BANGER_FAKE_VMM") == "1" {
		signal.Ignore(os.Interrupt)
		select {}
	}
	os.Exit(m.Run())
}
