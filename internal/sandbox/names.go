package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"

	"github.com/banger/banger/internal/api"
)

var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateName checks that a VM name is a DNS label: 1-63 characters of
// a-z, 0-9 and '-', not starting or ending with '-'. Names are rejected,
// never normalised: "MyVM" is an error, not "myvm".
func ValidateName(name string) error {
	if nameRe.MatchString(name) {
		return nil
	}
	why := "use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
	switch {
	case name == "":
		why = "the name is empty"
	case len(name) > 63:
		why = fmt.Sprintf("it is %d characters long; the limit is 63", len(name))
	}
	return api.WithHint(api.Errorf(api.CodeBadRequest, "invalid VM name %q: it must be a DNS label", name), why)
}

var adjectives = []string{
	"amber", "bold", "brisk", "calm", "clever", "cosy", "crisp", "eager", "fancy", "gentle",
	"glad", "happy", "jolly", "keen", "lively", "lucky", "merry", "mild", "nimble", "plucky",
	"proud", "quick", "quiet", "rapid", "shiny", "sunny", "swift", "tidy", "vivid", "witty",
}

var nouns = []string{
	"badger", "beacon", "canyon", "comet", "falcon", "fjord", "garnet", "harbor", "heron", "island",
	"lagoon", "lynx", "maple", "meadow", "nebula", "orchid", "otter", "panda", "pebble", "quartz",
	"raven", "river", "sparrow", "summit", "tiger", "tundra", "walrus", "willow", "yak", "zephyr",
}

func pick(list []string) string {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(list))))
	return list[n.Int64()]
}

// generateName returns an adjective-noun name that taken() does not report.
func generateName(taken func(string) bool) string {
	for range 100 {
		if n := pick(adjectives) + "-" + pick(nouns); !taken(n) {
			return n
		}
	}
	return "vm-" + newID()
}

// newID is a VM's short random id: it names the tap, the MAC and the
// runtime directory, which must stay short (IFNAMSIZ, sun_path).
func newID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
