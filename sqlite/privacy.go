package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/membership"
)

// erasureRecord is an Erasure as stored (the key in hex).

// SaveErasure implements kith.PrivacyStore, in log.db.
func (db *DB) SaveErasure(ctx context.Context, e kith.Erasure) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := db.logW.ExecContext(ctx, `INSERT INTO erasures (id, created_at, body) VALUES ($1,$2,$3)
		ON CONFLICT (id) DO UPDATE SET body = excluded.body`, e.ID, micros(e.CreatedAt), b); err != nil {
		return fmt.Errorf("sqlite: save erasure: %w", err)
	}
	return nil
}

func decodeErasure(b []byte) (kith.Erasure, error) {
	var e kith.Erasure
	if err := json.Unmarshal(b, &e); err != nil {
		return kith.Erasure{}, fmt.Errorf("sqlite: decode erasure: %w", err)
	}
	return e, nil
}

// Erasure implements kith.PrivacyStore.
func (db *DB) Erasure(ctx context.Context, id string) (kith.Erasure, error) {
	var b []byte
	err := db.logR.QueryRowContext(ctx, `SELECT body FROM erasures WHERE id = $1`, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return kith.Erasure{}, kith.Errorf(kith.ENOTFOUND, "no erasure %q", id)
	} else if err != nil {
		return kith.Erasure{}, fmt.Errorf("sqlite: erasure: %w", err)
	}
	return decodeErasure(b)
}

// Erasures implements kith.PrivacyStore.
func (db *DB) Erasures(ctx context.Context, limit int) ([]kith.Erasure, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT body FROM erasures ORDER BY created_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: erasures: %w", err)
	}
	defer rows.Close()
	var out []kith.Erasure
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("sqlite: erasures: %w", err)
		}
		e, err := decodeErasure(b)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// AddSuppressions implements kith.PrivacyStore.
func (db *DB) AddSuppressions(ctx context.Context, keys []kith.IdentKey, at time.Time) error {
	tx, err := db.logW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: add suppressions: %w", err)
	}
	defer tx.Rollback()
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `INSERT INTO suppressions (key, at) VALUES ($1,$2) ON CONFLICT DO NOTHING`, k[:], micros(at)); err != nil {
			return fmt.Errorf("sqlite: add suppressions: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: add suppressions: %w", err)
	}
	return nil
}

// Suppressions implements kith.PrivacyStore.
func (db *DB) Suppressions(ctx context.Context) ([]kith.IdentKey, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT key FROM suppressions`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: suppressions: %w", err)
	}
	defer rows.Close()
	var out []kith.IdentKey
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("sqlite: suppressions: %w", err)
		}
		var k kith.IdentKey
		copy(k[:], b)
		out = append(out, k)
	}
	return out, rows.Err()
}

// inList returns "$first,...,$(first+n-1)".
func inList(first, n int) string {
	ph := make([]string, n)
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", first+i)
	}
	return strings.Join(ph, ",")
}

// execChunked runs query (with one "%s" for an IN list, which may appear
// more than once as "%[1]s") over args in chunks of 500, and adds the
// rows affected under name. The query's other parameters come first, as
// $1..$len(lead), bound to lead.
func execChunked(ctx context.Context, tx *sql.Tx, counts map[string]int64, name, query string, args []any, lead ...any) error {
	for len(args) > 0 {
		n := min(len(args), 500)
		res, err := tx.ExecContext(ctx, fmt.Sprintf(query, inList(len(lead)+1, n)), append(lead[:len(lead):len(lead)], args[:n]...)...)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		k, _ := res.RowsAffected()
		counts[name] += k
		args = args[n:]
	}
	return nil
}

func anys[T any](xs []T, f func(T) any) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// ErasePeople implements kith.PrivacyStore: one transaction per file,
// the log first (once its events are gone, nothing can derive the person
// again), then the derived state, then the predictions. secure_delete
// zeroes what is deleted; `kith compact` rewrites the files and empties
// their write-ahead logs.
func (db *DB) ErasePeople(ctx context.Context, s kith.Cluster) (map[string]int64, error) {
	counts := map[string]int64{}
	members := anys(s.Members, func(m string) any { return m })
	keys := anys(s.Keys, func(k kith.IdentKey) any { return k[:] })
	seqs := anys(s.Seqs, func(q int64) any { return q })
	run := func(w *sql.DB, file string, steps func(tx *sql.Tx) error) error {
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: erase from %s: %w", file, err)
		}
		defer tx.Rollback()
		if err := steps(tx); err != nil {
			return fmt.Errorf("sqlite: erase from %s: %w", file, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: erase from %s: %w", file, err)
		}
		return nil
	}
	// The events go in transactions of 500, so a large profile does not
	// hold the log's writer (and the ack path behind it) for long.
	for len(seqs) > 0 {
		n := min(len(seqs), 500)
		chunk := seqs[:n]
		if err := run(db.logW, "log.db", func(tx *sql.Tx) error {
			return execChunked(ctx, tx, counts, "events", `DELETE FROM events WHERE seq IN (%s)`, chunk)
		}); err != nil {
			return counts, err
		}
		seqs = seqs[n:]
	}
	err := run(db.logW, "log.db", func(tx *sql.Tx) error {
		if err := execChunked(ctx, tx, counts, "third_party_audiences", `DELETE FROM dmp_audiences WHERE key IN (%s)`, keys); err != nil {
			return err
		}
		for _, st := range []struct{ name, q string }{
			{"decisions", `DELETE FROM links WHERE a IN (%[1]s) OR b IN (%[1]s)`},
			{"decisions", `DELETE FROM splits WHERE survivor IN (%[1]s) OR absorbed IN (%[1]s)`},
			{"decisions", `DELETE FROM detachments WHERE profile IN (%[1]s)`},
			{"review_items", `DELETE FROM review_items WHERE a IN (%[1]s) OR b IN (%[1]s)`},
		} {
			if err := execChunked(ctx, tx, counts, st.name, st.q, members); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return counts, err
	}
	var gone []identRow // identifier rows deleted, for the identifier index
	err = run(db.stateW, "state.db", func(tx *sql.Tx) error {
		for rest := members; len(rest) > 0; {
			n := min(len(rest), 500)
			g, err := deleteIdentifiers(ctx, tx, `DELETE FROM identifiers WHERE profile_id IN (`+inList(1, n)+`) RETURNING id, key`, rest[:n]...)
			if err != nil {
				return fmt.Errorf("identifiers: %w", err)
			}
			counts["identifiers"] += int64(len(g))
			gone = append(gone, g...)
			rest = rest[n:]
		}
		for _, st := range []struct{ name, q string }{
			{"traits", `DELETE FROM traits WHERE profile_id IN (%[1]s)`},
			{"timeline", `DELETE FROM timeline WHERE profile_id IN (%[1]s)`},
			{"orders", `DELETE FROM orders WHERE profile_id IN (%[1]s)`},
			{"consents", `DELETE FROM consents WHERE profile_id IN (%[1]s)`},
			{"merges", `DELETE FROM merges WHERE survivor IN (%[1]s) OR absorbed IN (%[1]s)`},
			{"profiles", `DELETE FROM profiles WHERE id IN (%[1]s)`},
		} {
			if err := execChunked(ctx, tx, counts, st.name, st.q, members); err != nil {
				return err
			}
		}
		// Identifiers first attached elsewhere but owned by these keys,
		// found through the identifier index.
		var cand []int64
		for _, k := range s.Keys {
			cand = db.idents.candidates(k, cand[:0])
			for _, id := range cand {
				g, err := deleteIdentifiers(ctx, tx, `DELETE FROM identifiers WHERE id = $1 AND key = $2 RETURNING id, key`, id, k[:])
				if err != nil {
					return fmt.Errorf("identifiers: %w", err)
				}
				counts["identifiers"] += int64(len(g))
				gone = append(gone, g...)
			}
		}
		return nil
	})
	if err != nil {
		return counts, err
	}
	db.idents.forget(gone)
	err = run(db.insW, "insights.db", func(tx *sql.Tx) error {
		return execChunked(ctx, tx, counts, "predicted_traits", `DELETE FROM profile_insights WHERE profile_id IN (%s)`, members)
	})
	return counts, err
}

// EraseAudienceHistory implements kith.AudienceStore, in audiences.db.
func (db *DB) EraseAudienceHistory(ctx context.Context, ids []string) (int64, error) {
	tx, err := db.audW.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
	}
	defer tx.Rollback()
	counts := map[string]int64{}
	if err := execChunked(ctx, tx, counts, "changes", `DELETE FROM changes WHERE profile_id IN (%s)`, anys(ids, func(s string) any { return s })); err != nil {
		return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
	}
	if err := execChunked(ctx, tx, counts, "profiles", `DELETE FROM profiles WHERE profile_id IN (%s)`, anys(ids, func(s string) any { return s })); err != nil {
		return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
	}
	if err := execChunked(ctx, tx, counts, "trait_changes", `DELETE FROM trait_changes WHERE profile_id IN (%s)`, anys(ids, func(s string) any { return s })); err != nil {
		return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
	}
	if err := execChunked(ctx, tx, counts, "trait_values", `DELETE FROM trait_values WHERE profile_id IN (%s)`, anys(ids, func(s string) any { return s })); err != nil {
		return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
	}
	n := counts["changes"] + counts["trait_changes"] + counts["trait_values"]
	rows, err := tx.QueryContext(ctx, `SELECT seq, profile_ids FROM changes WHERE n > 1`)
	if err != nil {
		return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
	}
	bulk := membership.NewBulkEraser(ids)
	for rows.Next() {
		var seq int64
		var blob []byte
		if err := rows.Scan(&seq, &blob); err == nil {
			err = bulk.Row(seq, blob)
		}
		if err != nil {
			rows.Close()
			return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
	}
	n += bulk.Erased
	for _, r := range bulk.Rewrites {
		if _, err := tx.ExecContext(ctx, `UPDATE changes SET profile_ids = $1 WHERE seq = $2`, r.IDs, r.Seq); err != nil {
			return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: erase audience history: %w", err)
	}
	return n, nil
}

// ProfileIDs implements kith.RetentionStore.
func (db *DB) ProfileIDs(ctx context.Context, after string, limit int) ([]string, error) {
	rows, err := db.stateR.QueryContext(ctx, `SELECT id FROM profiles WHERE id > $1 AND id = canonical_id ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: profile ids: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: profile ids: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// ExpireEvents implements kith.RetentionStore: the log first, then the
// derived rows (a crash in between leaves entries naming events that no
// longer exist, which reads skip, and the next sweep removes).
func (db *DB) ExpireEvents(ctx context.Context, members []string, seqs []int64) (int64, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	counts := map[string]int64{}
	args := anys(seqs, func(q int64) any { return q })
	tx, err := db.logW.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: expire events: %w", err)
	}
	defer tx.Rollback()
	if err := execChunked(ctx, tx, counts, "events", `DELETE FROM events WHERE seq IN (%s)`, args); err != nil {
		return 0, fmt.Errorf("sqlite: expire events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: expire events: %w", err)
	}
	stx, err := db.stateW.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: expire events: %w", err)
	}
	defer stx.Rollback()
	for _, p := range members {
		// Consent decisions stay: withdrawing consent must not expire.
		for _, table := range []string{"timeline", "orders"} {
			q := `DELETE FROM ` + table + ` WHERE profile_id = $1 AND seq IN (%s)`
			if err := execChunked(ctx, stx, counts, table, q, args, p); err != nil {
				return 0, fmt.Errorf("sqlite: expire events: %w", err)
			}
		}
	}
	if err := stx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: expire events: %w", err)
	}
	return counts["events"], nil
}

// ProfileCount implements kith.ProfileStore.
func (db *DB) ProfileCount(ctx context.Context) (int64, error) {
	var n int64
	if err := db.stateR.QueryRowContext(ctx, `SELECT count(*) FROM profiles WHERE id = canonical_id`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: profile count: %w", err)
	}
	return n, nil
}

// FindByName implements kith.ProfileStore. It reads the name traits
// without an index (indexes hold no personal data) and stops at limit. It
// compares decoded values, so a name matches however its JSON escapes its
// characters ("A&B" and "A\u0026B").
func (db *DB) FindByName(ctx context.Context, prefix string, limit int) ([]string, error) {
	if prefix == "" || kith.TextProblem(prefix) != "" {
		return nil, nil
	}
	rows, err := db.stateR.QueryContext(ctx, `SELECT DISTINCT p.canonical_id FROM traits t JOIN profiles p ON p.id = t.profile_id
		WHERE t.key IN ('firstName','lastName','name','first_name','last_name') AND json_type(t.value) = 'text'
		AND substr(json_extract(t.value, '$'), 1, $2) = $1 LIMIT $3`, prefix, utf8.RuneCountInString(prefix), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: find by name: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: find by name: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
