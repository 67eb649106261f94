package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/storetest"
)

// The person the proof erases, as they appear in their data, and the one
// it keeps.
var (
	erasedNeedles = []string{"erase.me@example.com", "Erase.Me@Example.com", "+31655551234", "06-55551234", "u-erase-1", "Erasmus", "Zappalorenzo", "LC-900001", "C9000001"}
	keptNeedle    = "keep.me@example.com"
)

// feedPerson sends the person through every channel: web events (with
// consent and an order), a CRM contact, a till receipt by loyalty card, a
// DMP audience by hashed e-mail, and an audience whose state holds their
// e-mail. It returns the canonical profile id.
func feedPerson(t *testing.T, s *Server) string {
	t.Helper()
	postBatch(t, s, "web", `{"batch":[
		{"type":"identify","userId":"u-erase-1","anonymousId":"anon-erase-1","traits":{"email":"Erase.Me@Example.com","phone":"06-55551234","firstName":"Erasmus","lastName":"Zappalorenzo"},
		 "context":{"consent":{"categoryPreferences":{"Advertising":true,"Analytics":true}}}},
		{"type":"track","userId":"u-erase-1","event":"Order Completed","properties":{"order_id":"W-1","revenue":30,"products":[{"product_id":"p1","name":"Mug","price":30,"quantity":1}]}},
		{"type":"identify","userId":"u-keep-1","traits":{"email":"keep.me@example.com","firstName":"Keeper"}}]}`)
	dir := t.TempDir()
	crm := filepath.Join(dir, "crm.csv")
	os.WriteFile(crm, []byte("contact_id,customer_id,email,first_name,last_name,phone,street,postal_code,city,country,birthday,loyalty_card,email_opt_in,updated_at\n"+
		"C9000001,u-erase-1,erase.me@example.com,Erasmus,Zappalorenzo,+31655551234,Dorpsstraat 9,1234 AB,Delft,NL,1980-01-02,LC-900001,yes,2026-03-01 09:00:00\n"), 0o644)
	pos := filepath.Join(dir, "pos.csv")
	os.WriteFile(pos, []byte("order_id,ordered_at,channel,store_id,customer_id,email,loyalty_card,currency,product_id,sku,product_name,category,price,quantity\n"+
		"P-900,2026-04-01 10:00:00,pos,store-1,,,LC-900001,EUR,p2,SKU2,Beans,Coffee,9.50,2\n"), 0o644)
	for _, imp := range [][]string{{"crm", "crm_contacts", crm}, {"pos", "orders", pos}} {
		if out, err := cli(t, s, "import", "--source", imp[0], "--mapping", imp[1], "--rejects", filepath.Join(dir, imp[0]+".rejects.csv"), imp[2]); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	waitProcessed(t, s)
	sum := sha256.Sum256([]byte("erase.me@example.com"))
	dmpFile := filepath.Join(dir, "dmp.csv")
	os.WriteFile(dmpFile, []byte("id_type,id,audiences,expires_at\nemail_sha256,"+hex.EncodeToString(sum[:])+",coffee-lovers,\n"), 0o644)
	if out, err := cli(t, s, "dmp", "import", "--partner", "acme", dmpFile); err != nil || !strings.Contains(out, "matched=1") {
		t.Fatalf("dmp import: %v\n%s", err, out)
	}
	if code, m := apiJSON(t, s, "POST", "/v1/audiences", `{"key":"example_people","definition":"traits.firstName exists"}`); code != 201 {
		t.Fatalf("audience: %d %v", code, m)
	}
	waitBackfilled(t, s, "/v1/audiences")
	c := canonicalOf(t, s, "email:erase.me@example.com")
	if c == "" || canonicalOf(t, s, "loyalty_card:LC-900001") != c {
		t.Fatalf("the channels did not meet in one profile: %q", c)
	}
	return c
}

// erase requests the erasure with suppression and waits until it finished.
func erase(t *testing.T, s *Server) map[string]any {
	t.Helper()
	code, e := apiJSON(t, s, "POST", "/v1/privacy/erasures", `{"identifier":"email:erase.me@example.com","suppress":true}`)
	if code != http.StatusAccepted || e["status"] != "accepted" || e["id"] == nil {
		t.Fatalf("erasure request: %d %v", code, e)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, e = apiJSON(t, s, "GET", "/v1/privacy/erasures/"+e["id"].(string), "")
		if e["status"] == "finished" {
			return e
		}
		if e["status"] == "failed" {
			t.Fatalf("erasure failed: %v", e)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("erasure did not finish: %v", e)
	return nil
}

// checkErased checks what the API shows after the erasure, and that new
// events of the person are suppressed at ingest.
func checkErased(t *testing.T, s *Server, e map[string]any) {
	t.Helper()
	// The request is audited with its target: the identifier as a keyed
	// hash, and the erasure's id.
	_, audit := apiJSON(t, s, "GET", "/v1/audit?action=/v1/privacy/erasures", "")
	found := false
	for _, x := range audit["data"].([]any) {
		a := x.(map[string]any)
		target, _ := a["target"].(string)
		if a["action"] == "POST /v1/privacy/erasures" && strings.Contains(target, "identifier=email:#") && strings.Contains(target, "id="+e["id"].(string)) {
			found = true
		}
		if strings.Contains(target, "erase.me") {
			t.Fatalf("the audit log holds the identifier: %v", a)
		}
	}
	if !found {
		t.Fatalf("no audit entry for the erasure request with its target: %v", audit["data"])
	}
	counts := e["counts"].(map[string]any)
	for _, k := range []string{"events", "profiles", "identifiers", "traits", "third_party_audiences", "audience_history"} {
		if n, _ := counts[k].(float64); n < 1 {
			t.Errorf("erasure counts %v: nothing under %s", counts, k)
		}
	}
	for _, ref := range []string{"email:erase.me@example.com", "user_id:u-erase-1", "loyalty_card:LC-900001", "phone:+31655551234"} {
		if code, _ := apiJSON(t, s, "GET", "/v1/profiles/"+ref, ""); code != 404 {
			t.Errorf("%s after erasure: %d, want 404", ref, code)
		}
	}
	if code, _ := apiJSON(t, s, "GET", "/v1/profiles/email:keep.me@example.com", ""); code != 200 {
		t.Errorf("the other person is gone too: %d", code)
	}
	_, m := apiJSON(t, s, "GET", "/v1/audiences/example_people", "")
	if m["size"] != 1.0 {
		t.Errorf("example_people size %v after erasure, want 1", m["size"])
	}
	// Suppressed: a later event with one of the person's identifiers is
	// dropped at ingest and counted, not stored.
	_, src := apiJSON(t, s, "GET", "/v1/sources", "")
	var key string
	out, err := cli(t, s, "source", "create", "web2")
	if err != nil {
		t.Fatal(err)
	}
	key = strings.Fields(out[strings.Index(out, "wk_"):])[0]
	_ = src
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/batch", strings.NewReader(
		`{"batch":[{"type":"track","event":"Page Viewed","userId":"someone-new","context":{"traits":{"email":"ERASE.ME@example.com"}}},{"type":"track","event":"x","userId":"u-keep-1"},
		  {"type":"alias","userId":"brand-new","previousId":"u-erase-1"}]}`))
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(body.String(), `"suppressed":2`) || !strings.Contains(body.String(), `"accepted":1`) {
		t.Fatalf("a suppressed person's events (one by e-mail, one an alias of their user id): %s", body.String())
	}
	c := sourceCounts(t, s, "web2")
	if c["suppressed"] != 2.0 || c["accepted"] != 1.0 || c["received"] != 3.0 {
		t.Fatalf("web2 accounting %v: want received 3 = accepted 1 + suppressed 2", c)
	}
	waitProcessed(t, s)
	if code, _ := apiJSON(t, s, "GET", "/v1/profiles/email:erase.me@example.com", ""); code != 404 {
		t.Fatalf("the suppressed event made a profile: %d", code)
	}
}

// TestErasureByteScanEmbedded: after an erasure and `kith compact`, no
// byte of the data directory holds the person's e-mail, phone, user id,
// name, loyalty card or CRM id; the other person's data is still there.
func TestErasureByteScanEmbedded(t *testing.T) {
	s := startServer(t)
	feedPerson(t, s)
	e := erase(t, s)
	t.Logf("erasure: %v", e["counts"])
	checkErased(t, s, e)
	dir := s.Config.DataDir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Before compaction the bytes may linger in write-ahead logs and free
	// pages; `kith compact` rewrites the files.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"compact", "--data", dir}, &out, &out); err != nil {
		t.Fatalf("compact: %v\n%s", err, out.String())
	}
	hits := map[string][]string{}
	kept := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range erasedNeedles {
			if bytes.Contains(b, []byte(n)) {
				hits[n] = append(hits[n], filepath.Base(p))
			}
		}
		kept = kept || bytes.Contains(b, []byte(keptNeedle))
		return nil
	})
	if len(hits) > 0 {
		t.Fatalf("erased data found on disk: %v", hits)
	}
	if !kept {
		t.Fatal("the scan did not find the other person's e-mail either: it proves nothing")
	}
}

// TestErasureTableScanPostgres: the same on PostgreSQL, scanning every
// column of every table (text and bytea) of a fresh database.
func TestErasureTableScanPostgres(t *testing.T) {
	dbURL := storetest.CreateDatabase(t, storetest.PostgresURL(t))
	s := &Server{Config: ServeConfig{
		PostgresURL: dbURL, Addr: "127.0.0.1:0", AdminToken: "cli-test-admin-token",
		DedupWindow: time.Hour, Limits: collect.DefaultLimits(), MaxBacklog: 1000, BatchSize: 100,
	}}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	feedPerson(t, s)
	e := erase(t, s)
	checkErased(t, s, e)
	s.Close()

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		rows.Scan(&name)
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 20 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	count := func(table, needle string) int {
		// A row's text form shows text and JSON as they are and bytea as
		// hex: look for both.
		var n int
		q := fmt.Sprintf(`SELECT count(*) FROM %s t WHERE position($1 in t::text) > 0 OR position($2 in t::text) > 0`, pgx.Identifier{table}.Sanitize())
		if err := conn.QueryRow(ctx, q, needle, hex.EncodeToString([]byte(needle))).Scan(&n); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		return n
	}
	kept := 0
	for _, table := range tables {
		for _, n := range erasedNeedles {
			if c := count(table, n); c > 0 {
				t.Errorf("table %s: %d rows hold %q", table, c, n)
			}
		}
		kept += count(table, keptNeedle)
	}
	if kept == 0 {
		t.Fatal("the scan did not find the other person's e-mail either: it proves nothing")
	}
}

// TestExportDocument: the data-subject export holds everything: profile,
// traits with provenance (event and computed), identities, every event,
// consent and its history, audiences and their history, third-party
// audiences and merge history.
func TestExportDocument(t *testing.T) {
	s := startServer(t)
	apiJSON(t, s, "POST", "/v1/computed-traits", `{"key":"orders_all","definition":"count(event \"Order Completed\")"}`)
	c := feedPerson(t, s)
	code, doc := apiJSON(t, s, "GET", "/v1/privacy/profiles/email:erase.me@example.com/export", "")
	if code != 200 {
		t.Fatalf("export: %d %v", code, doc)
	}
	if doc["profile"].(map[string]any)["id"] != c {
		t.Fatalf("profile %v", doc["profile"])
	}
	provenances := map[string]bool{}
	for _, x := range doc["traits"].([]any) {
		provenances[x.(map[string]any)["provenance"].(string)] = true
	}
	types := map[string]bool{}
	for _, x := range doc["identities"].([]any) {
		types[x.(map[string]any)["type"].(string)] = true
	}
	_, ev := apiJSON(t, s, "GET", "/v1/profiles/"+c+"/events?limit=1000", "")
	consent := doc["consent"].(map[string]any)
	for what, ok := range map[string]bool{
		"event and computed traits":          provenances["event"] && provenances["computed"],
		"identities of every kind":           types["email"] && types["user_id"] && types["phone"] && types["loyalty_card"] && types["crm_id"] && types["anonymous_id"],
		"every event":                        len(doc["events"].([]any)) == len(ev["data"].([]any)) && len(doc["events"].([]any)) == 4,
		"consent":                            consent["Advertising"].(map[string]any)["granted"] == true && len(doc["consentHistory"].([]any)) == 2,
		"audiences":                          len(doc["audiences"].([]any)) == 1 && len(doc["audienceHistory"].([]any)) == 1,
		"third-party audiences":              len(doc["thirdPartyAudiences"].([]any)) == 1,
		"merge history (a list, here empty)": isList(doc["merges"]),
	} {
		if !ok {
			t.Errorf("export lacks %s: %v", what, doc)
		}
	}
}

func isList(v any) bool {
	_, ok := v.([]any)
	return ok
}
