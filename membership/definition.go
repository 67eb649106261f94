package membership

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/kithcdp/kith"
)

// EncodeDefinition renders d as the JSON document both stores keep for
// it (the embedded store as a blob, PostgreSQL as json, which keeps the
// text as given), so that a definition reads back the same from either.
// HTML escaping is off so that a condition or text comparing with < or >
// is stored as written rather than as \u003c. A condition that is not
// valid JSON is the caller's mistake, hence EINVALID.
func EncodeDefinition(d kith.Definition) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, kith.Errorf(kith.EINVALID, "%s %q: %v", d.Kind, d.Key, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeDefinition reverses EncodeDefinition, returning times in UTC and
// a missing condition as nil rather than the JSON literal null, whatever
// zone the caller saved them in.
func DecodeDefinition(b []byte) (kith.Definition, error) {
	var d kith.Definition
	if err := json.Unmarshal(b, &d); err != nil {
		return d, err
	}
	if string(d.Condition) == "null" {
		d.Condition = nil
	}
	for _, t := range [...]*time.Time{&d.CreatedAt, &d.UpdatedAt, &d.Backfill.StartedAt, &d.Backfill.FinishedAt} {
		*t = t.UTC()
	}
	return d, nil
}
