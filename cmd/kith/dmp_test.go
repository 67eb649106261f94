package main

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestDMPLink covers both directions of the DMP link on a real server:
// third-party audiences in (matched, unmatched, rejected, expiry,
// provenance) and look-alike seeds out (hashing, consent filter, minimum
// size).
func TestDMPLink(t *testing.T) {
	s := startServer(t)
	var items []string
	for i := range 150 {
		consent := i < 120
		items = append(items, fmt.Sprintf(`{"type":"identify","userId":"u%d","anonymousId":"cookie-%d","traits":{"email":"Person%d@Example.com","phone":"+31 6 1000 %04d"},"context":{"consent":{"categoryPreferences":{"Advertising":%v,"Analytics":true}}}}`,
			i, i, i, i, consent))
	}
	items = append(items, `{"type":"track","event":"App Opened","userId":"u2","context":{"device":{"type":"ios","advertisingId":"6D92078A-8246-4BA4-AE5B-76104861E7DC","adTrackingEnabled":true}}}`)
	postBatch(t, s, "web", `{"batch":[`+strings.Join(items, ",")+`]}`)
	waitProcessed(t, s)

	// Third-party audiences in.
	out, err := cli(t, s, "dmp", "import", "--partner", "acme-dmp", filepath.Join("testdata", "dmp_audiences.csv"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "read=7 matched=3 unmatched=2 rejected=2") {
		t.Fatalf("dmp import: %s", out)
	}
	if !strings.Contains(out, "line 7: invalid_id_type") || !strings.Contains(out, "line 8: expired") {
		t.Fatalf("rejected rows not named: %s", out)
	}
	check := func(ref string, want map[string]string) {
		t.Helper()
		_, m := apiJSON(t, s, "GET", "/v1/profiles/"+ref+"/dmp-audiences", "")
		got := map[string]string{}
		for _, x := range m["data"].([]any) {
			a := x.(map[string]any)
			if a["provenance"] != "third_party" || a["partner"] != "acme-dmp" {
				t.Fatalf("%s: entry %v", ref, a)
			}
			got[a["audience"].(string)+"/"+a["idType"].(string)] = a["expiresAt"].(string)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", ref, got, want)
		}
		for k, exp := range want {
			g, ok := got[k]
			if !ok {
				t.Fatalf("%s: no %s in %v", ref, k, got)
			}
			if exp == "" {
				// The default expiry: 90 days after the import.
				at, _ := time.Parse(time.RFC3339Nano, g)
				if d := time.Until(at) - 90*24*time.Hour; d > time.Minute || d < -time.Minute {
					t.Fatalf("%s: %s expires %s, want 90 days from now", ref, k, g)
				}
			} else if g != exp {
				t.Fatalf("%s: %s expires %s, want %s", ref, k, g, exp)
			}
		}
	}
	check("user_id:u1", map[string]string{"in-market-cars/anonymous_id": "", "coffee-lovers/anonymous_id": ""})
	check("user_id:u2", map[string]string{"gamers/ios.idfa": "2030-01-01T00:00:00Z"})
	check("user_id:u3", map[string]string{"coffee-lovers/email": ""})
	check("user_id:u4", map[string]string{})
	// Unmatched ids made no profile.
	if code, _ := apiJSON(t, s, "GET", "/v1/profiles/anonymous_id:cookie-nobody", ""); code != 404 {
		t.Fatalf("an unmatched cookie became a profile: %d", code)
	}

	// Look-alike seeds out.
	code, m := apiJSON(t, s, "POST", "/v1/audiences", `{"key":"everyone","definition":"traits.email exists"}`)
	if code != 201 {
		t.Fatalf("audience: %d %v", code, m)
	}
	apiJSON(t, s, "POST", "/v1/audiences", `{"key":"few","definition":"traits.email starts_with \"person1\""}`)
	waitBackfilled(t, s, "/v1/audiences")
	dir := t.TempDir()
	for _, platform := range []string{"meta", "google"} {
		path := filepath.Join(dir, platform+".csv")
		out, err := cli(t, s, "dmp", "export", "--audience", "everyone", "--platform", platform, "--out", path)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "members=150 exported=120 filtered_by_consent=30 no_contact=0") {
			t.Fatalf("%s export: %s", platform, out)
		}
		f, _ := os.Open(path)
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil || len(recs) != 121 {
			t.Fatalf("%s: %d records, %v", platform, len(recs), err)
		}
		rows := map[string]string{}
		for _, r := range recs[1:] {
			rows[r[0]] = r[1]
		}
		// Person 7: e-mail trimmed and lower-cased, phone in the
		// platform's form, both SHA-256.
		email, phone := sha("person7@example.com"), sha("+31610000007")
		head := "email,phone"
		if platform == "meta" {
			phone = sha("31610000007")
		} else {
			head = "Email,Phone"
		}
		if strings.Join(recs[0], ",") != head || rows[email] != phone {
			t.Fatalf("%s: header %v, person 7 row %q, want %q", platform, recs[0], rows[email], phone)
		}
		if _, ok := rows[sha("person130@example.com")]; ok {
			t.Fatalf("%s: a person without advertising consent was exported", platform)
		}
	}
	// A preference centre withdraws person 7's advertising consent: the
	// next export leaves them out; the consent history shows both.
	code, cv := apiJSON(t, s, "PUT", "/v1/profiles/email:person7@example.com/consent", `{"Advertising":false}`)
	if code != 200 || cv["categories"].(map[string]any)["Advertising"].(map[string]any)["granted"] != false || len(cv["history"].([]any)) != 3 {
		t.Fatalf("consent change: %d %v", code, cv)
	}
	out, err = cli(t, s, "dmp", "export", "--audience", "everyone", "--platform", "meta", "--out", filepath.Join(dir, "after.csv"))
	if err != nil || !strings.Contains(out, "exported=119 filtered_by_consent=31") {
		t.Fatalf("export after withdrawal: %v %s", err, out)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "after.csv"))
	if strings.Contains(string(b), sha("person7@example.com")) {
		t.Fatal("person 7 was exported after withdrawing consent")
	}
	_, st := apiJSON(t, s, "GET", "/v1/stats", "")
	seeds := st["outputs"].(map[string]any)["look_alike_seeds"].(map[string]any)
	if seeds["delivered"] != 359.0 || seeds["filteredByConsent"] != 91.0 {
		t.Fatalf("outputs accounting %v: want 120+120+119 delivered, 30+30+31 filtered", seeds)
	}

	// Too small: refused, nothing written.
	path := filepath.Join(dir, "few.csv")
	out, err = cli(t, s, "dmp", "export", "--audience", "few", "--platform", "meta", "--out", path)
	if err == nil || !strings.Contains(err.Error(), "minimum is 100") {
		t.Fatalf("small audience exported: %v %s", err, out)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("a refused export left a file")
	}
}
