package storetest

import (
	"reflect"
	"sort"
	"testing"

	"github.com/kithcdp/kith"
)

func testDMPAudiences(t *testing.T, s kith.Store) {
	ctx := t.Context()
	k1, k2, k3 := identKey(kith.IdentEmail, "a@example.com"), identKey(kith.IdentAnonymousID, "cookie-1"), identKey("ios.idfa", "x")
	entries := []kith.DMPAudience{
		{Key: k1, IDType: kith.IdentEmail, Partner: "dmp-a", Audience: "in-market-cars", ExpiresAt: at(100), ImportedAt: at(1)},
		{Key: k1, IDType: kith.IdentEmail, Partner: "dmp-a", Audience: "coffee-lovers", ExpiresAt: at(50), ImportedAt: at(1)},
		{Key: k2, IDType: kith.IdentAnonymousID, Partner: "dmp-b", Audience: "coffee-lovers", ExpiresAt: at(100), ImportedAt: at(1)},
		{Key: k3, IDType: "ios.idfa", Partner: "dmp-a", Audience: "gamers", ExpiresAt: at(100), ImportedAt: at(1)},
	}
	noErr(t, s.SaveDMPAudiences(ctx, entries), "SaveDMPAudiences")
	got, err := s.DMPAudiences(ctx, []kith.IdentKey{k1, k2}, at(10))
	noErr(t, err, "DMPAudiences")
	want := []kith.DMPAudience{entries[1], entries[0], entries[2]} // partner, audience order
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DMPAudiences = %+v\nwant %+v", got, want)
	}
	// Expired entries are not returned; a re-import refreshes the expiry.
	got, _ = s.DMPAudiences(ctx, []kith.IdentKey{k1}, at(60))
	if len(got) != 1 || got[0].Audience != "in-market-cars" {
		t.Fatalf("after expiry: %+v", got)
	}
	refreshed := entries[1]
	refreshed.ExpiresAt, refreshed.ImportedAt = at(200), at(55)
	noErr(t, s.SaveDMPAudiences(ctx, []kith.DMPAudience{refreshed}), "SaveDMPAudiences again")
	got, _ = s.DMPAudiences(ctx, []kith.IdentKey{k1}, at(60))
	if len(got) != 2 || !got[0].ExpiresAt.Equal(at(200)) || !got[0].ImportedAt.Equal(at(55)) {
		t.Fatalf("after refresh: %+v", got)
	}
	if got, _ := s.DMPAudiences(ctx, nil, at(0)); len(got) != 0 {
		t.Fatalf("no keys: %+v", got)
	}
	n, err := s.PruneDMPAudiences(ctx, at(150))
	noErr(t, err, "PruneDMPAudiences")
	if n != 3 {
		t.Fatalf("pruned %d, want the 3 expired by then", n)
	}
	got, _ = s.DMPAudiences(ctx, []kith.IdentKey{k1, k2, k3}, at(0))
	if len(got) != 1 || got[0].Audience != "coffee-lovers" || got[0].Partner != "dmp-a" {
		t.Fatalf("after prune: %+v", got)
	}
}

func testScanIdentifiers(t *testing.T, s kith.Store) {
	ctx := t.Context()
	a := ident(kith.IdentEmail, "a@example.com", "pa", "s1", "m1", 1, 1)
	b := ident(kith.IdentEmail, "b@example.com", "pb", "s1", "m2", 1, 1)
	u := ident(kith.IdentUserID, "u-1", "pa", "s1", "m1", 1, 1)
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 1, Profiles: profiles("pa", "pb"), Identifiers: []kith.IdentifierUpsert{a, b, u}})
	var got []string
	noErr(t, s.ScanIdentifiers(ctx, kith.IdentEmail, func(k kith.IdentKey, v string) error {
		if k != identKey(kith.IdentEmail, v) {
			t.Errorf("key of %s does not match", v)
		}
		got = append(got, v)
		return nil
	}), "ScanIdentifiers")
	sort.Strings(got)
	if !reflect.DeepEqual(got, []string{"a@example.com", "b@example.com"}) {
		t.Fatalf("ScanIdentifiers(email) = %v", got)
	}
}
