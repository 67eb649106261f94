package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/console"
)

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// TestConsolePersonalDataNeedsPIIRead: the console applies the API's rule
// (issue 14): without pii:read, the builder refuses a definition over
// personal data, the members of an audience over it are not shown, and a
// computed trait derived from it is masked on the 360 page.
func TestConsolePersonalDataNeedsPIIRead(t *testing.T) {
	f := newFixture(t, []kith.Definition{
		{Kind: kith.KindComputedTrait, Key: "contact", Text: `last(traits.email of event *)`},
		{Kind: kith.KindAudience, Key: "emails", Text: `traits.email ends_with "@example.com"`},
	}, `{"type":"identify","userId":"u1","traits":{"email":"ada@example.com"},"context":{"ip":"203.0.113.7"}}`)
	mux := f.console(console.Config{Audiences: f.eng})
	signIn := func(scopes ...string) func(method, path string, form url.Values) (int, string) {
		browse := f.signIn(mux, scopes...)
		return func(method, path string, form url.Values) (int, string) {
			rec := browse(method, path, form)
			return rec.Code, rec.Body.String()
		}
	}
	for _, pii := range []bool{false, true} {
		scopes := []string{kith.ScopeProfilesRead}
		if pii {
			scopes = append(scopes, kith.ScopePIIRead)
		}
		do := signIn(scopes...)

		code, page := do("GET", "/customers/user_id:u1", nil)
		if code != http.StatusOK {
			t.Fatalf("360 page: %d", code)
		}
		// The e-mail address is both a trait and the computed trait.
		if strings.Contains(page, "ada@example.com") != pii {
			t.Errorf("pii:read %v: the 360 page shows the e-mail address: %v", pii, !pii)
		}

		code, page = do("GET", "/audiences/emails", nil)
		if want := map[bool]int{false: http.StatusForbidden, true: http.StatusOK}[pii]; code != want || !pii && !strings.Contains(page, "pii:read") {
			t.Errorf("pii:read %v: members of emails: %d, want %d", pii, code, want)
		}

		_, page = do("GET", "/audiences", nil)
		m := csrfRe.FindStringSubmatch(page)
		if m == nil {
			t.Fatal("no CSRF token on the audiences page")
		}
		_, body := do("POST", "/audiences/validate", url.Values{"definition": {`traits.contact starts_with "a"`}, "csrf": {m[1]}})
		var out struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("validate: %v: %s", err, body)
		}
		if out.OK != pii || !pii && !strings.Contains(out.Error, "computed trait contact") {
			t.Errorf("pii:read %v: validate over a computed trait over traits.email = %+v", pii, out)
		}
		_, page = do("POST", "/audiences/dry-run", url.Values{"definition": {`traits.email starts_with "a"`}, "csrf": {m[1]}})
		if strings.Contains(page, "pii:read") == pii {
			t.Errorf("pii:read %v: dry run over traits.email: refused %v", pii, !pii)
		}
	}
}
