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
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kithcdp/kith"
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
	// Indexes[i] is the batch position of Messages[i].
	Indexes  []int
	Rejected []Rejection
	// Items is the number of messages the request carried.
	Items int
}

// messageTypes are the Segment call types, which are also the endpoints.
var messageTypes = map[string]bool{
	"identify": true, "track": true, "page": true, "screen": true, "group": true, "alias": true,
}

// IsEndpoint reports whether name is a valid /v1/{name} collection endpoint.
func IsEndpoint(name string) bool { return name == "batch" || messageTypes[name] }

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
	var items []json.RawMessage
	var batchCtx, batchIntegrations map[string]any
	var batchSentAt string
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		msg := "body is not a JSON object"
		if err != nil {
			msg = "invalid JSON: " + err.Error()
		}
		return Parsed{Items: 1, Rejected: []Rejection{{Index: 0, Reason: kith.ReasonInvalidJSON, Message: msg}}}
	}
	p := Parsed{WriteKey: jsonString(top["writeKey"])}
	if endpoint == "batch" {
		raw, ok := top["batch"]
		if !ok {
			return Parsed{WriteKey: p.WriteKey, Items: 1, Rejected: []Rejection{{Index: 0, Reason: kith.ReasonInvalidJSON, Message: `batch body needs a "batch" array`}}}
		}
		if err := json.Unmarshal(raw, &items); err != nil {
			return Parsed{WriteKey: p.WriteKey, Items: 1, Rejected: []Rejection{{Index: 0, Reason: kith.ReasonInvalidJSON, Message: `"batch" must be an array of objects`}}}
		}
		if v, ok := top["context"]; ok {
			_ = json.Unmarshal(v, &batchCtx) // a non-object batch context is ignored, as Segment does
		}
		if v, ok := top["integrations"]; ok {
			_ = json.Unmarshal(v, &batchIntegrations)
		}
		batchSentAt = jsonString(top["sentAt"])
	} else {
		items = []json.RawMessage{body}
	}
	p.Items = len(items)
	for i, raw := range items {
		m, rej := normalise(raw, endpoint, batchCtx, batchIntegrations, batchSentAt, meta, lim)
		if rej != nil {
			rej.Index = i
			p.Rejected = append(p.Rejected, *rej)
			continue
		}
		if p.WriteKey == "" {
			p.WriteKey = m.writeKey
		}
		p.Messages = append(p.Messages, m.Message)
		p.Indexes = append(p.Indexes, i)
	}
	return p
}

type normalised struct {
	kith.Message
	writeKey string
}

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// normalise validates one message and fills Segment's defaults.
func normalise(raw json.RawMessage, endpoint string, batchCtx, batchIntegrations map[string]any, batchSentAt string, meta Meta, lim Limits) (normalised, *Rejection) {
	receivedAt := meta.ReceivedAt
	if lim.MaxEventBytes > 0 && len(raw) > lim.MaxEventBytes {
		return normalised{}, reject(kith.ReasonEventTooLarge, "message is %d bytes; the limit is %d", len(raw), lim.MaxEventBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var msg map[string]any
	if err := dec.Decode(&msg); err != nil || msg == nil {
		return normalised{}, reject(kith.ReasonInvalidField, "message is not a JSON object")
	}
	var out normalised
	out.writeKey, _ = msg["writeKey"].(string)
	delete(msg, "writeKey") // a secret: never stored

	typ, _ := msg["type"].(string)
	if endpoint != "batch" {
		typ = endpoint
	}
	switch {
	case typ == "":
		return out, reject(kith.ReasonMissingType, `message has no "type"`)
	case !messageTypes[typ]:
		return out, reject(kith.ReasonUnknownType, "unknown type %q", typ)
	}
	msg["type"] = typ

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
		ev, _ := msg["event"].(string)
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
		out.Event, _ = msg["name"].(string)
	}

	mid, err := idString(msg, "messageId")
	if err != nil {
		return out, err
	}
	if mid == "" {
		mid = newMessageID()
		msg["messageId"] = mid
	} else if lim.MaxMessageIDLen > 0 && len(mid) > lim.MaxMessageIDLen {
		return out, reject(kith.ReasonMessageIDTooLong, "messageId is %d characters; the limit is %d", len(mid), lim.MaxMessageIDLen)
	}

	// Batch-level context and integrations merge into each item; the item's
	// own keys win.
	for _, f := range []struct {
		key   string
		batch map[string]any
	}{{"context", batchCtx}, {"integrations", batchIntegrations}} {
		own, present := msg[f.key]
		obj, isObj := own.(map[string]any)
		if present && own != nil && !isObj {
			return out, reject(kith.ReasonInvalidField, "%q must be an object", f.key)
		}
		if obj == nil {
			obj = map[string]any{}
		}
		for k, v := range f.batch {
			if _, ok := obj[k]; !ok {
				obj[k] = v
			}
		}
		msg[f.key] = obj
	}
	if ctx := msg["context"].(map[string]any); meta.IP != "" {
		if _, ok := ctx["ip"]; !ok {
			ctx["ip"] = meta.IP
		}
	}
	for _, key := range defaultObjects[typ] {
		v, present := msg[key]
		if !present || v == nil {
			msg[key] = map[string]any{}
		} else if _, ok := v.(map[string]any); !ok {
			return out, reject(kith.ReasonInvalidField, "%q must be an object", key)
		}
	}

	ts, rej := correctTime(msg, batchSentAt, receivedAt)
	if rej != nil {
		return out, rej
	}
	msg["receivedAt"] = formatTime(receivedAt)
	msg["timestamp"] = formatTime(ts)

	if props, ok := msg["properties"].(map[string]any); ok {
		if r, ok := number(props["revenue"]); ok {
			out.Revenue = &r
		}
	}
	b, jerr := json.Marshal(msg)
	if jerr != nil {
		return out, reject(kith.ReasonInvalidField, "message cannot be encoded: %v", jerr)
	}
	// NUL characters cannot be stored in text columns (PostgreSQL refuses
	// them) and have no business in event data: reject the message rather
	// than fail the group commit it would join.
	if hasNUL(b) {
		return out, reject(kith.ReasonInvalidField, "message contains a NUL character (\\u0000)")
	}
	out.Message.MessageID = mid
	out.Type = typ
	out.UserID = userID
	out.AnonymousID = anonID
	out.Timestamp = ts
	out.ReceivedAt = receivedAt
	out.Raw = b
	return out, nil
}

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
func correctTime(msg map[string]any, batchSentAt string, receivedAt time.Time) (time.Time, *Rejection) {
	parse := func(key string) (time.Time, bool, *Rejection) {
		v, present := msg[key]
		if !present || v == nil || v == "" {
			return time.Time{}, false, nil
		}
		s, ok := v.(string)
		if !ok {
			return time.Time{}, false, reject(kith.ReasonInvalidField, "%q must be an ISO-8601 string", key)
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
		msg["originalTimestamp"] = formatTime(orig)
	}
	if _, present := msg["sentAt"]; !present && batchSentAt != "" {
		msg["sentAt"] = batchSentAt
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
func idString(msg map[string]any, key string) (string, *Rejection) {
	switch v := msg[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case json.Number:
		msg[key] = v.String()
		return v.String(), nil
	default:
		return "", reject(kith.ReasonInvalidField, "%q must be a string or a number", key)
	}
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(n, 64)
		return f, err == nil
	}
	return 0, false
}

func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) > 0 && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// newMessageID assigns an id to a message that came without one.
func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "kith-" + hex.EncodeToString(b[:])
}

// hasNUL reports whether encoded JSON contains an escaped NUL character:
// a "\u0000" whose backslash is not itself escaped.
func hasNUL(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		j += i
		n := 0
		for k := j - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		i = j + 1
	}
}
