package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// arReader reads the members of a Unix ar archive, the container of a .deb.
type arReader struct {
	r      *bufio.Reader
	remain int64 // unread bytes of the current member
	pad    int64 // padding after it (members start at even offsets)
}

const arMagic = "!<arch>\n"

func newArReader(r io.Reader) (*arReader, error) {
	br := bufio.NewReader(r)
	var magic [len(arMagic)]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || string(magic[:]) != arMagic {
		return nil, errors.New("not an ar archive")
	}
	return &arReader{r: br}, nil
}

// next skips to the next member and returns its name and size; its data is
// then read from the arReader. It returns io.EOF after the last member.
func (a *arReader) next() (string, int64, error) {
	if _, err := a.r.Discard(int(a.remain + a.pad)); err != nil {
		return "", 0, fmt.Errorf("ar: %w", io.ErrUnexpectedEOF)
	}
	var hdr [60]byte
	if _, err := io.ReadFull(a.r, hdr[:]); err != nil {
		if err == io.EOF {
			return "", 0, io.EOF
		}
		return "", 0, fmt.Errorf("ar: truncated header: %w", err)
	}
	if string(hdr[58:60]) != "`\n" {
		return "", 0, errors.New("ar: bad member header")
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
	if err != nil || size < 0 {
		return "", 0, fmt.Errorf("ar: bad member size %q", hdr[48:58])
	}
	// GNU ar ends names with '/'; dpkg's members never use long names.
	name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
	a.remain, a.pad = size, size%2
	return name, size, nil
}

func (a *arReader) Read(p []byte) (int, error) {
	if a.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > a.remain {
		p = p[:a.remain]
	}
	n, err := a.r.Read(p)
	a.remain -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
