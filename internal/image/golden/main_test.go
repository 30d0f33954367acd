package golden

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the external tools it fakes: run as
// "debootstrap" (a symlink in a PATH directory) or with GOLDEN_FAKE_NPM set,
// it behaves as that tool and records its arguments.
func TestMain(m *testing.M) {
	if os.Getenv("GOLDEN_FAKE_NPM") == "1" {
		os.Exit(fakeNPM(os.Args[1:]))
	}
	if filepath.Base(os.Args[0]) == "debootstrap" {
		os.Exit(fakeDebootstrap(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func record(args []string) {
	logPath := os.Getenv("GOLDEN_FAKE_LOG")
	if logPath == "" {
		return
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, strings.Join(args, " "))
}

// fakeNPM serves the tarball named by GOLDEN_FAKE_NPM_TGZ and the integrity
// in GOLDEN_FAKE_NPM_INTEGRITY.
func fakeNPM(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "fake npm: usage")
		return 1
	}
	record(args[:2])
	switch args[0] {
	case "view":
		b, _ := json.Marshal(os.Getenv("GOLDEN_FAKE_NPM_INTEGRITY"))
		fmt.Println(string(b))
		return 0
	case "pack":
		src, err := os.Open(os.Getenv("GOLDEN_FAKE_NPM_TGZ"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "npm error 404 Not Found")
			return 1
		}
		defer src.Close()
		name := "fake-mise-1.2.3.tgz"
		dst, err := os.Create(name) // npm pack writes into its working directory
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := io.Copy(dst, src); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		dst.Close()
		fmt.Printf(`[{"id":"x","filename":%q,"files":[]}]`+"\n", name)
		return 0
	}
	fmt.Fprintln(os.Stderr, "fake npm: unknown command", args[0])
	return 1
}

// fakeDebootstrap leaves files, a log naming the cause, and fails; with
// GOLDEN_FAKE_DEBOOTSTRAP=hang it waits to be killed instead.
func fakeDebootstrap(args []string) int {
	record(args)
	target := args[len(args)-1]
	if err := os.MkdirAll(filepath.Join(target, "debootstrap"), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.WriteFile(filepath.Join(target, "debootstrap", "debootstrap.log"), []byte("wget: unable to resolve host address\n"), 0o644)
	os.WriteFile(filepath.Join(target, "half-written"), []byte("x"), 0o644)
	fmt.Println("I: Retrieving InRelease")
	if os.Getenv("GOLDEN_FAKE_DEBOOTSTRAP") == "hang" {
		time.Sleep(time.Minute)
		return 0
	}
	fmt.Fprintln(os.Stderr, "E: Failed getting release file")
	return 1
}

// installFakeDebootstrap puts the test binary first on PATH as debootstrap.
func installFakeDebootstrap(t *testing.T) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "debootstrap")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}
