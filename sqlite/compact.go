package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
)

// Compact rewrites every database file of an embedded data directory and
// empties its write-ahead log, so that nothing deleted (an erased person's
// events and profile) survives in free pages, old WAL frames or unused
// space: VACUUM builds each file afresh, and a TRUNCATE checkpoint leaves
// the WAL empty. It needs the directory to itself: run it while the
// server is stopped (`kith compact --data DIR`).
func Compact(ctx context.Context, dir string) (map[string][2]int64, error) {
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	sizes := map[string][2]int64{}
	for _, f := range files {
		name := f.name
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); os.IsNotExist(err) {
			continue
		}
		before := fileSizes(path)
		f.synchronous = "FULL"
		db, err := sql.Open("sqlite", writerDSN(dir, f, f.writerCache))
		if err != nil {
			return sizes, fmt.Errorf("sqlite: compact %s: %w", name, err)
		}
		db.SetMaxOpenConns(1)
		for _, q := range []string{`PRAGMA wal_checkpoint(TRUNCATE)`, `VACUUM`, `PRAGMA wal_checkpoint(TRUNCATE)`} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				db.Close()
				return sizes, fmt.Errorf("sqlite: compact %s: %s: %w", name, q, err)
			}
		}
		if err := db.Close(); err != nil {
			return sizes, fmt.Errorf("sqlite: compact %s: %w", name, err)
		}
		sizes[name] = [2]int64{before, fileSizes(path)}
	}
	return sizes, nil
}

// fileSizes is the size of a database file with its WAL.
func fileSizes(path string) int64 {
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return n
}
