package command

import (
	"context"
	"strings"
	"testing"
)

func TestErrorCarriesArgvAndTail(t *testing.T) {
	_, err := Output(context.Background(), "sh", "-c", "echo one; echo two >&2; echo three >&2; exit 3")
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{"sh -c", "exit status 3", "two | three"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
}

func TestOutput(t *testing.T) {
	out, err := Output(context.Background(), "echo", "hi")
	if err != nil || string(out) != "hi\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
}
