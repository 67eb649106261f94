package postgres

import (
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/storetest"
)

// FuzzWritePath: whatever collection accepts, PostgreSQL holds, indexes
// and gives back (storetest.FuzzWritePath). PostgreSQL is the store that
// refuses NUL characters and invalid UTF-8 in text.
func FuzzWritePath(f *testing.F) {
	url := newSchema(f)
	storetest.FuzzWritePath(f, func(tb testing.TB) kith.Store {
		db := mustOpen(tb, url)
		tb.Cleanup(func() { db.Close() })
		return db
	})
}
