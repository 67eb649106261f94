package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/membership"
)

// SaveErasure implements kith.PrivacyStore.
func (db *DB) SaveErasure(ctx context.Context, e kith.Erasure) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO erasures (id, created_at, body) VALUES ($1,$2,$3)
		ON CONFLICT (id) DO UPDATE SET body = excluded.body`, e.ID, e.CreatedAt.UTC(), string(b)); err != nil {
		return fmt.Errorf("postgres: save erasure: %w", err)
	}
	return nil
}

func decodeErasure(b []byte) (kith.Erasure, error) {
	var e kith.Erasure
	if err := json.Unmarshal(b, &e); err != nil {
		return kith.Erasure{}, fmt.Errorf("postgres: decode erasure: %w", err)
	}
	return e, nil
}

// Erasure implements kith.PrivacyStore.
func (db *DB) Erasure(ctx context.Context, id string) (kith.Erasure, error) {
	var b string
	err := db.pool.QueryRow(ctx, `SELECT body::text FROM erasures WHERE id = $1`, id).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return kith.Erasure{}, kith.Errorf(kith.ENOTFOUND, "no erasure %q", id)
	} else if err != nil {
		return kith.Erasure{}, fmt.Errorf("postgres: erasure: %w", err)
	}
	return decodeErasure([]byte(b))
}

// Erasures implements kith.PrivacyStore.
func (db *DB) Erasures(ctx context.Context, limit int) ([]kith.Erasure, error) {
	rows, err := db.pool.Query(ctx, `SELECT body::text FROM erasures ORDER BY created_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: erasures: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Erasure, error) {
		var b string
		if err := row.Scan(&b); err != nil {
			return kith.Erasure{}, err
		}
		return decodeErasure([]byte(b))
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: erasures: %w", err)
	}
	return out, nil
}

// AddSuppressions implements kith.PrivacyStore.
func (db *DB) AddSuppressions(ctx context.Context, keys []kith.IdentKey, at time.Time) error {
	ks := make([][]byte, len(keys))
	for i := range keys {
		ks[i] = keys[i][:]
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO suppressions (key, at) SELECT k, $2 FROM unnest($1::bytea[]) AS k ON CONFLICT DO NOTHING`, ks, at.UTC()); err != nil {
		return fmt.Errorf("postgres: add suppressions: %w", err)
	}
	return nil
}

// Suppressions implements kith.PrivacyStore.
func (db *DB) Suppressions(ctx context.Context) ([]kith.IdentKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT key FROM suppressions`)
	if err != nil {
		return nil, fmt.Errorf("postgres: suppressions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.IdentKey, error) {
		var b []byte
		var k kith.IdentKey
		err := row.Scan(&b)
		copy(k[:], b)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: suppressions: %w", err)
	}
	return out, nil
}

// ErasePeople implements kith.PrivacyStore, in one transaction. Deleted
// rows stay in the table files until VACUUM reclaims them (autovacuum, or
// VACUUM FULL for an immediate rewrite): see the operator's note in the
// README.
func (db *DB) ErasePeople(ctx context.Context, s kith.Cluster) (map[string]int64, error) {
	counts := map[string]int64{}
	keys := make([][]byte, len(s.Keys))
	for i := range s.Keys {
		keys[i] = s.Keys[i][:]
	}
	members := s.Members
	if members == nil {
		members = []string{}
	}
	seqs := s.Seqs
	if seqs == nil {
		seqs = []int64{}
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		steps := []struct {
			name, q string
			arg     any
		}{
			{"message_ids", `DELETE FROM message_ids m USING events e WHERE e.seq = ANY($1) AND m.source_id = e.source_id AND m.message_id = e.message_id`, seqs},
			{"events", `DELETE FROM events WHERE seq = ANY($1)`, seqs},
			{"third_party_audiences", `DELETE FROM dmp_audiences WHERE key = ANY($1)`, keys},
			{"decisions", `DELETE FROM links WHERE a = ANY($1) OR b = ANY($1)`, members},
			{"decisions", `DELETE FROM splits WHERE survivor = ANY($1) OR absorbed = ANY($1)`, members},
			{"decisions", `DELETE FROM detachments WHERE profile = ANY($1)`, members},
			{"review_items", `DELETE FROM review_items WHERE a = ANY($1) OR b = ANY($1)`, members},
			{"identifiers", `DELETE FROM identifiers WHERE profile_id = ANY($1)`, members},
			{"identifiers", `DELETE FROM identifiers WHERE key = ANY($1)`, keys},
			{"traits", `DELETE FROM traits WHERE profile_id = ANY($1)`, members},
			{"timeline", `DELETE FROM timeline WHERE profile_id = ANY($1)`, members},
			{"orders", `DELETE FROM orders WHERE profile_id = ANY($1)`, members},
			{"consents", `DELETE FROM consents WHERE profile_id = ANY($1)`, members},
			{"merges", `DELETE FROM merges WHERE survivor = ANY($1) OR absorbed = ANY($1)`, members},
			{"profiles", `DELETE FROM profiles WHERE id = ANY($1)`, members},
			{"predicted_traits", `DELETE FROM profile_insights WHERE profile_id = ANY($1)`, members},
		}
		for _, st := range steps {
			tag, err := tx.Exec(ctx, st.q, st.arg)
			if err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
			if st.name != "message_ids" {
				counts[st.name] += tag.RowsAffected()
			}
		}
		return nil
	})
	if err != nil {
		return counts, fmt.Errorf("postgres: erase: %w", err)
	}
	return counts, nil
}

// EraseAudienceHistory implements kith.AudienceStore.
func (db *DB) EraseAudienceHistory(ctx context.Context, ids []string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM audience_changes WHERE profile_id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `DELETE FROM audience_profiles WHERE profile_id = ANY($1)`, ids); err != nil {
			return err
		}
		if tag, err = tx.Exec(ctx, `DELETE FROM trait_changes WHERE profile_id = ANY($1)`, ids); err != nil {
			return err
		}
		n += tag.RowsAffected()
		if tag, err = tx.Exec(ctx, `DELETE FROM trait_values WHERE profile_id = ANY($1)`, ids); err != nil {
			return err
		}
		n += tag.RowsAffected()
		rows, err := tx.Query(ctx, `SELECT seq, profile_ids FROM audience_changes WHERE n > 1`)
		if err != nil {
			return err
		}
		bulk := membership.NewBulkEraser(ids)
		var seq int64
		var blob []byte
		if _, err := pgx.ForEachRow(rows, []any{&seq, &blob}, func() error { return bulk.Row(seq, blob) }); err != nil {
			return err
		}
		n += bulk.Erased
		for _, r := range bulk.Rewrites {
			if _, err := tx.Exec(ctx, `UPDATE audience_changes SET profile_ids = $1 WHERE seq = $2`, r.IDs, r.Seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: erase audience history: %w", err)
	}
	return n, nil
}

// ProfileIDs implements kith.RetentionStore.
func (db *DB) ProfileIDs(ctx context.Context, after string, limit int) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT id FROM profiles WHERE id > $1 AND id = canonical_id ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: profile ids: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: profile ids: %w", err)
	}
	return out, nil
}

// ExpireEvents implements kith.RetentionStore, in one transaction.
func (db *DB) ExpireEvents(ctx context.Context, members []string, seqs []int64) (int64, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	var n int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM message_ids m USING events e WHERE e.seq = ANY($1) AND m.source_id = e.source_id AND m.message_id = e.message_id`, seqs); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM events WHERE seq = ANY($1)`, seqs)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		// Consent decisions stay: withdrawing consent must not expire.
		for _, table := range []string{"timeline", "orders"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE profile_id = ANY($1) AND seq = ANY($2)`, members, seqs); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: expire events: %w", err)
	}
	return n, nil
}

// ProfileCount implements kith.ProfileStore.
func (db *DB) ProfileCount(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM profiles WHERE id = canonical_id`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: profile count: %w", err)
	}
	return n, nil
}

// FindByName implements kith.ProfileStore. It reads the name traits
// without an index (indexes hold no personal data) and stops at limit. It
// compares decoded values, so a name matches however its JSON escapes its
// characters ("A&B" and "A\u0026B"); a value holding an escaped NUL, which
// PostgreSQL cannot decode to text, is passed over.
func (db *DB) FindByName(ctx context.Context, prefix string, limit int) ([]string, error) {
	if prefix == "" || kith.TextProblem(prefix) != "" {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT DISTINCT p.canonical_id FROM traits t JOIN profiles p ON p.id = t.profile_id
		WHERE t.key IN ('firstName','lastName','name','first_name','last_name') AND json_typeof(t.value) = 'string'
		AND CASE WHEN strpos(t.value::text, '\u0000') > 0 THEN false ELSE left(t.value #>> '{}', $2) = $1 END
		LIMIT $3`, prefix, utf8.RuneCountInString(prefix), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: find by name: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: find by name: %w", err)
	}
	return out, nil
}
