// Package postgres implements kith.Store on PostgreSQL, the scale-out
// backend: several Kith processes can share one database, and the schema
// stays free of cross-table foreign keys so that its large tables can be
// distributed (Citus).
//
// The ack path (Append) is one transaction that takes a transaction-level
// advisory lock, deduplicates messageIds through the message_ids table,
// inserts the events and bumps the counters. The lock makes the order of
// log Seqs equal to commit order across processes, which is what lets the
// indexer read "seq > cursor" without ever skipping an event that commits
// late. ApplyIndexBatch is one transaction guarded by a check-and-set of the
// index cursor row, so a second indexer gets ECONFLICT instead of applying
// a batch twice.
//
// All times are stored as timestamptz (microsecond precision) and returned
// in UTC.
package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kithcdp/kith"
)

// Advisory lock classes. The second key of each lock is a hash of the
// current schema, so that installations in different schemas of one
// database do not serialise each other.
const (
	lockLog     = 0x6b697468 // "kith": the ack path's log order
	lockMigrate = 0x6b697469 // schema migrations
)

// lockSQL takes the advisory lock of class $1 for the current schema until
// the transaction ends.
const lockSQL = `SELECT pg_advisory_xact_lock($1::integer, hashtext(coalesce(current_schema(), '')))`

// DB is a kith.Store backed by a PostgreSQL connection pool. It is safe for
// concurrent use, also by several processes sharing one database.
type DB struct {
	pool *pgxpool.Pool
}

var _ kith.Store = (*DB)(nil)

// Open connects to the database at url (a postgres:// URL or key=value
// connection string, as pgx accepts) and applies pending migrations. The
// tables live in the first schema of the connection's search_path, which a
// URL can set with a search_path parameter.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	db := &DB{pool: pool}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the connection pool. Calls after Close fail.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// isUniqueViolation reports whether err is a PostgreSQL unique_violation.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// rollback ends tx after a failure; its own error adds nothing to the one
// being returned.
func rollback(ctx context.Context, tx pgx.Tx) {
	_ = tx.Rollback(context.WithoutCancel(ctx))
}
