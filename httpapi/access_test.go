package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/httpapi"
)

// TestEveryRouteRefusesTheWrongCredentials enumerates every route the
// server registered and proves that each admin route refuses a missing
// token, a write key (as Basic or as Bearer) and a token holding every
// scope but its own, and that each collection route refuses an admin
// token: write keys reach only the collection endpoints.
func TestEveryRouteRefusesTheWrongCredentials(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	_, key := s.createSource("web")
	routes := s.api.Routes()

	// Every route is documented, and the document describes no others.
	var documented []string
	for _, r := range openapiRoutes {
		documented = append(documented, r.method+" "+r.path)
	}
	var registered []string
	for _, r := range routes {
		registered = append(registered, r.Pattern)
	}
	slices.Sort(documented)
	slices.Sort(registered)
	if !slices.Equal(documented, registered) {
		t.Fatalf("registered routes %v\ndocumented %v", registered, documented)
	}

	tokens := map[string]string{} // scope withheld → token
	tokenWithout := func(scope string) string {
		if tok, ok := tokens[scope]; ok {
			return tok
		}
		var scopes []string
		for _, sc := range kith.Scopes {
			if sc == scope || sc == kith.ScopeAll || sc == kith.ScopeAdmin ||
				(sc == kith.ScopeSourcesAdmin && strings.HasPrefix(scope, "sources:")) {
				continue
			}
			scopes = append(scopes, sc)
		}
		code, out := s.admin("POST", "/v1/tokens", map[string]any{"name": "without " + strings.NewReplacer(":", "-", "*", "all").Replace(scope), "scopes": scopes})
		if code != http.StatusCreated {
			t.Fatalf("create token: %d %v", code, out)
		}
		tokens[scope] = out["token"].(string)
		return tokens[scope]
	}
	fill := strings.NewReplacer("{ref}", "user_id:nobody", "{key}", "nokey", "{id}", "noid", "{name}", "noname")
	checked := map[string]int{}
	for _, r := range routes {
		method, path, _ := strings.Cut(r.Pattern, " ")
		path = fill.Replace(path)
		call := func(hdr map[string]string) int {
			code, _ := s.request(method, path, []byte(`{}`), hdr)
			return code
		}
		switch r.Auth {
		case httpapi.AuthNone:
			if code := call(nil); code != http.StatusOK {
				t.Errorf("%s: public route answered %d", r.Pattern, code)
			}
		case httpapi.AuthWriteKey:
			if code := call(map[string]string{"Authorization": "Bearer " + adminToken}); code != http.StatusUnauthorized {
				t.Errorf("%s with an admin token: %d, want 401", r.Pattern, code)
			}
			if code := call(nil); code != http.StatusUnauthorized {
				t.Errorf("%s without credentials: %d, want 401", r.Pattern, code)
			}
		case httpapi.AuthToken:
			if r.Scope == "" || !slices.Contains(kith.Scopes, r.Scope) {
				t.Errorf("%s: unknown scope %q", r.Pattern, r.Scope)
				continue
			}
			if code := call(nil); code != http.StatusUnauthorized {
				t.Errorf("%s without a token: %d, want 401", r.Pattern, code)
			}
			if code := call(map[string]string{"Authorization": basic(key)}); code != http.StatusUnauthorized {
				t.Errorf("%s with a write key (Basic): %d, want 401", r.Pattern, code)
			}
			if code := call(map[string]string{"Authorization": "Bearer " + key}); code != http.StatusUnauthorized {
				t.Errorf("%s with a write key (Bearer): %d, want 401", r.Pattern, code)
			}
			if code := call(map[string]string{"Authorization": "Bearer " + tokenWithout(r.Scope)}); code != http.StatusForbidden {
				t.Errorf("%s with a token lacking %s: %d, want 403", r.Pattern, r.Scope, code)
			}
			// The right scope gets past authorisation (whatever the
			// handler then makes of the dummy request).
			if code := call(map[string]string{"Authorization": "Bearer " + adminToken}); code == http.StatusUnauthorized || code == http.StatusForbidden {
				t.Errorf("%s with an admin token: %d", r.Pattern, code)
			}
		default:
			t.Errorf("%s: unknown auth %q", r.Pattern, r.Auth)
		}
		checked[r.Auth]++
	}
	if checked[httpapi.AuthToken] < 40 || checked[httpapi.AuthWriteKey] != 7 {
		t.Fatalf("checked %v: the route list looks incomplete", checked)
	}
}
