package httpapi_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith/httpapi"
)

// TestREADMEScopeTable keeps the README's security table true: every
// admin route is listed under the scope it needs, and every route listed
// exists with that scope.
func TestREADMEScopeTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Security: what each scope can see and do")
	if !ok {
		t.Fatal("README has no security section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([a-z:*]+)` \\|[^|]*\\| (.*) \\|$")
	route := regexp.MustCompile("`((?:GET|POST|PUT|PATCH|DELETE) /[^`]*)`")
	documented := map[string]string{} // pattern → scope
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		for _, r := range route.FindAllStringSubmatch(m[2], -1) {
			if prev, dup := documented[r[1]]; dup {
				t.Errorf("%s is listed under %s and %s", r[1], prev, m[1])
			}
			documented[r[1]] = m[1]
		}
	}
	s := startStack(t, t.TempDir(), time.Now)
	registered := map[string]string{}
	for _, r := range s.api.Routes() {
		if r.Auth == httpapi.AuthToken {
			registered[r.Pattern] = r.Scope
		}
	}
	if len(registered) < 40 {
		t.Fatalf("only %d admin routes registered", len(registered))
	}
	for pattern, scope := range registered {
		if got, ok := documented[pattern]; !ok {
			t.Errorf("%s (%s) is not in the README's scope table", pattern, scope)
		} else if got != scope {
			t.Errorf("%s is listed under %s; it needs %s", pattern, got, scope)
		}
	}
	var extra []string
	for pattern := range documented {
		if _, ok := registered[pattern]; !ok {
			extra = append(extra, pattern)
		}
	}
	slices.Sort(extra)
	if len(extra) > 0 {
		t.Errorf("the README's scope table lists routes the server does not have: %v", extra)
	}
}
