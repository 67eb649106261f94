package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/rawjson"
)

// Rules is the identity-resolution configuration: which identifier types
// exist and where each is read from, how values are normalised, which
// values are junk, and the limits, priorities and never-merge declarations
// that decide whether an event may link profiles (Segment Unify semantics).
// The zero value is not valid; start from DefaultRules or ParseRules.
type Rules struct {
	// Types in any order; Priority orders them.
	Types []TypeRule `json:"types"`
	// Blocklist holds the values that never identify anyone.
	Blocklist Blocklist `json:"blocked"`
	// DefaultRegion is the ISO 3166 region phone numbers without a country
	// code belong to ("NL", "US"); empty keeps such numbers as digits.
	DefaultRegion string `json:"defaultRegion,omitempty"`
	// Undeclared applies to identifier types that arrive without a
	// declaration (context.externalIds of any type).
	Undeclared TypeRule `json:"undeclared"`

	blocked  []*regexp.Regexp
	exact    map[string]bool
	byName   map[string]int
	fast     [][]byte // byte markers that force the full extraction path
	slowOnly bool     // no fast path at all
}

// TypeRule declares one identifier type.
type TypeRule struct {
	// Name is the type ("user_id", "email", "crm_id"). With ByDeviceType
	// the stored type is "<context.device.type>.<Name>", as Segment names
	// device ids ("ios.id", "android.idfa").
	Name string `json:"name"`
	// Sources are where values are read: "userId", "anonymousId",
	// "groupId", "traits.<key>" (identify traits), "context.traits.<key>",
	// "properties.<key>", "context.device.id",
	// "context.device.advertisingId" (only when adTrackingEnabled is
	// true), "integrations.<name>.<key>", "externalIds" (context.externalIds
	// entries of this type).
	Sources []string `json:"sources"`
	// ByDeviceType prefixes the type with the device type.
	ByDeviceType bool `json:"byDeviceType,omitempty"`
	// Normalise is "email" (trim, lower-case), "phone" (E.164 with the
	// default region), "lower" (trim, lower-case) or "trim" (the default).
	Normalise string `json:"normalise,omitempty"`
	// Priority orders types: 1 is the strongest. When an event would break
	// a limit, its lowest-priority identifier is dropped and matching
	// retried.
	Priority int `json:"priority"`
	// Limit is how many values of this type one profile may have (0: no
	// limit); with Window, how many seen within that window of the event.
	Limit  int      `json:"limit,omitempty"`
	Window Duration `json:"window,omitempty"`
	// NeverMerge: two profiles with different values of this type are
	// never merged, whatever links them.
	NeverMerge bool `json:"neverMerge,omitempty"`

	paths [][]string // Sources split at dots
}

// Blocklist is the junk values: exact (compared lower-cased) and patterns
// (regular expressions matched against the lower-cased value).
type Blocklist struct {
	Exact    []string `json:"exact"`
	Patterns []string `json:"patterns"`
}

// Duration is a time.Duration written as "168h", "7d" or "1w" in JSON.
type Duration time.Duration

// UnmarshalJSON reads "168h", "7d", "2w" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(b, &secs); err != nil {
			return fmt.Errorf("duration must be a string like \"7d\" or seconds: %s", b)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := ParseWindow(s)
	*d = Duration(v)
	return err
}

// MarshalJSON writes the duration in hours.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ParseWindow reads a window: Go durations ("168h") and days/weeks ("7d",
// "2w", "weekly", "daily", "monthly" = 30 days).
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	switch s {
	case "", "ever":
		return 0, nil
	case "daily":
		return 24 * time.Hour, nil
	case "weekly":
		return 7 * 24 * time.Hour, nil
	case "monthly":
		return 30 * 24 * time.Hour, nil
	}
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			// The whole number, finite, and a window that fits a Duration
			// (math.MaxInt64 as a float64 is 2^63): "1xd" or "infd" is no
			// window, and 300000d must not wrap around to a negative one.
			v, err := strconv.ParseFloat(n, 64)
			if err == nil && v > 0 && v*float64(unit) < math.MaxInt64 {
				if d := time.Duration(v * float64(unit)); d > 0 {
					return d, nil
				}
			}
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("window %q: want e.g. 7d, 2w, weekly or 168h", s)
	}
	return d, nil
}

// DefaultRules are Segment Unify's defaults: user_id (priority 1, one per
// profile ever), email (2), phone (3), Google Analytics client id, device
// and advertising ids, undeclared external id types (50), and anonymous_id
// last (90), five values each; the well-known junk values blocked.
func DefaultRules() *Rules {
	r := &Rules{
		Types: []TypeRule{
			{Name: kith.IdentUserID, Sources: []string{"userId", "externalIds"}, Priority: 1, Limit: 1},
			{Name: kith.IdentEmail, Sources: []string{"traits.email", "context.traits.email", "externalIds"}, Normalise: "email", Priority: 2, Limit: 5},
			{Name: kith.IdentPhone, Sources: []string{"traits.phone", "context.traits.phone", "externalIds"}, Normalise: "phone", Priority: 3, Limit: 5},
			{Name: "ga_client_id", Sources: []string{"integrations.Google Analytics.clientId", "externalIds"}, Priority: 4, Limit: 5},
			{Name: "id", Sources: []string{"context.device.id"}, ByDeviceType: true, Priority: 5, Limit: 5},
			{Name: "idfa", Sources: []string{"context.device.advertisingId"}, ByDeviceType: true, Priority: 6, Limit: 5},
			// Lowest: a cookie or device-scoped id is the first to give way
			// (Segment's missed-logout example).
			{Name: kith.IdentAnonymousID, Sources: []string{"anonymousId", "externalIds"}, Priority: 90, Limit: 5},
		},
		Blocklist: Blocklist{
			Exact: []string{"-1", "null", "nil", "undefined", "none", "anonymous", "unknown", "n/a", "na", "[object object]",
				"test@test.com", "test@example.com", "email@example.com", "noemail@noemail.com", "no@email.com", "none@none.com",
				"user@example.com", "a@a.com", "asdf@asdf.com"},
			Patterns: []string{`^[0-]*$`, `^(null|undefined|none|unknown)@`},
		},
		Undeclared: TypeRule{Priority: 50, Limit: 5},
	}
	if err := r.compile(); err != nil {
		panic(err) // the defaults are valid
	}
	return r
}

// ParseRules reads rules from JSON and validates them.
func ParseRules(b []byte) (*Rules, error) {
	r := &Rules{}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return nil, fmt.Errorf("identity rules: %w", err)
	}
	if r.Undeclared.Priority == 0 {
		r.Undeclared = TypeRule{Priority: 50, Limit: 5}
	}
	if err := r.compile(); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadRules reads a rules file.
func LoadRules(path string) (*Rules, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity rules: %w", err)
	}
	return ParseRules(b)
}

var knownSources = []string{"userId", "anonymousId", "groupId", "externalIds", "context.device.id", "context.device.advertisingId"}

// compile validates the rules and prepares their lookups.
func (r *Rules) compile() error {
	r.byName = map[string]int{}
	r.exact = map[string]bool{}
	r.blocked = nil
	markers := map[string]bool{}
	for i := range r.Types {
		t := &r.Types[i]
		t.Name = strings.ToLower(strings.TrimSpace(t.Name))
		if t.Name == "" || strings.ContainsAny(t.Name, ": /") {
			return fmt.Errorf("identity rules: type %d: name %q must be non-empty, without ':', ' ' or '/'", i+1, t.Name)
		}
		if _, dup := r.byName[t.Name]; dup {
			return fmt.Errorf("identity rules: type %q declared twice", t.Name)
		}
		r.byName[t.Name] = i
		if t.Priority < 1 {
			return fmt.Errorf("identity rules: type %q: priority must be 1 or more", t.Name)
		}
		if t.Limit < 0 || t.Window < 0 {
			return fmt.Errorf("identity rules: type %q: limit and window must not be negative", t.Name)
		}
		switch t.Normalise {
		case "", "trim", "lower", "email", "phone":
		default:
			return fmt.Errorf("identity rules: type %q: unknown normalisation %q (email, phone, lower, trim)", t.Name, t.Normalise)
		}
		if len(t.Sources) == 0 {
			return fmt.Errorf("identity rules: type %q has no sources", t.Name)
		}
		t.paths = nil
		for _, s := range t.Sources {
			t.paths = append(t.paths, strings.Split(s, "."))
			ok := slices.Contains(knownSources, s)
			for _, p := range []string{"traits.", "context.traits.", "properties.", "integrations."} {
				if rest, found := strings.CutPrefix(s, p); found && rest != "" {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("identity rules: type %q: unknown source %q", t.Name, s)
			}
			markers[marker(s)] = true
		}
	}
	// The undeclared rule applies to every type nobody declared: it must
	// be as valid as a declared one.
	if u := r.Undeclared; u.Priority < 1 || u.Limit < 0 || u.Window < 0 || !slices.Contains([]string{"", "trim", "lower", "email", "phone"}, u.Normalise) {
		return fmt.Errorf("identity rules: undeclared: priority must be 1 or more, limit and window not negative, normalise one of email, phone, lower, trim")
	}
	for _, e := range r.Blocklist.Exact {
		r.exact[strings.ToLower(strings.TrimSpace(e))] = true
	}
	for _, p := range r.Blocklist.Patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return fmt.Errorf("identity rules: blocked pattern %q: %w", p, err)
		}
		r.blocked = append(r.blocked, re)
	}
	if r.DefaultRegion != "" {
		r.DefaultRegion = strings.ToUpper(r.DefaultRegion)
		if phonenumbers.GetCountryCodeForRegion(r.DefaultRegion) == 0 {
			return fmt.Errorf("identity rules: unknown default region %q", r.DefaultRegion)
		}
	}
	delete(markers, "")
	// context.traits always feed a message's traits, whatever the rules
	// read; and a device-typed rule over the typed ids needs the device
	// type, which only the full path reads.
	markers["traits"] = true
	r.slowOnly = false
	for _, t := range r.Types {
		if t.ByDeviceType && (slices.Contains(t.Sources, "userId") || slices.Contains(t.Sources, "anonymousId")) {
			r.slowOnly = true
		}
	}
	r.fast = nil
	for _, m := range slices.Sorted(maps.Keys(markers)) {
		r.fast = append(r.fast, []byte(`"`+m+`"`))
	}
	return nil
}

// marker is the JSON key whose absence from a message proves a source has
// no value there; "" for the typed userId/anonymousId.
func marker(source string) string {
	switch source {
	case "userId", "anonymousId":
		return ""
	case "externalIds", "groupId":
		return source
	}
	parts := strings.Split(source, ".")
	if parts[0] == "context" && len(parts) > 1 {
		return parts[1] // traits, device
	}
	if parts[0] == "traits" {
		return "traits"
	}
	return parts[len(parts)-1]
}

// Rule returns the rule of a stored identifier type, falling back to the
// undeclared rule.
func (r *Rules) Rule(typ string) TypeRule {
	if i, ok := r.byName[typ]; ok {
		return r.Types[i]
	}
	if _, suffix, ok := strings.Cut(typ, "."); ok {
		if i, ok := r.byName[suffix]; ok && r.Types[i].ByDeviceType {
			return r.Types[i]
		}
	}
	u := r.Undeclared
	u.Name = typ
	return u
}

// Blocked reports whether a value must never link profiles.
func (r *Rules) Blocked(value string) bool {
	v := strings.ToLower(strings.TrimSpace(value))
	if v == "" || r.exact[v] {
		return true
	}
	for _, re := range r.blocked {
		if re.MatchString(v) {
			return true
		}
	}
	return false
}

// Normalise returns the canonical form of a value of the given type.
func (r *Rules) Normalise(typ, value string) Identifier {
	typ = strings.ToLower(strings.TrimSpace(typ))
	value = strings.TrimSpace(value)
	switch r.Rule(typ).Normalise {
	case "email", "lower":
		value = strings.ToLower(value)
	case "phone":
		value = r.phone(value)
	}
	return Identifier{Type: typ, Value: value}
}

// phone formats a number as E.164 when it parses (with the default region
// for numbers without a country code), else keeps its digits (and a
// leading '+'). Normalising must be idempotent (a stored value normalises
// to itself, or a reference typed from it finds nothing), so the digits are
// tried as a number too, and an E.164 form that libphonenumber reads as
// another number (a national prefix after the country code, letters read
// from the keypad) is formatted again until it is stable.
func (r *Rules) phone(value string) string {
	e164 := func(v string) (string, bool) {
		num, err := phonenumbers.Parse(v, r.DefaultRegion)
		if err != nil || !phonenumbers.IsPossibleNumber(num) {
			return "", false
		}
		return phonenumbers.Format(num, phonenumbers.E164), true
	}
	var b strings.Builder
	for i, c := range value {
		if c >= '0' && c <= '9' || (c == '+' && i == 0) {
			b.WriteRune(c)
		}
	}
	out, ok := e164(value)
	if !ok {
		if out, ok = e164(b.String()); !ok {
			return b.String()
		}
	}
	for range 20 { // an E.164 number has at most 15 digits to lose
		next, ok := e164(out)
		if !ok || next == out {
			break
		}
		out = next
	}
	return out
}

// ParseRef splits a profile reference "type:value" and normalises it. ok
// is false when ref has no type prefix (it is then a profile id).
func (r *Rules) ParseRef(ref string) (Identifier, bool) {
	typ, value, found := strings.Cut(ref, ":")
	if !found || typ == "" || strings.ContainsAny(typ, " /") {
		return Identifier{}, false
	}
	return r.Normalise(typ, value), true
}

// Priority orders identifiers: strongest first, then by type and value so
// the order is stable.
func (r *Rules) Priority(ids []Identifier) {
	slices.SortStableFunc(ids, func(a, b Identifier) int {
		pa, pb := r.Rule(a.Type).Priority, r.Rule(b.Type).Priority
		if pa != pb {
			return pa - pb
		}
		return strings.Compare(a.Type, b.Type)
	})
}

// Extract reads identifiers and traits from a normalised message.
func (r *Rules) Extract(m kith.Message) (Extracted, error) {
	var ex Extracted
	// Most events carry nothing beyond the typed userId and anonymousId:
	// when none of the keys the rules read appears in the message, it need
	// not be decoded at all. (A message with \u escapes takes the full
	// path: a key could be spelled with them.)
	if !r.slowOnly && m.Type != "identify" && m.Type != "alias" && !bytes.Contains(m.Raw, []byte(`\u`)) && !r.mentionsAny(m.Raw) {
		for _, s := range []struct{ src, v string }{{"userId", m.UserID}, {"anonymousId", m.AnonymousID}} {
			for _, t := range r.Types {
				if slices.Contains(t.Sources, s.src) {
					if id := r.Normalise(t.Name, s.v); !r.Blocked(id.Value) && !slices.Contains(ex.Identifiers, id) {
						ex.Identifiers = append(ex.Identifiers, id)
					}
				}
			}
		}
		r.Priority(ex.Identifiers)
		return ex, nil
	}
	return r.extractFull(m)
}

func (r *Rules) mentionsAny(raw []byte) bool {
	for _, mk := range r.fast {
		if bytes.Contains(raw, mk) {
			return true
		}
	}
	return false
}

// message is a lazily split message: each nested object is split once,
// however many sources read below it.
type message struct {
	top, ctx, device map[string]json.RawMessage
	typ              string
	objs             map[string]map[string]json.RawMessage // by dotted path
}

func (mg *message) path(p []string) json.RawMessage {
	obj := mg.top
	for i, k := range p {
		v, ok := obj[k]
		if !ok {
			return nil
		}
		if i == len(p)-1 {
			return v
		}
		prefix := strings.Join(p[:i+1], ".")
		next, seen := mg.objs[prefix]
		if !seen {
			next, _ = rawjson.Object(v)
			if mg.objs == nil {
				mg.objs = map[string]map[string]json.RawMessage{}
			}
			mg.objs[prefix] = next
		}
		if next == nil {
			return nil
		}
		obj = next
	}
	return nil
}

func (r *Rules) extractFull(m kith.Message) (Extracted, error) {
	var ex Extracted
	top, err := rawjson.Object(m.Raw)
	if err != nil {
		return ex, fmt.Errorf("identity: message: %w", err)
	}
	if top == nil {
		return ex, errors.New("identity: message is not a JSON object")
	}
	mg := &message{top: top, typ: m.Type}
	if mg.ctx, err = rawjson.Object(top["context"]); err != nil {
		return ex, fmt.Errorf("identity: context: %w", err)
	}
	mg.device, _ = rawjson.Object(mg.ctx["device"])
	mg.objs = map[string]map[string]json.RawMessage{"context": mg.ctx, "context.device": mg.device}
	deviceType := strings.ToLower(strings.TrimSpace(scalar(mg.device["type"])))
	if deviceType == "" {
		deviceType = "device"
	}
	var external []struct {
		ID   json.RawMessage `json:"id"`
		Type string          `json:"type"`
	}
	if x, ok := mg.ctx["externalIds"]; ok {
		_ = json.Unmarshal(x, &external) // not a list of {id,type}: no external ids
	}
	seen := map[Identifier]bool{}
	add := func(typ string, v json.RawMessage) {
		s := scalar(v)
		if s == "" {
			return
		}
		id := r.Normalise(typ, s)
		if id.Type == "" || r.Blocked(id.Value) || seen[id] {
			return
		}
		seen[id] = true
		ex.Identifiers = append(ex.Identifiers, id)
	}
	declared := map[string]bool{}
	for _, t := range r.Types {
		typ := t.Name
		if t.ByDeviceType {
			typ = deviceType + "." + t.Name
		}
		declared[t.Name] = true
		for si, src := range t.Sources {
			switch {
			case src == "externalIds":
				continue // below, in one pass
			case src == "context.device.advertisingId":
				if strings.TrimSpace(string(mg.device["adTrackingEnabled"])) == "true" {
					add(typ, mg.device["advertisingId"])
				}
			case src == "groupId":
				if m.Type == "group" {
					add(typ, top["groupId"])
				}
			case strings.HasPrefix(src, "traits."):
				// Top-level traits describe the person only on identify;
				// on group they describe the company.
				if m.Type == "identify" {
					add(typ, mg.path(t.paths[si]))
				}
			default:
				add(typ, mg.path(t.paths[si]))
			}
		}
	}
	for _, x := range external {
		typ := strings.ToLower(strings.TrimSpace(x.Type))
		switch typ {
		case "user_id", "userid":
			typ = kith.IdentUserID
		case "anonymous_id", "anonymousid":
			typ = kith.IdentAnonymousID
		}
		if declared[typ] && !slices.Contains(r.Types[r.byName[typ]].Sources, "externalIds") {
			continue // declared without externalIds as a source
		}
		add(typ, x.ID)
	}
	r.Priority(ex.Identifiers)
	if m.Type == "alias" {
		if p := strings.TrimSpace(scalar(top["previousId"])); p != "" && !r.Blocked(p) {
			ex.PreviousID = p
		}
	}
	ctxTraits, ok := mg.objs["context.traits"]
	if !ok {
		if ctxTraits, err = rawjson.Object(mg.ctx["traits"]); err != nil {
			return ex, fmt.Errorf("identity: context.traits: %w", err)
		}
	}
	traits, ok := mg.objs["traits"]
	if !ok {
		if traits, err = rawjson.Object(top["traits"]); err != nil {
			return ex, fmt.Errorf("identity: traits: %w", err)
		}
	}
	if m.Type == "identify" || len(ctxTraits) > 0 {
		ex.Traits = map[string]json.RawMessage{}
		for k, v := range ctxTraits {
			ex.Traits[k] = v
		}
		if m.Type == "identify" {
			for k, v := range traits {
				ex.Traits[k] = v
			}
		}
	}
	return ex, nil
}
