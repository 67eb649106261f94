package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kith destination … against a running server: create (with a generated
// secret shown once), list and show as tables and as JSON, a test message
// to a real receiver, pause and resume, deliveries and replay, the API's
// refusals as clear errors, and delete.
func TestCLIDestinations(t *testing.T) {
	s := startServer(t)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-signature") == "" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer rc.Close()

	out, err := cli(t, s, "destination", "create", "--name", "hook", "--type", "webhook", "--url", rc.URL+"/in",
		"--events", "--audience", "buyers", "--audience", "vips", "--trait", "ltv", "--consent", "Marketing")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`signing secret: (whsec_\S+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "destination hook (dst_") || !strings.Contains(out, "events all, audiences buyers, vips, traits ltv, consent Marketing") ||
		!strings.Contains(out, "current members of its audiences first") {
		t.Fatalf("create printed:\n%s", out)
	}
	secret := m[1]

	cfg := filepath.Join(t.TempDir(), "segment.json")
	os.WriteFile(cfg, []byte(`{"endpoint":"https://api.segment.io","writeKey":"wk-from-file","batch":50}`), 0o600)
	if out, err := cli(t, s, "destination", "create", "--name", "seg", "--type", "segment", "--config", cfg,
		"--events", `{"types":["track"],"events":["Order Completed"]}`); err == nil {
		t.Fatalf("--events takes its filter after =, not as the next argument:\n%s", out)
	}
	if out, err := cli(t, s, "destination", "create", "--name", "seg", "--type", "segment", "--config", cfg,
		`--events={"types":["track"],"events":["Order Completed"]}`, "--mapping", `{"rename":{"userId":"customer_id"}}`); err != nil {
		t.Fatalf("create from a config file: %v\n%s", err, out)
	}

	steps := []struct {
		name string
		args []string
		want []string // in the output
		not  []string // never in the output
	}{
		{"list", []string{"list"}, []string{"NAME", "DELIVERED", "PENDING", "RETRYING", "DEAD", "FILTERED", "hook", "webhook", "active", "seg", "segment"}, []string{secret}},
		{"show", []string{"show", "hook"}, []string{"events", "all", "buyers, vips (as track)", "ltv", "trait changes 0", "Marketing", "dead-lettered", rc.URL + "/in"}, []string{secret}},
		{"show a filter", []string{"show", "seg"}, []string{"types track; events Order Completed", `"batch":50`, `mapping        {"rename":{"userId":"customer_id"}}`}, []string{"wk-from-file"}},
		{"test", []string{"test", "hook"}, []string{"delivered (HTTP 200"}, nil},
		{"pause", []string{"pause", "hook"}, []string{"destination hook paused"}, nil},
		{"list paused", []string{"list"}, []string{"paused"}, nil},
		{"resume", []string{"resume", "hook"}, []string{"destination hook resumed"}, nil},
		{"deliveries", []string{"deliveries", "hook", "--dead"}, []string{"ID", "ATTEMPTS", "STATUS", "ERROR"}, nil},
		{"replay", []string{"replay", "hook"}, []string{"0 dead letters of hook sent again"}, nil},
		{"replay a range", []string{"replay", "hook", "--from", "2000-01-01T00:00:00Z", "--to", "2001-01-01T00:00:00Z"}, []string{"no event arrived from 2000-01-01T00:00:00Z until 2001-01-01T00:00:00Z"}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			out, err := cli(t, s, append([]string{"destination"}, st.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range st.want {
				if !strings.Contains(out, w) {
					t.Errorf("no %q in:\n%s", w, out)
				}
			}
			for _, n := range st.not {
				if strings.Contains(out, n) {
					t.Errorf("%q shown:\n%s", n, out)
				}
			}
		})
	}

	// --json prints the API's answers as they are.
	out, err = cli(t, s, "destination", "list", "--json")
	var list struct {
		Data []map[string]any `json:"data"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Data) != 2 || list.Data[0]["name"] != "hook" || list.Data[0]["dead_lettered"] != 0.0 {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	out, err = cli(t, s, "destination", "show", "hook", "--json")
	var one map[string]any
	if err != nil || json.Unmarshal([]byte(out), &one) != nil || one["pending"] != 0.0 || strings.Contains(out, secret) {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	out, err = cli(t, s, "destination", "deliveries", "hook", "--json")
	if err != nil || !strings.HasPrefix(out, `{"data":[]`) {
		t.Fatalf("deliveries --json: %v\n%s", err, out)
	}

	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"name taken", []string{"create", "--name", "hook", "--type", "webhook", "--url", rc.URL}, `a destination named "hook" exists (conflict)`},
		{"bad url", []string{"create", "--name", "bad", "--type", "webhook", "--url", "ftp://example.com"}, "config.url: must be http or https (invalid)"},
		{"unknown type", []string{"create", "--name", "bad", "--type", "fax", "--url", rc.URL}, "type: unknown destination type"},
		{"no type", []string{"create", "--name", "bad"}, "give --name and --type"},
		{"bad events", []string{"create", "--name", "bad", "--type", "webhook", "--events=some"}, "want true, false or a JSON filter"},
		{"replay range half", []string{"replay", "hook", "--from", "2000-01-01T00:00:00Z"}, "--to: give both --from and --to"},
		{"replay range bad time", []string{"replay", "hook", "--from", "yesterday", "--to", "2000-01-01T00:00:00Z"}, "--from: not an RFC 3339 time"},
		{"replay range backwards", []string{"replay", "hook", "--from", "2001-01-01T00:00:00Z", "--to", "2000-01-01T00:00:00Z"}, "to: must be after from"},
		{"mapping not JSON", []string{"create", "--name", "bad", "--type", "webhook", "--url", rc.URL, "--mapping", "{rename"}, "--mapping: not a JSON object"},
		{"mapping refused", []string{"create", "--name", "bad", "--type", "webhook", "--url", rc.URL, "--mapping", `{"drop":["messageId"]}`}, "mapping.drop[0]: path \"messageId\""},
		{"unknown destination", []string{"show", "nope"}, `destination "nope" not found`},
		{"no name", []string{"pause"}, "usage: kith destination pause NAME"},
		{"unknown command", []string{"frob"}, `unknown destination command "frob"`},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			out, err := cli(t, s, append([]string{"destination"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error()+out, tc.want) {
				t.Fatalf("err = %v, want it to say %q\n%s", err, tc.want, out)
			}
		})
	}

	if out, err := cli(t, s, "destination", "delete", "hook"); err != nil || !strings.Contains(out, "destination hook deleted") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, _ := cli(t, s, "destination", "list"); strings.Contains(out, "hook") {
		t.Fatalf("a deleted destination is listed:\n%s", out)
	}
}

// Every destination command has --help with its usage and flags.
func TestCLIDestinationHelp(t *testing.T) {
	tests := []struct {
		cmd  string
		want []string
	}{
		{"create", []string{"kith destination create --name NAME --type webhook|segment", "-audience", "-consent", "-config", "-events", "-secret", "-url", "-json"}},
		{"list", []string{"kith destination list", "-json", "-server", "-token"}},
		{"show", []string{"kith destination show NAME"}},
		{"test", []string{"kith destination test NAME"}},
		{"pause", []string{"kith destination pause NAME"}},
		{"resume", []string{"kith destination resume NAME"}},
		{"deliveries", []string{"kith destination deliveries NAME", "-dead", "-limit", "-after"}},
		{"replay", []string{"kith destination replay NAME", "-id"}},
		{"delete", []string{"kith destination delete NAME"}},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), []string{"destination", tc.cmd, "--help"}, &out, &out)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("no %q in:\n%s", w, out.String())
				}
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"destination", "help"}, &out, &out); err != nil || !strings.Contains(out.String(), "kith destination replay NAME") {
		t.Fatalf("destination help: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"help"}, &out, &out); err != nil || !strings.Contains(out.String(), "kith destination create|") {
		t.Fatalf("kith help does not list destination: %v\n%s", err, out.String())
	}
}
