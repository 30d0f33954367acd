package config

import (
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/config.md")

func TestDocsConfigIsCurrent(t *testing.T) {
	const path = "../../docs/config.md"
	if *update {
		if err := os.WriteFile(path, []byte(Markdown()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != Markdown() {
		t.Errorf("docs/config.md is stale: run go test ./internal/config -run TestDocsConfigIsCurrent -update")
	}
}
