package activation_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// secret is a valid Standard Webhooks secret for tests.
var secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // 24 bytes in base64

func TestValidate(t *testing.T) {
	hook := func(cfg string) kith.Destination {
		return kith.Destination{Name: "d", Type: kith.DestinationWebhook, Config: json.RawMessage(cfg)}
	}
	seg := func(cfg string) kith.Destination {
		return kith.Destination{Name: "d", Type: kith.DestinationSegment, Config: json.RawMessage(cfg)}
	}
	ok := `{"url":"https://example.com/hook","secret":"` + secret + `"}`
	tests := []struct {
		name string
		d    kith.Destination
		err  string // "" for valid
	}{
		{"webhook minimal", hook(ok), ""},
		{"webhook full", hook(`{"url":"http://127.0.0.1:9/x?y=1","secret":"` + secret + `","headers":{"Authorization":"Bearer t","X-Team":"a"},"timeout":"3s","batch":50}`), ""},
		{"segment minimal", seg(`{"endpoint":"https://api.segment.io","writeKey":"wk"}`), ""},
		{"segment full", seg(`{"endpoint":"http://localhost:8080/","writeKey":"wk","timeout":"30s","batch":500}`), ""},
		{"unknown type", kith.Destination{Type: "ftp", Config: json.RawMessage(`{}`)}, `type: unknown destination type "ftp" (one of segment, webhook)`},
		{"no config", hook(``), `config: required (an object with "url", "secret")`},
		{"null config", hook(`null`), `config: required`},
		{"config not an object", hook(`[1]`), `config: must be an object, not array`},
		{"config not JSON", hook(`{"url":`), `config: not valid JSON`},
		{"unknown field", hook(`{"url":"https://e.com","secret":"` + secret + `","retries":3}`), `config.retries: unknown field`},
		{"missing url", hook(`{"secret":"` + secret + `"}`), `config.url: required`},
		{"ftp url", hook(`{"url":"ftp://e.com/x","secret":"` + secret + `"}`), `config.url: must be http or https`},
		{"relative url", hook(`{"url":"/hook","secret":"` + secret + `"}`), `config.url: must be http or https`},
		{"url without host", hook(`{"url":"http:///x","secret":"` + secret + `"}`), `config.url: must name a host`},
		{"url with credentials", hook(`{"url":"https://u:p@e.com","secret":"` + secret + `"}`), `config.url: must not hold credentials`},
		{"url not a string", hook(`{"url":5,"secret":"` + secret + `"}`), `config.url: must be a string, not number`},
		{"secret without prefix", hook(`{"url":"https://e.com","secret":"abc"}`), `config.secret: must start with whsec_`},
		{"secret not base64", hook(`{"url":"https://e.com","secret":"whsec_!!!"}`), `config.secret: the part after whsec_ must be base64`},
		{"secret too short", hook(`{"url":"https://e.com","secret":"whsec_c2hvcnQ="}`), `config.secret: the key must be 24 to 64 bytes (it is 5)`},
		{"bad header name", hook(`{"url":"https://e.com","secret":"` + secret + `","headers":{"X Y":"1"}}`), `config.headers.X Y: not a valid header name`},
		{"reserved header", hook(`{"url":"https://e.com","secret":"` + secret + `","headers":{"webhook-signature":"v1,x"}}`), `config.headers.webhook-signature: set by Kith`},
		{"header injection", hook(`{"url":"https://e.com","secret":"` + secret + `","headers":{"X-A":"1\r\nX-B: 2"}}`), `config.headers.X-A: must not contain line breaks`},
		{"header value not a string", hook(`{"url":"https://e.com","secret":"` + secret + `","headers":{"X-A":1}}`), `config.headers: must be an object of strings, not number`},
		{"bad timeout", hook(`{"url":"https://e.com","secret":"` + secret + `","timeout":"ten"}`), `config.timeout: not a duration`},
		{"timeout too long", hook(`{"url":"https://e.com","secret":"` + secret + `","timeout":"1h"}`), `config.timeout: must be more than 0 and at most 1m0s`},
		{"negative batch", hook(`{"url":"https://e.com","secret":"` + secret + `","batch":-1}`), `config.batch: must be between 0 and 1000`},
		{"batch not an integer", hook(`{"url":"https://e.com","secret":"` + secret + `","batch":2.5}`), `config.batch: must be an integer, not number`},
		{"segment without write key", seg(`{"endpoint":"https://api.segment.io"}`), `config.writeKey: required`},
		{"segment endpoint with query", seg(`{"endpoint":"https://api.segment.io?x=1","writeKey":"wk"}`), `config.endpoint: must be a base URL without a query`},
		{"segment huge batch", seg(`{"endpoint":"https://api.segment.io","writeKey":"wk","batch":5000}`), `config.batch: must be between 0 and 1000`},
		{"audienceAs", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), AudienceAs: "email"}, `audienceAs: must be "track" or "identify"`},
		{"negative rate", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), RateLimit: -1}, `rateLimit: must be`},
		{"empty consent category", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), Consent: []string{"Marketing", ""}}, `consent[1]: empty consent category`},
		{"event filter", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), Events: &kith.EventFilter{Types: []string{"track", "identify"}, Events: []string{"Order Completed"}}}, ""},
		{"audience key not a key", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), Audiences: []string{"buyers", "Big Spenders"}}, `audiences[1]: key "Big Spenders": want 1-100 characters`},
		{"consent category too long", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), Consent: []string{strings.Repeat("M", 201)}}, `consent[0]: at most 200 bytes (it is 201)`},
		{"event name with NUL", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), Events: &kith.EventFilter{Events: []string{"a\x00b"}}}, `events.events[0] contains a NUL character`},
		{"source id not UTF-8", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), Events: &kith.EventFilter{Sources: []string{"src_\xff"}}}, `events.sources[0] is not valid UTF-8`},
		{"too many consent categories", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), Consent: make([]string, 1001)}, `consent: at most 1000 items (it has 1001)`},
		{"rate too small", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), RateLimit: 1e-300}, `rateLimit: must be 0 (no cap) or 0.01 to 1000000`},
		{"rate too large", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), RateLimit: 1e308}, `rateLimit: must be 0 (no cap) or 0.01 to 1000000`},
		{"unknown call type", kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(ok), Events: &kith.EventFilter{Types: []string{"track", "Track"}}}, `events.types[1]: unknown call type "Track"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := activation.Validate(tt.d)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %q", tt.err)
			}
			if kith.ErrorCode(err) != kith.EINVALID {
				t.Errorf("code %s, want %s", kith.ErrorCode(err), kith.EINVALID)
			}
			if msg := kith.ErrorMessage(err); !strings.HasPrefix(msg, tt.err) {
				t.Errorf("error %q, want it to start with %q", msg, tt.err)
			}
		})
	}
}

// The types document their config from the same declaration that is
// validated, secrets marked.
func TestTypesDeclareTheirConfig(t *testing.T) {
	want := map[string][]activation.Field{
		kith.DestinationSegment: {
			{Name: "endpoint", Type: "string", Required: true, URL: true},
			{Name: "writeKey", Type: "string", Required: true, Secret: true},
			{Name: "timeout", Type: "string"},
			{Name: "batch", Type: "integer"},
		},
		kith.DestinationWebhook: {
			{Name: "url", Type: "string", Required: true, URL: true},
			{Name: "secret", Type: "string", Required: true, Secret: true},
			{Name: "headers", Type: "object", Secret: true},
			{Name: "timeout", Type: "string"},
			{Name: "batch", Type: "integer"},
		},
	}
	types := activation.Types()
	if len(types) != len(want) {
		t.Fatalf("%d types, want %d", len(types), len(want))
	}
	for _, typ := range types {
		fields := want[typ.Name]
		if typ.Doc == "" || len(typ.Fields) != len(fields) {
			t.Fatalf("%s: doc %q, fields %+v", typ.Name, typ.Doc, typ.Fields)
		}
		for i, f := range typ.Fields {
			if f.Doc == "" {
				t.Errorf("%s.%s has no doc", typ.Name, f.Name)
			}
			f.Doc = ""
			if f != fields[i] {
				t.Errorf("%s field %d: %+v, want %+v", typ.Name, i, f, fields[i])
			}
		}
	}
}

// Secrets are not served back: the webhook secret, every custom header
// value, the write key.
func TestRedact(t *testing.T) {
	got := activation.Redact(kith.DestinationWebhook, json.RawMessage(`{"url":"https://e.com/h","secret":"`+secret+`","headers":{"Authorization":"Bearer t"},"batch":5}`))
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if m["url"] != "https://e.com/h" || m["batch"] != 5.0 {
		t.Errorf("plain fields changed: %s", got)
	}
	if strings.Contains(string(got), secret) || strings.Contains(string(got), "Bearer t") {
		t.Errorf("a secret is served back: %s", got)
	}
	if h, _ := m["headers"].(map[string]any); h == nil || h["Authorization"] == nil {
		t.Errorf("the header's name should stay: %s", got)
	}
	got = activation.Redact(kith.DestinationSegment, json.RawMessage(`{"endpoint":"https://api.segment.io","writeKey":"wk-123"}`))
	if strings.Contains(string(got), "wk-123") || !strings.Contains(string(got), "api.segment.io") {
		t.Errorf("segment config redacted as %s", got)
	}
	if got := activation.Redact("ftp", json.RawMessage(`{"password":"p"}`)); string(got) != "{}" {
		t.Errorf("unknown type redacted as %s", got)
	}
	// A URL keeps its place but not a password or its query's values.
	for _, c := range []struct{ typ, config, want, never string }{
		{kith.DestinationWebhook, `{"url":"https://e.com/h?token=tok-1&x=2","secret":"` + secret + `"}`, `"url":"https://e.com/h?token=%28secret%29\u0026x=%28secret%29"`, "tok-1"},
		{kith.DestinationSegment, `{"endpoint":"https://user:pw-9@rs.example.com/","writeKey":"k"}`, `"endpoint":"https://user:%28secret%29@rs.example.com/"`, "pw-9"},
		{kith.DestinationWebhook, `{"url":"https://e.com/plain","secret":"` + secret + `"}`, `"url":"https://e.com/plain"`, ""},
	} {
		got := string(activation.Redact(c.typ, json.RawMessage(c.config)))
		if !strings.Contains(got, c.want) || c.never != "" && strings.Contains(got, c.never) {
			t.Errorf("Redact(%s) = %s, want %s and no %q", c.config, got, c.want, c.never)
		}
	}
}

func TestNewWebhookSecretIsValid(t *testing.T) {
	s := activation.NewWebhookSecret()
	d := kith.Destination{Type: kith.DestinationWebhook, Config: json.RawMessage(`{"url":"https://e.com","secret":"` + s + `"}`)}
	if err := activation.Validate(d); err != nil {
		t.Fatal(err)
	}
	if s == activation.NewWebhookSecret() {
		t.Error("two secrets are the same")
	}
}
