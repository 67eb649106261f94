package activation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
)

// Type is one kind of destination: its config, declared once as a struct
// whose tags document each field, and how a Sender is built from it. A
// new output is one more Type; batching, retries, the rate limit and the
// outbound HTTP rules come with it, written once in this package.
type Type struct {
	// Name is the destination type (kith.DestinationWebhook …).
	Name string
	// Doc says what the type does, for the API's and the CLI's help.
	Doc string
	// Fields documents the config, read from the config struct's tags, so
	// the documentation cannot drift from what is validated.
	Fields []Field

	spec reflect.Type
	// index[i] is the struct field Fields[i] is declared by.
	index []int
	// build makes the sender from a decoded, validated config (a pointer
	// to a value of spec's type).
	build func(cfg config, t transport) (Sender, error)
}

// Field is one config field as a Type declares it.
type Field struct {
	Name string `json:"name"`
	// Type is the JSON type: string, integer, object.
	Type     string `json:"type"`
	Doc      string `json:"doc"`
	Required bool   `json:"required,omitempty"`
	// Secret fields are never served back by the API (Redact).
	Secret bool `json:"secret,omitempty"`
	// URL fields are served back without a password or query values,
	// which often carry a token (Redact).
	URL bool `json:"url,omitempty"`
}

// config is a type's decoded config: it checks what the tags cannot say
// (URL schemes, ranges, formats), naming the field in each error.
type config interface {
	validate() error
}

// types are the destination types, by name.
var types = map[string]*Type{}

// register declares a type from its config struct (a zero value of which
// is spec). Tags on each field: json (the name), doc (what it is) and
// kith ("required", "secret").
func register(name, doc string, spec config, build func(cfg config, t transport) (Sender, error)) {
	rt := reflect.TypeOf(spec)
	if rt.Kind() != reflect.Pointer || rt.Elem().Kind() != reflect.Struct {
		panic("activation: a config spec is a pointer to a struct")
	}
	t := &Type{Name: name, Doc: doc, spec: rt.Elem(), build: build}
	for i := range t.spec.NumField() {
		f := t.spec.Field(i)
		if !f.IsExported() {
			continue // what validate derives
		}
		t.index = append(t.index, i)
		jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		opts := strings.Split(f.Tag.Get("kith"), ",")
		t.Fields = append(t.Fields, Field{
			Name:     jsonName,
			Type:     jsonType(f.Type),
			Doc:      f.Tag.Get("doc"),
			Required: slices.Contains(opts, "required"),
			Secret:   slices.Contains(opts, "secret"),
			URL:      slices.Contains(opts, "url"),
		})
	}
	types[name] = t
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Slice:
		return "array"
	}
	return t.Kind().String()
}

// Types lists the destination types by name, for help and validation
// messages.
func Types() []Type {
	out := make([]Type, 0, len(types))
	for _, t := range types {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Type) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func typeNames() string {
	var names []string
	for _, t := range Types() {
		names = append(names, t.Name)
	}
	return strings.Join(names, ", ")
}

// decode reads raw into a new config of t's declared struct: unknown
// fields are refused, every error names the field ("config.url: …"), and
// required fields must be present and non-empty. Then the type's own
// checks run.
func (t *Type) decode(raw json.RawMessage) (config, error) {
	v := reflect.New(t.spec)
	cfg := v.Interface().(config)
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, invalid("config", "required (an object with %s)", t.requiredNames())
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, t.decodeError(err)
	}
	if dec.More() {
		return nil, invalid("config", "must be one JSON object")
	}
	for i, f := range t.Fields {
		if f.Required && v.Elem().Field(t.index[i]).IsZero() {
			return nil, invalid("config."+f.Name, "required")
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (t *Type) requiredNames() string {
	var names []string
	for _, f := range t.Fields {
		if f.Required {
			names = append(names, `"`+f.Name+`"`)
		}
	}
	return strings.Join(names, ", ")
}

// decodeError names the field a JSON decoding error is about.
func (t *Type) decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return invalid("config", "must be an object, not %s", typeErr.Value)
		}
		want := article(jsonType(typeErr.Type))
		for _, f := range t.Fields {
			if f.Name == typeErr.Field && f.Type == "object" && jsonType(typeErr.Type) != "object" {
				want = "an object of " + jsonType(typeErr.Type) + "s" // a member's value is wrong
			}
		}
		return invalid("config."+typeErr.Field, "must be %s, not %s", want, typeErr.Value)
	case errors.As(err, &syntaxErr):
		return invalid("config", "not valid JSON (at byte %d)", syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("config", "not valid JSON (it ends early)")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalid("config."+strings.Trim(name, `"`), "unknown field")
	}
	return invalid("config", "%v", err)
}

func article(jsonType string) string {
	if jsonType == "integer" || jsonType == "object" || jsonType == "array" {
		return "an " + jsonType
	}
	return "a " + jsonType
}

// invalid is a validation error naming its field: EINVALID, so the API
// answers 400 with the message.
func invalid(field, format string, args ...any) error {
	return kith.Errorf(kith.EINVALID, "%s: %s", field, fmt.Sprintf(format, args...))
}

// Validate checks a destination as the API must before storing it: its
// type, its config (against the type's declaration), how audience changes
// are sent, its rate limit and its filter. Errors are EINVALID and name
// the field.
func Validate(d kith.Destination) error {
	t, ok := types[d.Type]
	if !ok {
		return invalid("type", "unknown destination type %q (one of %s)", d.Type, typeNames())
	}
	if _, err := t.decode(d.Config); err != nil {
		return err
	}
	switch d.AudienceAs {
	case "", kith.AudienceAsTrack, kith.AudienceAsIdentify:
	default:
		return invalid("audienceAs", "must be %q or %q", kith.AudienceAsTrack, kith.AudienceAsIdentify)
	}
	// 0 is no cap; a rate below one message in 100 s would overflow the
	// limiter's spacing, and one above a million is no cap either.
	if d.RateLimit != 0 && !(d.RateLimit >= 0.01 && d.RateLimit <= 1e6) {
		return invalid("rateLimit", "must be 0 (no cap) or 0.01 to 1000000 deliveries per second")
	}
	if err := checkMapping(d.Mapping); err != nil {
		return err
	}
	for i, a := range d.Audiences {
		if why := audience.KeyProblem(a); a != "" && why != "" {
			return invalid(fmt.Sprintf("audiences[%d]", i), "%s", why)
		}
	}
	lists := []nameList{{"audiences", "audience key", d.Audiences}, {"consent", "consent category", d.Consent}, {"traits", "trait key", d.Traits}}
	if f := d.Events; f != nil {
		// A filter on a call type no event has would silently select
		// nothing.
		for i, typ := range f.Types {
			if !slices.Contains(callTypes, typ) {
				return invalid(fmt.Sprintf("events.types[%d]", i), "unknown call type %q (one of %s)", typ, strings.Join(callTypes, ", "))
			}
		}
		lists = append(lists, nameList{"events.events", "event name", f.Events}, nameList{"events.sources", "source id", f.Sources})
	}
	for _, l := range lists {
		if err := l.check(); err != nil {
			return err
		}
	}
	return nil
}

// nameList is one of a destination's lists of names, checked alike.
type nameList struct {
	field, what string
	items       []string
}

func (l nameList) check() error {
	if len(l.items) > maxListItems {
		return invalid(l.field, "at most %d items (it has %d)", maxListItems, len(l.items))
	}
	for i, v := range l.items {
		field := fmt.Sprintf("%s[%d]", l.field, i)
		if v == "" {
			return invalid(field, "empty %s", l.what)
		}
		if len(v) > maxItemBytes {
			return invalid(field, "at most %d bytes (it is %d)", maxItemBytes, len(v))
		}
		if err := kith.CheckText(field, v); err != nil {
			return err
		}
	}
	return nil
}

// A destination's lists (audiences, consent categories, event names and
// sources of its filter) are names, not data: bounded so that a settings
// document stays small and every comparison cheap.
const (
	maxListItems = 1000
	maxItemBytes = 200
)

// callTypes are the Segment call types an event filter can select.
var callTypes = []string{"alias", "group", "identify", "page", "screen", "track"}

// Redact returns a destination's config with the values of its secret
// fields replaced, as the API serves it after creation: secrets are shown
// once, like write keys. A config that does not decode is returned as {}.
func Redact(typ string, raw json.RawMessage) json.RawMessage {
	t, ok := types[typ]
	if !ok {
		return json.RawMessage("{}")
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return json.RawMessage("{}")
	}
	for _, f := range t.Fields {
		v, ok := m[f.Name]
		if ok && f.URL {
			m[f.Name] = redactURL(v)
		}
		if !f.Secret || !ok {
			continue
		}
		if f.Type == "object" {
			var obj map[string]json.RawMessage
			if json.Unmarshal(v, &obj) == nil {
				for k := range obj {
					obj[k] = json.RawMessage(`"` + redacted + `"`)
				}
				m[f.Name], _ = json.Marshal(obj)
				continue
			}
		}
		m[f.Name] = json.RawMessage(`"` + redacted + `"`)
	}
	out, _ := json.Marshal(m)
	return out
}

// redacted stands for a secret value the API does not serve back.
const redacted = "(secret)"

// redactURL returns a URL (a JSON string) without its password and with
// each query value redacted: tokens often travel there. What does not
// parse is redacted whole.
func redactURL(v json.RawMessage) json.RawMessage {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return json.RawMessage(`"` + redacted + `"`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return json.RawMessage(`"` + redacted + `"`)
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			for i := range q[k] {
				q[k][i] = redacted
			}
		}
		u.RawQuery = q.Encode()
	}
	out, _ := json.Marshal(u.String())
	return out
}

// newSender builds the sender for a destination whose config is valid.
func newSender(d kith.Destination, t transport) (Sender, error) {
	typ, ok := types[d.Type]
	if !ok {
		return nil, invalid("type", "unknown destination type %q (one of %s)", d.Type, typeNames())
	}
	cfg, err := typ.decode(d.Config)
	if err != nil {
		return nil, err
	}
	return typ.build(cfg, t)
}

// NewSender builds the sender of a destination (whose config Validate
// accepts) for one-off use, such as sending a test message (kith
// destination test). rt carries its requests; nil gives it its own
// connection pool.
func NewSender(d kith.Destination, rt http.RoundTripper) (Sender, error) {
	return newSender(d, transport{base: rt})
}

// checkURL is the rule for every URL Kith sends to: absolute http or
// https with a host, and no credentials in it (they would show up in
// logs and errors; a header carries them).
func checkURL(field, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, invalid(field, "not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, invalid(field, "must be http or https")
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, invalid(field, "must name a host")
	}
	if u.User != nil {
		return nil, invalid(field, "must not hold credentials (send them in a header)")
	}
	return u, nil
}

// checkTimeout parses a timeout ("" is the default) and keeps it within
// reason: an attempt that may take longer than a minute holds the
// destination's worker for as long.
func checkTimeout(field, s string) (time.Duration, error) {
	if s == "" {
		return defaultTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, invalid(field, "not a duration (like \"10s\")")
	}
	if d <= 0 || d > maxTimeout {
		return 0, invalid(field, "must be more than 0 and at most %s", maxTimeout)
	}
	return d, nil
}

const (
	defaultTimeout = 10 * time.Second
	maxTimeout     = time.Minute
	// maxBatch caps messages per request for every type.
	maxBatch = 1000
)

// checkBatch checks a batch size: 0 or 1 send one message per request.
func checkBatch(field string, n int) (int, error) {
	if n < 0 || n > maxBatch {
		return 0, invalid(field, "must be between 0 and %d", maxBatch)
	}
	return max(n, 1), nil
}

// reservedHeaders are set by the sender and cannot be configured.
var reservedHeaders = []string{
	"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Host", "Connection",
	"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature",
}

// checkHeaders checks custom headers: valid names, values without line
// breaks, none the sender sets itself.
func checkHeaders(field string, h map[string]string) (http.Header, error) {
	out := http.Header{}
	for name, value := range h {
		if name == "" || strings.IndexFunc(name, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
			return nil, invalid(field+"."+name, "not a valid header name")
		}
		canon := http.CanonicalHeaderKey(name)
		if slices.Contains(reservedHeaders, canon) {
			return nil, invalid(field+"."+name, "set by Kith; cannot be configured")
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, invalid(field+"."+name, "must not contain line breaks")
		}
		out.Set(canon, value)
	}
	return out, nil
}

// isTokenChar reports whether r may appear in an HTTP header name (RFC
// 9110 token).
func isTokenChar(r rune) bool {
	return r < 0x7f && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

// FilterParts says what an event filter restricts, for the CLI and the
// console to word: each list that is not empty, as its name (types,
// events, sources) and its items; none for a filter that selects every
// accepted event.
func FilterParts(f kith.EventFilter) [][2]string {
	var out [][2]string
	for _, p := range []struct {
		what string
		list []string
	}{{"types", f.Types}, {"events", f.Events}, {"sources", f.Sources}} {
		if len(p.list) > 0 {
			out = append(out, [2]string{p.what, strings.Join(p.list, ", ")})
		}
	}
	return out
}
