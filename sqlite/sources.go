package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/kithcdp/kith"
)

// CreateSource stores a new source; ECONFLICT if its key hash exists.
func (db *DB) CreateSource(ctx context.Context, s kith.Source) error {
	_, err := db.logW.ExecContext(ctx, `INSERT INTO sources (id, name, key_hash, disabled, created_at) VALUES ($1,$2,$3,$4,$5)`,
		s.ID, s.Name, s.KeyHash, s.Disabled, micros(s.CreatedAt))
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return kith.Errorf(kith.ECONFLICT, "source %q already exists", s.ID)
	} else if err != nil {
		return fmt.Errorf("sqlite: create source: %w", err)
	}
	return nil
}

// Sources lists every source, oldest first.
func (db *DB) Sources(ctx context.Context) ([]kith.Source, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT id, name, key_hash, disabled, created_at FROM sources ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list sources: %w", err)
	}
	defer rows.Close()
	var out []kith.Source
	for rows.Next() {
		var s kith.Source
		var created int64
		if err := rows.Scan(&s.ID, &s.Name, &s.KeyHash, &s.Disabled, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list sources: %w", err)
		}
		s.CreatedAt = fromMicros(created)
		out = append(out, s)
	}
	return out, rows.Err()
}

// SetSourceDisabled enables or disables a source.
func (db *DB) SetSourceDisabled(ctx context.Context, id string, disabled bool) error {
	r, err := db.logW.ExecContext(ctx, `UPDATE sources SET disabled = $1 WHERE id = $2`, disabled, id)
	if err != nil {
		return fmt.Errorf("sqlite: update source: %w", err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return kith.Errorf(kith.ENOTFOUND, "source %q not found", id)
	}
	return nil
}

// CreateToken stores a new admin token.
func (db *DB) CreateToken(ctx context.Context, t kith.Token) error {
	_, err := db.logW.ExecContext(ctx, `INSERT INTO tokens (id, name, scopes, hash, created_at) VALUES ($1,$2,$3,$4,$5)`,
		t.ID, t.Name, strings.Join(t.Scopes, " "), t.Hash, micros(t.CreatedAt))
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return kith.Errorf(kith.ECONFLICT, "token %q already exists", t.ID)
	} else if err != nil {
		return fmt.Errorf("sqlite: create token: %w", err)
	}
	return nil
}

// TokenByHash finds a token by the hash of its secret.
func (db *DB) TokenByHash(ctx context.Context, hash []byte) (kith.Token, error) {
	var t kith.Token
	var scopes string
	var created int64
	err := db.logR.QueryRowContext(ctx, `SELECT id, name, scopes, hash, created_at FROM tokens WHERE hash = $1`, hash).
		Scan(&t.ID, &t.Name, &scopes, &t.Hash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return t, kith.Errorf(kith.ENOTFOUND, "token not found")
	} else if err != nil {
		return t, fmt.Errorf("sqlite: find token: %w", err)
	}
	t.Scopes = strings.Fields(scopes)
	t.CreatedAt = fromMicros(created)
	return t, nil
}

// Tokens implements kith.SourceStore.
func (db *DB) Tokens(ctx context.Context) ([]kith.Token, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT id, name, scopes, hash, created_at FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: tokens: %w", err)
	}
	defer rows.Close()
	var out []kith.Token
	for rows.Next() {
		var t kith.Token
		var scopes string
		var created int64
		if err := rows.Scan(&t.ID, &t.Name, &scopes, &t.Hash, &created); err != nil {
			return nil, fmt.Errorf("sqlite: tokens: %w", err)
		}
		t.Scopes, t.CreatedAt = strings.Fields(scopes), fromMicros(created)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken implements kith.SourceStore.
func (db *DB) RevokeToken(ctx context.Context, id string) error {
	res, err := db.logW.ExecContext(ctx, `DELETE FROM tokens WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return kith.Errorf(kith.ENOTFOUND, "no token %q", id)
	}
	return nil
}
