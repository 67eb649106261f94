// Package collect owns the Segment HTTP Tracking API's message semantics:
// it turns a request body into validated, normalised messages (type and id
// checks, batch context merge, clock-skew correction, defaults, limits) and
// commits them to the event log in group commits so that an acknowledgement
// is only sent once the events are durable.
//
// Parsing is pure (no I/O) so every edge case of the spec is a table test.
package collect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/rawjson"
)

// Limits bounds what one request may carry. The defaults follow Segment.
type Limits struct {
	MaxEventBytes   int // 32 KB per message
	MaxRequestBytes int // 500 KB per request body (after decompression)
	MaxMessageIDLen int // 100 characters
}

// DefaultLimits returns Segment's published limits.
func DefaultLimits() Limits {
	return Limits{MaxEventBytes: 32 << 10, MaxRequestBytes: 500 << 10, MaxMessageIDLen: 100}
}

// Rejection names one message that was not accepted and why. Index is the
// item's position in the batch (0 for single-message endpoints).
type Rejection struct {
	Index   int    `json:"index"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Parsed is the outcome of parsing one request.
type Parsed struct {
	// WriteKey is the writeKey found in the body, if any.
	WriteKey string
	// Messages are the acceptable messages; SourceID is left empty.
	Messages []kith.Message
	Rejected []Rejection
}

// messageTypes are the Segment call types, which are also the endpoints.
var messageTypes = map[string]bool{
	"identify": true, "track": true, "page": true, "screen": true, "group": true, "alias": true,
}

// Meta is what the server knows about a request besides its body.
type Meta struct {
	ReceivedAt time.Time
	// IP is the client's address, recorded as context.ip when the message
	// does not carry one (as Segment does).
	IP string
}

// Parse validates and normalises a request body sent to /v1/{endpoint}
// ("batch" or a message type). A body that is not
// a JSON object yields one invalid_json rejection. The body must already be
// decompressed and within Limits.MaxRequestBytes.
func Parse(body []byte, endpoint string, meta Meta, lim Limits) Parsed {
	meta.ReceivedAt = meta.ReceivedAt.UTC().Truncate(time.Microsecond)
	if !json.Valid(body) {
		var v any
		return invalidBody(json.Unmarshal(body, &v), "", "invalid JSON")
	}
	top, err := rawjson.Object(body)
	if err != nil || top == nil {
		return invalidBody(nil, "", "body is not a JSON object")
	}
	if endpoint != "batch" {
		return parseItems([]map[string]json.RawMessage{top}, endpoint, batchEnvelope{}, meta, lim)
	}
	env := batchEnvelope{WriteKey: top["writeKey"], SentAt: top["sentAt"]}
	raw, ok := top["batch"]
	if !ok || isNull(raw) {
		return invalidBody(nil, rawjson.String(env.WriteKey), `batch body needs a "batch" array`)
	}
	elems, isArray, err := rawjson.Array(raw)
	if !isArray || err != nil {
		return invalidBody(nil, rawjson.String(env.WriteKey), `"batch" must be an array of objects`)
	}
	// A batch context or integrations that is not an object is ignored, as
	// Segment does.
	if c := top["context"]; isObject(c) {
		env.Context, _ = rawjson.Object(c)
	}
	if c := top["integrations"]; isObject(c) {
		env.Integrations, _ = rawjson.Object(c)
	}
	items := make([]map[string]json.RawMessage, len(elems))
	for i, e := range elems {
		items[i], _ = rawjson.Object(e) // a non-object item stays nil and is rejected
	}
	return parseItems(items, endpoint, env, meta, lim)
}

// batchEnvelope is what a /v1/batch body carries besides its items.
type batchEnvelope struct {
	Context      map[string]json.RawMessage
	Integrations map[string]json.RawMessage
	SentAt       json.RawMessage
	WriteKey     json.RawMessage
}

func invalidBody(err error, writeKey, msg string) Parsed {
	if err != nil {
		msg = "invalid JSON: " + err.Error()
	}
	return Parsed{WriteKey: writeKey, Rejected: []Rejection{{Index: 0, Reason: kith.ReasonInvalidJSON, Message: msg}}}
}

func parseItems(items []map[string]json.RawMessage, endpoint string, env batchEnvelope, meta Meta, lim Limits) Parsed {
	p := Parsed{WriteKey: rawjson.String(env.WriteKey)}
	sentAt := rawjson.String(env.SentAt)
	for i, msg := range items {
		// The write key is read before validation, so that a request whose
		// only key is inside a bad message is told what is wrong with it
		// (and counted), not that it lacks a key.
		if p.WriteKey == "" && msg != nil {
			p.WriteKey = rawjson.String(msg["writeKey"])
		}
		m, rej := normalise(msg, endpoint, env.Context, env.Integrations, sentAt, meta, lim)
		if rej != nil {
			rej.Index = i
			p.Rejected = append(p.Rejected, *rej)
			continue
		}
		p.Messages = append(p.Messages, m)
	}
	return p
}

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// normalise validates one message and fills Segment's defaults. The message
// is decoded one level deep only: nested values (properties, traits, most of
// context) are carried over byte for byte, so a message costs one scan and
// no re-encoding of what the client sent.
func normalise(msg map[string]json.RawMessage, endpoint string, batchCtx, batchIntegrations map[string]json.RawMessage, batchSentAt string, meta Meta, lim Limits) (kith.Message, *Rejection) {
	receivedAt := meta.ReceivedAt
	if msg == nil {
		return kith.Message{}, reject(kith.ReasonInvalidField, "message is not a JSON object")
	}
	var out kith.Message
	delete(msg, "writeKey") // a secret: never stored

	typ := rawjson.String(msg["type"])
	if endpoint != "batch" {
		typ = endpoint
	}
	switch {
	case typ == "":
		return out, reject(kith.ReasonMissingType, `message has no "type"`)
	case !messageTypes[typ]:
		return out, reject(kith.ReasonUnknownType, "unknown type %q", typ)
	}
	msg["type"] = quote(typ)

	userID, err := idString(msg, "userId")
	if err != nil {
		return out, err
	}
	anonID, err := idString(msg, "anonymousId")
	if err != nil {
		return out, err
	}
	if userID == "" && anonID == "" {
		return out, reject(kith.ReasonMissingID, `message needs "userId" or "anonymousId"`)
	}
	switch typ {
	case "track":
		ev := rawjson.String(msg["event"])
		if strings.TrimSpace(ev) == "" {
			return out, reject(kith.ReasonMissingEvent, `track needs a non-empty "event"`)
		}
		out.Event = ev
	case "alias":
		prev, err := idString(msg, "previousId")
		if err != nil {
			return out, err
		}
		if prev == "" {
			return out, reject(kith.ReasonMissingPrevious, `alias needs "previousId"`)
		}
		if userID == "" {
			return out, reject(kith.ReasonMissingID, `alias needs "userId"`)
		}
	case "group":
		gid, err := idString(msg, "groupId")
		if err != nil {
			return out, err
		}
		if gid == "" {
			return out, reject(kith.ReasonMissingGroupID, `group needs "groupId"`)
		}
	case "page", "screen":
		out.Event = rawjson.String(msg["name"])
	}

	mid, err := idString(msg, "messageId")
	if err != nil {
		return out, err
	}
	if mid == "" {
		mid = newMessageID()
		msg["messageId"] = quote(mid)
	} else if n := utf8.RuneCountInString(mid); lim.MaxMessageIDLen > 0 && n > lim.MaxMessageIDLen {
		return out, reject(kith.ReasonMessageIDTooLong, "messageId is %d characters; the limit is %d", n, lim.MaxMessageIDLen)
	}

	// Batch-level context and integrations merge into each item; the item's
	// own keys win. context.ip is the client's address unless given.
	ip := map[string]json.RawMessage(nil)
	if meta.IP != "" {
		ip = map[string]json.RawMessage{"ip": quote(meta.IP)}
	}
	for _, f := range []struct {
		key      string
		defaults []map[string]json.RawMessage
	}{{"context", []map[string]json.RawMessage{batchCtx, ip}}, {"integrations", []map[string]json.RawMessage{batchIntegrations}}} {
		merged, rej := mergeObject(msg[f.key], f.key, f.defaults...)
		if rej != nil {
			return out, rej
		}
		msg[f.key] = merged
	}
	for _, key := range defaultObjects[typ] {
		v, present := msg[key]
		if !present || isNull(v) {
			msg[key] = json.RawMessage("{}")
		} else if !isObject(v) {
			return out, reject(kith.ReasonInvalidField, "%q must be an object", key)
		}
	}

	ts, rej := correctTime(msg, batchSentAt, receivedAt)
	if rej != nil {
		return out, rej
	}
	msg["receivedAt"] = quote(formatTime(receivedAt))
	msg["timestamp"] = quote(formatTime(ts))

	if props, ok := msg["properties"]; ok && bytes.Contains(props, []byte(`"revenue"`)) {
		if fields, _ := rawjson.Object(props); fields != nil {
			if r, ok := number(fields["revenue"]); ok {
				out.Revenue = &r
			}
		}
	}
	b := encodeObject(msg)
	// The limit applies to the message as stored, batch context included.
	if lim.MaxEventBytes > 0 && len(b) > lim.MaxEventBytes {
		return out, reject(kith.ReasonEventTooLarge, "message is %d bytes as stored (batch context included); the limit is %d", len(b), lim.MaxEventBytes)
	}
	// Text every store can hold (kith.JSONTextProblem): reject the message
	// rather than fail the group commit it would join.
	if p := kith.JSONTextProblem(b); p != "" {
		if path, _ := kith.JSONTextPath(b); path != "" {
			return out, reject(kith.ReasonInvalidField, "message %s: %s", p, path)
		}
		return out, reject(kith.ReasonInvalidField, "message %s", p)
	}
	out.MessageID = mid
	out.Type = typ
	out.UserID = userID
	out.AnonymousID = anonID
	out.Timestamp = ts
	out.ReceivedAt = receivedAt
	out.Raw = b
	return out, nil
}

// mergeObject returns the object own with the keys of each defaults map
// that it lacks (earlier defaults first). An absent or null own is {}. The
// missing members are spliced in as text: own is never decoded.
func mergeObject(own json.RawMessage, name string, defaults ...map[string]json.RawMessage) (json.RawMessage, *Rejection) {
	if own == nil || isNull(own) {
		own = json.RawMessage("{}")
	} else if !isObject(own) {
		return nil, reject(kith.ReasonInvalidField, "%q must be an object", name)
	}
	var add map[string]json.RawMessage
	for _, d := range defaults {
		for k, v := range d {
			if _, taken := add[k]; taken || hasKey(own, k) {
				continue
			}
			if add == nil {
				add = map[string]json.RawMessage{}
			}
			add[k] = v
		}
	}
	if len(add) == 0 {
		return own, nil
	}
	keys := make([]string, 0, len(add))
	for k := range add {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	open := bytes.IndexByte(own, '{')
	rest := bytes.TrimLeft(own[open+1:], " \t\r\n")
	out := rawjson.AppendMembers(append(make([]byte, 0, len(own)+64), '{'), keys, add)
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...), nil
}

// hasKey reports whether the valid JSON object obj has key at its top level,
// scanning without decoding.
func hasKey(obj []byte, key string) bool {
	depth, expectKey := 0, false
	for i := 0; i < len(obj); i++ {
		switch c := obj[i]; c {
		case '"':
			j, escaped := i+1, false
			for ; j < len(obj); j++ {
				if obj[j] == '\\' {
					escaped = true
					j++
					continue
				}
				if obj[j] == '"' {
					break
				}
			}
			if depth == 1 && expectKey {
				if escaped {
					if rawjson.String(obj[i:j+1]) == key {
						return true
					}
				} else if string(obj[i+1:j]) == key {
					return true
				}
				expectKey = false
			}
			i = j
		case '{', '[':
			depth++
			expectKey = c == '{' && depth == 1
		case '}', ']':
			depth--
		case ',':
			expectKey = depth == 1
		case ':':
			if depth == 1 {
				expectKey = false
			}
		}
	}
	return false
}

// encodeObject writes a one-level object with sorted keys; values are
// already-encoded JSON.
func encodeObject(m map[string]json.RawMessage) json.RawMessage {
	size := 2
	for k, v := range m {
		size += len(k) + len(v) + 4
	}
	return rawjson.AppendObject(make([]byte, 0, size), m)
}

func quote(s string) json.RawMessage { return rawjson.AppendQuoted(nil, s) }

func firstByte(v json.RawMessage) byte {
	for _, c := range v {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

func isObject(v json.RawMessage) bool { return firstByte(v) == '{' }

func isNull(v json.RawMessage) bool { return firstByte(v) == 'n' }

// defaultObjects are the objects Segment fills with {} when absent.
var defaultObjects = map[string][]string{
	"identify": {"traits"},
	"group":    {"traits"},
	"track":    {"properties"},
	"page":     {"properties"},
	"screen":   {"properties"},
}

// correctTime applies Segment's clock-skew correction:
// timestamp = receivedAt − (sentAt − originalTimestamp) when the client sent
// sentAt; a client timestamp is treated as the original time; with neither,
// the event happened when it was received.
func correctTime(msg map[string]json.RawMessage, batchSentAt string, receivedAt time.Time) (time.Time, *Rejection) {
	parse := func(key string) (time.Time, bool, *Rejection) {
		v, present := msg[key]
		if !present || isNull(v) {
			return time.Time{}, false, nil
		}
		if firstByte(v) != '"' {
			return time.Time{}, false, reject(kith.ReasonInvalidField, "%q must be an ISO-8601 string", key)
		}
		s := rawjson.String(v)
		if s == "" {
			return time.Time{}, false, nil
		}
		t, err := parseTime(s)
		if err != nil {
			return time.Time{}, false, reject(kith.ReasonInvalidField, "%q is not an ISO-8601 time: %q", key, s)
		}
		return t, true, nil
	}
	orig, hasOrig, rej := parse("originalTimestamp")
	if rej != nil {
		return time.Time{}, rej
	}
	clientTS, hasTS, rej := parse("timestamp")
	if rej != nil {
		return time.Time{}, rej
	}
	if !hasOrig && hasTS {
		orig, hasOrig = clientTS, true
		msg["originalTimestamp"] = quote(formatTime(orig))
	}
	if _, present := msg["sentAt"]; !present && batchSentAt != "" {
		msg["sentAt"] = quote(batchSentAt)
	}
	sent, hasSent, rej := parse("sentAt")
	if rej != nil {
		return time.Time{}, rej
	}
	switch {
	case hasOrig && hasSent:
		return receivedAt.Add(-sent.Sub(orig)).Truncate(time.Microsecond), nil
	case hasOrig:
		return orig.UTC().Truncate(time.Microsecond), nil
	default:
		return receivedAt, nil
	}
}

// timeLayouts are the ISO-8601 shapes SDKs send.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02",
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised time %q", s)
}

// formatTime renders times the way they are served back: UTC, microseconds.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// idString reads an id field that SDKs send as a string or a number and
// stores it back as a string, as Segment does.
func idString(msg map[string]json.RawMessage, key string) (string, *Rejection) {
	v, ok := msg[key]
	if !ok || isNull(v) {
		return "", nil
	}
	switch c := firstByte(v); {
	case c == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", reject(kith.ReasonInvalidField, "%q is not a valid string", key)
		}
		return s, nil
	case c == '-' || (c >= '0' && c <= '9'):
		s := strings.TrimSpace(string(v))
		msg[key] = quote(s)
		return s, nil
	default:
		return "", reject(kith.ReasonInvalidField, "%q must be a string or a number", key)
	}
}

// number reads a JSON number, or a string holding one.
func number(v json.RawMessage) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := strings.TrimSpace(string(v))
	if firstByte(v) == '"' {
		s = rawjson.String(v)
	}
	// Only finite decimal numbers: ParseFloat would also take "NaN",
	// "Inf" and hex floats, which would poison every sum.
	if s == "" || strings.ContainsAny(s, "xXnN") {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

// newMessageID assigns an id to a message that came without one.
func newMessageID() string {
	return kith.NewID("kith-")
}
