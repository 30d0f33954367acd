package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// addArtefactCmds adds the kernel and image commands.
func (a *App) addArtefactCmds(root *cobra.Command) {
	k := &cobra.Command{
		Use:   "kernel",
		Short: "List, import and remove guest kernels",
		Long: `Kernels live in bangerd's kernel store. The default image brings its own
(debian-cloud); import others from a Debian linux-image package or from a
kernel file and its modules directory.`,
	}
	k.AddCommand(a.kernelListCmd(), a.kernelShowCmd(), a.kernelImportCmd(), a.kernelRmCmd())
	img := &cobra.Command{
		Use:   "image",
		Short: "Pull, list and remove images",
		Long: `An image is a root filesystem shared read-only by its VMs, the initial /root
of their work disks, and a kernel. The default image (debian-bookworm) is
built on this host from Debian packages the first time it is pulled, by
banger image pull or by the first vm create that needs it.`,
	}
	img.AddCommand(a.imageListCmd(), a.imageShowCmd(), a.imagePullCmd(), a.imageRmCmd())
	root.AddCommand(k, img)
}

// humanSize prints a byte count with a binary unit ("1.2 GiB", "830 KiB").
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[exp]
	if v >= 100 {
		return fmt.Sprintf("%.0f %s", v, suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// age prints how long ago t was, coarsely ("5m ago", "3d ago").
func age(t time.Time, now time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return "-"
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

// orDash is s, or "-" when empty.
func orDash(s ...string) string {
	j := strings.Join(s, ", ")
	if j == "" {
		return "-"
	}
	return j
}
