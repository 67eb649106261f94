package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith/httpapi"
	"github.com/kithcdp/kith/imports"
)

// The rejected counts of POST /v1/imports/batch are a client's claims: the
// server takes those it can check (reasons an import gives, in storable
// text, no more rows than a batch can account for) and refuses the rest,
// naming the field, before anything is stored or any source created. A
// refused batch leaves the accounting readable: /v1/stats and /metrics
// kept answering 500 for good after two batches claiming 2^63-1 rows.
func TestImportBatchRejectedCounts(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	s.createSource("crm")
	cases := []struct {
		name     string
		rejected string
		status   int
		want     string // in the error message
	}{
		{"ordinary", `{"malformed_row":3,"duplicate_key":1}`, 200, ""},
		{"the most", `{"malformed_row":100000}`, 200, ""},
		{"overflowing", `{"malformed_row":9223372036854775807}`, 400, `rejected["malformed_row"]: 9223372036854775807 is not a count of rows between 0 and 100000`},
		{"overflowing again", `{"malformed_row":9223372036854775807}`, 400, `rejected["malformed_row"]`},
		{"unknown reason", `{"ovf":9223372036854775807}`, 400, `rejected["ovf"]: not a reason an import rejects rows for`},
		{"more than a batch", `{"malformed_row":60000,"missing_key":40001}`, 400, "more than the 100000 one batch may report"},
		{"negative", `{"missing_key":-1}`, 400, `rejected["missing_key"]: -1 is not a count`},
		{"the server's own verdict", `{"suppressed":5}`, 400, `rejected["suppressed"]: not a reason`},
		{"NUL", `{"x\u0000":1}`, 400, `rejected["x\x00"] contains a NUL character`},
		{"long", `{"` + strings.Repeat("r", 5000) + `":1}`, 400, "not a reason"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, source := range []string{"crm", "new-" + strings.ReplaceAll(tc.name, " ", "-")} {
				code, out := s.admin("POST", "/v1/imports/batch", json.RawMessage(`{"source":"`+source+`","batch":[],"rejected":`+tc.rejected+`}`))
				if code != tc.status {
					t.Fatalf("%s: %d %v, want %d", source, code, out, tc.status)
				}
				if tc.want != "" {
					if msg := errorMessage(out); !strings.Contains(msg, tc.want) {
						t.Fatalf("%s: message %q, want it to say %q", source, msg, tc.want)
					}
				}
			}
		})
	}
	// Only the accepted batches were counted, and no refused one created
	// its source.
	for _, path := range []string{"/v1/stats", "/metrics"} {
		if code, _ := s.request("GET", path, nil, map[string]string{"Authorization": "Bearer " + adminToken}); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
	}
	_, st := s.admin("GET", "/v1/stats", nil)
	tot := st["totals"].(map[string]any)
	rej := tot["rejected"].(map[string]any)
	if tot["received"] != float64(2*100004) || rej["malformed_row"] != float64(2*100003) || rej["duplicate_key"] != float64(2) || len(rej) != 2 {
		t.Fatalf("totals %v", tot)
	}
	var names []string
	for _, x := range st["sources"].([]any) {
		names = append(names, x.(map[string]any)["name"].(string))
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "crm,new-ordinary,new-the-most" {
		t.Fatalf("sources %v: a refused batch created one", names)
	}
}

func errorMessage(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

// gzipBomb is gzip decompressing to head, then fill repeated n times,
// then tail: concatenated members, each of at most 1 MiB.
func gzipBomb(head, fill string, n int, tail string) []byte {
	var out bytes.Buffer
	member := func(b []byte) {
		zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
	}
	member([]byte(head))
	per := max(1, (1<<20)/len(fill))
	var chunk []byte
	chunkN := 0 // repeats of fill in chunk
	for done := 0; done < n; done += per {
		if k := min(per, n-done); k != chunkN {
			var c bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&c, gzip.BestCompression)
			zw.Write(bytes.Repeat([]byte(fill), k))
			zw.Close()
			chunk, chunkN = c.Bytes(), k
		}
		out.Write(chunk)
	}
	member([]byte(tail))
	return out.Bytes()
}

// upload posts a file with a mapping to POST /v1/imports.
func upload(t *testing.T, s *stack, source, mapping, name string, file []byte) (int, map[string]any) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("source", source)
	fw, _ := mw.CreateFormFile("mapping", "mapping.yaml")
	fw.Write([]byte(mapping))
	fw, _ = mw.CreateFormFile("file", name)
	fw.Write(file)
	mw.Close()
	return s.request("POST", "/v1/imports", body.Bytes(), map[string]string{
		"Authorization": "Bearer " + adminToken, "Content-Type": mw.FormDataContentType()})
}

// allocated returns the bytes allocated while f ran (the server runs in
// this process): a bound on what it held at its peak.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const mib = 1 << 20

// The uploads of the security review, at a third of their size: a gzip
// CSV whose third row is one 200 MB quoted field (the 600 MB one took the
// server to 5.9 GB), and a DMP file with a 100 MB field (300 MB took it to
// 2.1 GB). Each is now a rejected row with its line, read past in bounded
// memory, and the rows around it are imported.
func TestUploadWithAHugeField(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	s.createSource("crm")
	mapping := "type: identify\nkey: [id]\nfields: {userId: id, traits.note: note}\n"
	csvBomb := gzipBomb("id,note\nu1,ok\nu2,\"", "a", 200*mib, "\"\nu3,fine\n")
	var code int
	var out map[string]any
	n := allocated(func() { code, out = upload(t, s, "crm", mapping, "people.csv.gz", csvBomb) })
	if n > 64*mib {
		t.Errorf("an upload of %d KB allocated %d MB", len(csvBomb)>>10, n/mib)
	}
	if code != 200 {
		t.Fatalf("upload: %d %v", code, out)
	}
	sum := out["summary"].(map[string]any)
	rejects := out["rejects"].([]any)
	r0 := rejects[0].(map[string]any)
	if sum["read"] != 3.0 || sum["accepted"] != 2.0 || sum["rejected"] != 1.0 || len(rejects) != 1 ||
		r0["line"] != 3.0 || r0["reason"] != imports.ReasonRowTooLarge || len(r0["row"].(string)) > 1000 {
		t.Fatalf("summary %v, rejects %v", sum, rejects)
	}

	dmpBomb := gzipBomb("id_type,id,audiences\ncookie,c1,\"", "a", 100*mib, "\"\ncookie,c2,b\n")
	n = allocated(func() {
		code, out = s.request("POST", "/v1/dmp/audiences?partner=acme", dmpBomb, map[string]string{"Authorization": "Bearer " + adminToken})
	})
	if n > 64*mib {
		t.Errorf("a DMP upload of %d KB allocated %d MB", len(dmpBomb)>>10, n/mib)
	}
	if code != 200 {
		t.Fatalf("DMP upload: %d %v", code, out)
	}
	dsum := out["summary"].(map[string]any)
	drej := out["rejects"].([]any)
	if dsum["read"] != 2.0 || dsum["rejected"] != 1.0 || len(drej) != 1 || drej[0].(map[string]any)["Line"] != 2.0 || drej[0].(map[string]any)["Reason"] != "row_too_large" {
		t.Fatalf("DMP summary %v, rejects %v", dsum, drej)
	}
}

// A gzip bomb stops at the upload limit (1 GiB decompressed; lowered
// here) with 413 naming the line, in bounded memory; the rows before it
// were imported.
func TestUploadGzipBombStops(t *testing.T) {
	defer httpapi.SetUploadLimits(imports.Limits{MaxInputBytes: 16 * mib})()
	s := startStack(t, t.TempDir(), time.Now)
	s.createSource("crm")
	mapping := "type: identify\nkey: [id]\nfields: {userId: id}\n"
	bomb := gzipBomb("id\nu1\nu2\n", "\n", 1<<30, "")
	var code int
	var out map[string]any
	n := allocated(func() { code, out = upload(t, s, "crm", mapping, "people.csv.gz", bomb) })
	want := fmt.Sprintf("line %d: the input has more than %d bytes once decompressed", 16*mib-9+4, 16*mib)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(errorMessage(out), want) || !strings.Contains(errorMessage(out), "2 accepted") {
		t.Fatalf("upload: %d %v, want 413 saying %q and 2 accepted", code, out, want)
	}
	if n > 64*mib {
		t.Errorf("allocated %d MB", n/mib)
	}

	dmpBomb := gzipBomb("id_type,id,audiences\ncookie,c1,a\n", "\n", 1<<30, "")
	code, out = s.request("POST", "/v1/dmp/audiences?partner=acme", dmpBomb, map[string]string{"Authorization": "Bearer " + adminToken})
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(errorMessage(out), "bytes once decompressed") {
		t.Fatalf("DMP upload: %d %v", code, out)
	}
}
