package sqlite

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/kithcdp/kith"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// diskFull turns SQLite's "database or disk is full" (SQLITE_FULL, ENOSPC)
// and a failed write (SQLITE_IOERR: a file size limit, a disk that went
// away) into EUNAVAILABLE, which collection answers with 503 and
// Retry-After so that SDKs back off and retry: the transaction was rolled
// back, nothing was acknowledged, and the same request succeeds once the
// disk takes writes again. Other errors pass through.
func diskFull(err error) error {
	if err == nil {
		return nil
	}
	var se *msqlite.Error
	full := errors.Is(err, syscall.ENOSPC)
	if errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_FULL || se.Code()&0xff == sqlite3.SQLITE_IOERR) {
		full = true
	}
	if !full {
		return err
	}
	return fmt.Errorf("%w: %w", kith.Errorf(kith.EUNAVAILABLE, "the disk is full or refuses writes; nothing was stored"), err)
}
