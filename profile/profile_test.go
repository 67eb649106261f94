package profile_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/profile"
	"github.com/kithcdp/kith/sqlite"
)

// Resolve answers "not found" only when the store found nothing; a store
// that fails (here: closed) keeps its own error, with context that names
// the identifier's type but not its value, which must not reach a log.
func TestResolveNotFoundOnlyFromTheStore(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc := profile.New(profile.Config{Store: db})
	for _, tc := range []struct {
		name   string
		ref    string
		closed bool
		code   string
	}{
		{"unknown profile id", "p_nobody", false, kith.ENOTFOUND},
		{"unknown identifier", "email:nobody@example.com", false, kith.ENOTFOUND},
		{"profile id, the store closed", "p_nobody", true, kith.EINTERNAL},
		{"identifier, the store closed", "email:nobody@example.com", true, kith.EINTERNAL},
	} {
		if tc.closed {
			db.Close()
		}
		_, err := svc.Resolve(ctx, tc.ref)
		if kith.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v (code %s), want code %s", tc.name, err, kith.ErrorCode(err), tc.code)
		}
		if tc.closed && (!strings.HasPrefix(err.Error(), "profile: ") || strings.Contains(err.Error(), "nobody@")) {
			t.Errorf("%s: %q lacks context or names the identifier", tc.name, err)
		}
	}
}
