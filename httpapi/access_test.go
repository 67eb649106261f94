package httpapi_test

import (
	"bytes"
	"mime/multipart"
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

// Creating a source takes sources:write. An import names its source and
// may create it, but only with a token that may create sources: a token
// with imports:write alone imports into existing sources, and an import
// into one that does not exist is refused, naming it, with nothing
// created.
func TestImportsWriteCannotCreateSources(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	s.createSource("crm")
	token := func(name string, scopes ...string) string {
		code, out := s.admin("POST", "/v1/tokens", map[string]any{"name": name, "scopes": scopes})
		if code != http.StatusCreated {
			t.Fatalf("create token: %d %v", code, out)
		}
		return out["token"].(string)
	}
	importer := token("importer", kith.ScopeImportsWrite)
	both := token("importer and source maker", kith.ScopeImportsWrite, kith.ScopeSourcesWrite)
	batch := func(tok, source string) (int, map[string]any) {
		return s.request("POST", "/v1/imports/batch", []byte(`{"source":"`+source+`","batch":[{"type":"identify","userId":"u1","messageId":"m-`+source+`"}]}`),
			map[string]string{"Authorization": "Bearer " + tok})
	}
	uploadWith := func(tok, source string) (int, map[string]any) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("source", source)
		fw, _ := mw.CreateFormFile("mapping", "mapping.yaml")
		fw.Write([]byte("type: identify\nkey: [id]\nfields: {userId: id}\n"))
		fw, _ = mw.CreateFormFile("file", "contacts.csv")
		fw.Write([]byte("id\nu1\n"))
		mw.Close()
		return s.request("POST", "/v1/imports", body.Bytes(), map[string]string{"Authorization": "Bearer " + tok, "Content-Type": mw.FormDataContentType()})
	}
	cases := []struct {
		name    string
		call    func(tok, source string) (int, map[string]any)
		tok     string
		source  string
		status  int
		created bool
	}{
		{"batch into an existing source", batch, importer, "crm", http.StatusOK, false},
		{"batch into a new source", batch, importer, "pos", http.StatusNotFound, false},
		{"upload into a new source", uploadWith, importer, "pos", http.StatusNotFound, false},
		{"batch with sources:write", batch, both, "pos", http.StatusOK, true},
		{"upload with sources:write", uploadWith, both, "esp", http.StatusOK, true},
		{"batch with the admin token", batch, adminToken, "app", http.StatusOK, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := tc.call(tc.tok, tc.source)
			if code != tc.status {
				t.Fatalf("%d %v, want %d", code, out, tc.status)
			}
			if code != http.StatusOK {
				msg := out["error"].(map[string]any)["message"].(string)
				if !strings.Contains(msg, `no source "`+tc.source+`"`) || !strings.Contains(msg, kith.ScopeSourcesWrite) {
					t.Fatalf("message %q does not name the source and the scope", msg)
				}
				return
			}
			if created := out["source"].(map[string]any)["created"]; created != tc.created {
				t.Fatalf("created %v, want %v", created, tc.created)
			}
		})
	}
	_, list := s.admin("GET", "/v1/sources", nil)
	var names []string
	for _, x := range list["data"].([]any) {
		names = append(names, x.(map[string]any)["name"].(string))
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "app,crm,esp,pos" {
		t.Fatalf("sources %v", names)
	}
}
