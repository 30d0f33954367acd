package golden

import (
	"context"
	"github.com/banger/banger/internal/namelock"
	"path/filepath"
)

// lockDir takes an exclusive flock on dir/.lock, waiting (and calling onWait
// once) while another build holds it. The kernel drops the lock if the
// process dies, so a crashed build never blocks the next one.
func lockDir(ctx context.Context, dir string, onWait func()) (unlock func(), err error) {
	return namelock.LockFile(ctx, filepath.Join(dir, ".lock"), onWait)
}
