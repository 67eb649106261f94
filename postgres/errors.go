package postgres

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/kithcdp/kith"
)

// refusedData turns PostgreSQL's refusal of a value — a data exception
// (SQLSTATE class 22: a NUL character or invalid UTF-8 in text, a number
// out of range, …) or a value too large for an index (54000) — into an
// EINVALID error that still wraps the original, so that callers can tell
// "this data cannot be stored" from "the database is unavailable": the
// committer then commits a group's requests one by one and the indexer
// finds and sets aside the one event that carries it, instead of retrying
// the same batch forever. A full disk (53100) becomes EUNAVAILABLE, which
// collection answers with 503 and Retry-After. Other errors pass through
// unchanged.
func refusedData(err error) error {
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	if strings.HasPrefix(pe.Code, "22") || pe.Code == "54000" {
		return fmt.Errorf("%w: %w", kith.Errorf(kith.EINVALID, "the database refused a value: %s", pe.Message), err)
	}
	if pe.Code == "53100" { // disk_full
		return fmt.Errorf("%w: %w", kith.Errorf(kith.EUNAVAILABLE, "the database's disk is full; nothing was stored"), err)
	}
	return err
}
