package roothelper

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const tunDevice = "/dev/net/tun"

// OpenTunDevice gives /dev/net/tun the mode Debian's udev rules give it
// (0666), when it is the real tun device and stricter than that. The VMM
// runs as the owner and opens its tap (created owned by the owner) through
// this device; the kernel still checks tap ownership on attach, so the
// mode grants nothing beyond taps a user already owns.
func OpenTunDevice() error {
	var st unix.Stat_t
	if err := unix.Stat(tunDevice, &st); err != nil {
		return fmt.Errorf("%s: %w", tunDevice, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 10 || unix.Minor(st.Rdev) != 200 {
		return fmt.Errorf("%s is not the tun character device (10:200)", tunDevice)
	}
	if st.Mode&0o666 == 0o666 {
		return nil
	}
	return os.Chmod(tunDevice, 0o666)
}
