package host

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// TestMain turns the test binary into a fake external program when a test
// asks for it: it prints $BANGER_FAKE_OUTPUT and exits $BANGER_FAKE_EXIT.
func TestMain(m *testing.M) {
	if os.Getenv("BANGER_FAKE_TOOL") == "1" {
		fmt.Print(os.Getenv("BANGER_FAKE_OUTPUT"))
		code, _ := strconv.Atoi(os.Getenv("BANGER_FAKE_EXIT"))
		os.Exit(code)
	}
	os.Exit(m.Run())
}
