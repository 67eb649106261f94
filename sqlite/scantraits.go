package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// ScanTraits walks the traits table in profile order (its primary key), so
// profiles that were never merged are handed over as the scan passes them;
// members of merged profiles are gathered and handed over at the end.
func (db *DB) ScanTraits(ctx context.Context, keys []string, fn func(string, map[string]json.RawMessage) error) error {
	canon, err := db.mergedCanonicals(ctx)
	if err != nil {
		return err
	}
	kj, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	rows, err := db.stateR.QueryContext(ctx, `SELECT profile_id, key, value, event_time FROM traits
		WHERE key IN (SELECT value FROM json_each($1)) ORDER BY profile_id`, string(kj))
	if err != nil {
		return fmt.Errorf("sqlite: scan traits: %w", err)
	}
	defer rows.Close()
	type valued struct {
		v  json.RawMessage
		at int64
	}
	merged := map[string]map[string]valued{}
	var cur string
	curVals := map[string]json.RawMessage{}
	flush := func() error {
		if cur == "" || len(curVals) == 0 {
			return nil
		}
		err := fn(cur, curVals)
		curVals = map[string]json.RawMessage{}
		return err
	}
	for rows.Next() {
		var p, k string
		var v []byte
		var at int64
		if err := rows.Scan(&p, &k, &v, &at); err != nil {
			return fmt.Errorf("sqlite: scan traits: %w", err)
		}
		if c, ok := canon[p]; ok {
			m := merged[c]
			if m == nil {
				m = map[string]valued{}
				merged[c] = m
			}
			if old, ok := m[k]; !ok || at > old.at {
				m[k] = valued{v, at}
			}
			continue
		}
		if p != cur {
			if err := flush(); err != nil {
				return err
			}
			cur = p
		}
		curVals[k] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: scan traits: %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	for _, c := range slices.Sorted(mapKeys(merged)) {
		vals := map[string]json.RawMessage{}
		for k, v := range merged[c] {
			vals[k] = v.v
		}
		if err := fn(c, vals); err != nil {
			return err
		}
	}
	return nil
}

// mergedCanonicals maps every member of a merged profile to its canonical
// profile.
func (db *DB) mergedCanonicals(ctx context.Context) (map[string]string, error) {
	canon := map[string]string{}
	rows, err := db.stateR.QueryContext(ctx, `SELECT id, canonical_id FROM profiles
		WHERE canonical_id IN (SELECT canonical_id FROM profiles WHERE id != canonical_id)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: merged profiles: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, c string
		if err := rows.Scan(&id, &c); err != nil {
			return nil, fmt.Errorf("sqlite: merged profiles: %w", err)
		}
		canon[id] = c
	}
	return canon, rows.Err()
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
