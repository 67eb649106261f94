package admin_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/sqlite"
)

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestCreateSource(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	tests := []struct {
		name string
		code string
	}{
		{"webshop", ""},
		{"  POS till 3 ", ""},
		{"crm.import-2026_11", ""},
		{"", kith.EINVALID},
		{"-starts-with-dash", kith.EINVALID},
		{"has/slash", kith.EINVALID},
		{strings.Repeat("x", 65), kith.EINVALID},
	}
	for _, tc := range tests {
		src, key, err := admin.CreateSource(ctx, db, tc.name, time.Now())
		if kith.ErrorCode(err) != tc.code {
			t.Errorf("CreateSource(%q): %v, want code %q", tc.name, err, tc.code)
			continue
		}
		if err != nil {
			continue
		}
		if !strings.HasPrefix(key, "wk_") || bytes.Equal(src.KeyHash, []byte(key)) || !bytes.Equal(src.KeyHash, admin.Hash(key)) {
			t.Errorf("CreateSource(%q): key %q, stored hash %x", tc.name, key, src.KeyHash)
		}
		if src.Name != strings.TrimSpace(tc.name) {
			t.Errorf("name %q, want %q", src.Name, strings.TrimSpace(tc.name))
		}
	}
	// Keys are random: two sources never share one.
	_, k1, _ := admin.CreateSource(ctx, db, "a", time.Now())
	_, k2, _ := admin.CreateSource(ctx, db, "a", time.Now())
	if k1 == k2 {
		t.Fatal("two sources got the same write key")
	}
}

func TestTokens(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	tests := []struct {
		scopes []string
		code   string
	}{
		{[]string{"*"}, ""},
		{[]string{"profiles:read", "stats:read"}, ""},
		{nil, kith.EINVALID},
		{[]string{"root"}, kith.EINVALID},
	}
	for _, tc := range tests {
		tok, secret, err := admin.CreateToken(ctx, db, "ops", tc.scopes, time.Now())
		if kith.ErrorCode(err) != tc.code {
			t.Errorf("CreateToken(%v): %v, want code %q", tc.scopes, err, tc.code)
			continue
		}
		if err != nil {
			continue
		}
		got, err := db.TokenByHash(ctx, admin.Hash(secret))
		if err != nil || got.ID != tok.ID {
			t.Errorf("token %v not found by its secret: %v", tc.scopes, err)
		}
	}

	// Provisioning is idempotent and grants every scope.
	for i := 0; i < 2; i++ {
		if err := admin.ProvisionToken(ctx, db, "automation-secret", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := db.TokenByHash(ctx, admin.Hash("automation-secret"))
	if err != nil || !tok.HasScope(kith.ScopeProfilesRead) || !tok.HasScope(kith.ScopeSourcesWrite) {
		t.Fatalf("provisioned token: %+v, %v", tok, err)
	}
	if err := admin.ProvisionToken(ctx, db, "short", time.Now()); kith.ErrorCode(err) != kith.EINVALID {
		t.Fatalf("a short admin token was accepted: %v", err)
	}
}
