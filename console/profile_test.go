package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/console"
	"github.com/kithcdp/kith/httpapi"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/privacy"
)

// person is the fixture of the profile tests: Ada browses anonymously
// (refusing advertising), identifies (granting it), orders, and is then
// seen with both ids, which merges the two profiles; Bob is someone else.
// A computed trait and two audiences read her events and traits.
func person(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, []kith.Definition{
		{Kind: kith.KindComputedTrait, Key: "orders", Text: `count(event "Order Completed")`},
		{Kind: kith.KindAudience, Key: "buyers", Text: `count(event "Order Completed") >= 1`},
		{Kind: kith.KindAudience, Key: "emails", Text: `traits.email exists`},
	},
		`{"type":"page","anonymousId":"a1","name":"Home","context":{"consent":{"categoryPreferences":{"Advertising":false}}}}`,
		`{"type":"identify","userId":"u1","traits":{"email":"ada@example.com","firstName":"Ada"},"context":{"consent":{"categoryPreferences":{"Advertising":true,"Analytics":true}}}}`,
		`{"type":"track","userId":"u1","event":"Order Completed","properties":{"order_id":"o1","revenue":30}}`,
		`{"type":"identify","userId":"u1","anonymousId":"a1"}`,
		`{"type":"identify","userId":"u2","traits":{"email":"bob@example.com"}}`,
	)
	email, _ := identity.DefaultRules().ParseRef("email:ada@example.com")
	err := f.db.SaveDMPAudiences(context.Background(), []kith.DMPAudience{{Key: identity.NewKeyer(f.secret).Key(email), IDType: "email",
		Partner: "acme", Audience: "coffee-lovers", ExpiresAt: f.now.Add(30 * 24 * time.Hour), ImportedAt: f.now}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// api serves the HTTP API over store (the fixture's, or a wrapper of it)
// with the fixture's clock, and returns a function that sends a request
// with an admin token of the scopes.
func (f *fixture) api(store kith.Store, eng httpapi.AudienceEngine, scopes ...string) func(path string) *httptest.ResponseRecorder {
	f.t.Helper()
	srv := httpapi.New(store, nil, nil, httpapi.Config{Audiences: eng, Now: func() time.Time { return f.now }, Logger: quiet})
	f.t.Cleanup(srv.Close)
	tok := f.token(scopes...)
	return func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		srv.ServeHTTP(rec, req)
		return rec
	}
}

// The console's data-subject export is the API's, byte for byte (both
// write compact JSON), for a person with a merge, consent decisions,
// audiences, a computed trait and a third-party audience, by identifier
// and by profile id.
func TestExportSameAsAPI(t *testing.T) {
	f := person(t)
	api := f.api(f.db, f.eng, kith.ScopePrivacyWrite)
	browse := f.signIn(f.console(console.Config{Audiences: f.eng}), kith.ScopePrivacyWrite)

	fromAPI := api("/v1/privacy/profiles/user_id:u1/export")
	if fromAPI.Code != http.StatusOK {
		t.Fatalf("API export: %d %s", fromAPI.Code, fromAPI.Body)
	}
	var doc privacy.Document
	if err := json.Unmarshal(fromAPI.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	// The document holds every part, so the comparison below compares
	// something.
	computed := false
	for _, tr := range doc.Traits {
		computed = computed || tr.Key == "orders" && tr.Provenance == kith.ProvenanceComputed
	}
	if len(doc.Profile.Members) != 2 || len(doc.Merges) != 1 || len(doc.Events) != 4 || !computed ||
		len(doc.Audiences) != 2 || len(doc.AudienceHistory) == 0 || len(doc.ThirdPartyAudiences) != 1 ||
		!doc.Consent["Advertising"].Granted || !doc.Consent["Analytics"].Granted {
		t.Fatalf("the export lacks a part: %s", fromAPI.Body)
	}

	for _, ref := range []string{"user_id:u1", "email:ada@example.com", doc.Profile.ID, doc.Profile.Members[0]} {
		fromConsole := browse("GET", "/customers/"+url.PathEscape(ref)+"/export", nil)
		if fromConsole.Code != http.StatusOK {
			t.Fatalf("console export of %s: %d %s", ref, fromConsole.Code, fromConsole.Body)
		}
		if !bytes.Equal(fromConsole.Body.Bytes(), fromAPI.Body.Bytes()) {
			t.Errorf("console export of %s differs from the API's:\nconsole %s\nAPI     %s", ref, fromConsole.Body, fromAPI.Body)
		}
		if got, want := fromConsole.Header().Get("Content-Disposition"), fromAPI.Header().Get("Content-Disposition"); got != want {
			t.Errorf("console export of %s: Content-Disposition %q, the API's %q", ref, got, want)
		}
	}
}

// faultyStore is the fixture's real store with one call failing: the
// method named by fail, with err.
type faultyStore struct {
	kith.Store
	fail string
	err  error
}

func (s *faultyStore) injected(method string) error {
	if s.fail == method {
		return s.err
	}
	return nil
}

func (s *faultyStore) Canonical(ctx context.Context, id string) (string, error) {
	if err := s.injected("Canonical"); err != nil {
		return "", err
	}
	return s.Store.Canonical(ctx, id)
}

func (s *faultyStore) LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error) {
	if err := s.injected("LookupIdentifiers"); err != nil {
		return nil, err
	}
	return s.Store.LookupIdentifiers(ctx, keys)
}

func (s *faultyStore) Profile(ctx context.Context, id string) (kith.ProfileSummary, error) {
	if err := s.injected("Profile"); err != nil {
		return kith.ProfileSummary{}, err
	}
	return s.Store.Profile(ctx, id)
}

func (s *faultyStore) TokenByHash(ctx context.Context, hash []byte) (kith.Token, error) {
	if err := s.injected("TokenByHash"); err != nil {
		return kith.Token{}, err
	}
	return s.Store.TokenByHash(ctx, hash)
}

// A store failure answers on the console's customer page with the status
// and Retry-After the API answers the same failure with: an overload or a
// store that cannot take writes is not a 500, an unknown code is, and a
// failure while resolving a reference (by profile id or identifier, on the
// page or in the search) is never "not found".
func TestConsoleStoreErrorsAnswerAsTheAPI(t *testing.T) {
	f := person(t)
	st := &faultyStore{Store: f.db}
	browse := f.signIn(f.console(console.Config{Store: st, Audiences: f.eng}), kith.ScopeProfilesRead)
	api := f.api(st, f.eng, kith.ScopeProfilesRead)
	var p kith.ProfileSummary
	if rec := api("/v1/profiles/user_id:u1"); rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &p) != nil {
		t.Fatalf("profile: %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct {
		name   string
		fail   string
		err    error
		ref    string
		status int
		retry  string
	}{
		{"no fault: nobody has the identifier", "", nil, "user_id:nobody", http.StatusNotFound, ""},
		{"no fault: no profile has the id", "", nil, "p_nobody", http.StatusNotFound, ""},
		{"resolving a profile id, the store fails", "Canonical", errors.New("disk I/O error"), p.ID, http.StatusInternalServerError, ""},
		{"resolving an identifier, the store fails", "LookupIdentifiers", errors.New("database is locked"), "user_id:u1", http.StatusInternalServerError, ""},
		{"resolving an identifier, the store cannot take writes", "LookupIdentifiers", fmt.Errorf("sqlite: %w", kith.Errorf(kith.EUNAVAILABLE, "the disk is full")), "email:ada@example.com", http.StatusServiceUnavailable, "30"},
		{"resolving a profile id, the store cannot take writes", "Canonical", kith.Errorf(kith.EUNAVAILABLE, "the disk is full"), p.ID, http.StatusServiceUnavailable, "30"},
		{"reading the profile, overloaded", "Profile", kith.Errorf(kith.EOVERLOADED, "too busy"), "user_id:u1", http.StatusTooManyRequests, "1"},
		{"reading the profile, an unknown code", "Profile", kith.Errorf("no_such_code", "a bug"), "user_id:u1", http.StatusInternalServerError, ""},
		{"reading the profile, a conflict", "Profile", kith.Errorf(kith.ECONFLICT, "merged meanwhile"), p.ID, http.StatusConflict, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.fail, st.err = tc.fail, tc.err
			defer func() { st.fail, st.err = "", nil }()
			fromAPI := api("/v1/profiles/" + url.PathEscape(tc.ref))
			if fromAPI.Code != tc.status || fromAPI.Header().Get("Retry-After") != tc.retry {
				t.Errorf("API: %d Retry-After %q, want %d %q", fromAPI.Code, fromAPI.Header().Get("Retry-After"), tc.status, tc.retry)
			}
			pages := []string{"/customers/" + url.PathEscape(tc.ref)}
			if tc.fail != "Profile" { // the search only resolves
				pages = append(pages, "/customers?q="+url.QueryEscape(tc.ref))
			}
			for _, path := range pages {
				rec := browse("GET", path, nil)
				if rec.Code != tc.status || rec.Header().Get("Retry-After") != tc.retry {
					t.Errorf("console %s: %d Retry-After %q, want %d %q", path, rec.Code, rec.Header().Get("Retry-After"), tc.status, tc.retry)
				}
				page := strings.ToLower(rec.Body.String())
				if saysNotFound := strings.Contains(page, "no customer has") || strings.Contains(page, "not found"); saysNotFound != (tc.status == http.StatusNotFound) {
					t.Errorf("console %s: the page says not found: %v, answering %d", path, saysNotFound, rec.Code)
				}
				if tc.status == http.StatusInternalServerError && (!strings.Contains(page, "something went wrong") || strings.Contains(page, "disk i/o") || strings.Contains(page, "a bug")) {
					t.Errorf("console %s: a 500 page shows the error's detail or no apology", path)
				}
			}
		})
	}
}

// A store failure while signing in is not "That token is not valid": the
// console answers it as the API answers a failed token lookup.
func TestConsoleSignInStoreFailure(t *testing.T) {
	f := person(t)
	st := &faultyStore{Store: f.db, fail: "TokenByHash", err: kith.Errorf(kith.EUNAVAILABLE, "the disk is full")}
	mux := f.console(console.Config{Store: st})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {f.token(kith.ScopeProfilesRead)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "30" || strings.Contains(rec.Body.String(), "not valid") {
		t.Errorf("sign-in while the store fails: %d Retry-After %q\n%s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
}

// failingAudiences is the fixture's real audience engine with one read
// failing: the method named by fail, with err.
type failingAudiences struct {
	*audience.Engine
	fail string
	err  error
}

func (a failingAudiences) ComputedTraits(ctx context.Context, id string) ([]kith.Trait, error) {
	if a.fail == "ComputedTraits" {
		return nil, a.err
	}
	return a.Engine.ComputedTraits(ctx, id)
}

func (a failingAudiences) ProfileMemberships(ctx context.Context, id string) ([]kith.Member, error) {
	if a.fail == "ProfileMemberships" {
		return nil, a.err
	}
	return a.Engine.ProfileMemberships(ctx, id)
}

// When the audience engine cannot answer, the console's export fails as
// the API's does, rather than hand out a document without the person's
// memberships or computed traits.
func TestConsoleExportFailsWithAudiences(t *testing.T) {
	f := person(t)
	for _, tc := range []struct {
		fail   string
		err    error
		status int
	}{
		{"ProfileMemberships", errors.New("audience state unreadable"), http.StatusInternalServerError},
		{"ProfileMemberships", kith.Errorf(kith.EUNAVAILABLE, "the disk is full"), http.StatusServiceUnavailable},
		{"ComputedTraits", errors.New("audience state unreadable"), http.StatusInternalServerError},
	} {
		t.Run(tc.fail+" "+kith.ErrorCode(tc.err), func(t *testing.T) {
			eng := failingAudiences{Engine: f.eng, fail: tc.fail, err: tc.err}
			browse := f.signIn(f.console(console.Config{Audiences: eng}), kith.ScopePrivacyWrite)
			api := f.api(f.db, eng, kith.ScopePrivacyWrite)
			fromAPI := api("/v1/privacy/profiles/user_id:u1/export")
			fromConsole := browse("GET", "/customers/user_id:u1/export", nil)
			if fromAPI.Code != tc.status {
				t.Errorf("API export: %d, want %d", fromAPI.Code, tc.status)
			}
			if fromConsole.Code != tc.status || strings.Contains(fromConsole.Body.String(), `"exportedAt"`) {
				t.Errorf("console export: %d, want %d and no document\n%s", fromConsole.Code, tc.status, fromConsole.Body)
			}
		})
	}
}
