package audience

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// stateVersion leads every encoded state, so the format can change.
const stateVersion = 1

// Encode writes the state compactly for storage: varints, float64 bits and
// length-prefixed strings, map keys sorted, so equal states encode to equal
// bytes (the engine skips rewriting a state whose bytes did not change).
// JSON cost more than the evaluation itself on the real-time path.
// Memberships are not part of it: the store keeps them apart (see
// kith.AudienceStore), so a backfill need not rewrite every state.
func (st *State) Encode() []byte {
	b := make([]byte, 0, 64)
	b = append(b, stateVersion)
	b = binary.AppendVarint(b, st.Due)
	b = binary.AppendUvarint(b, uint64(len(st.Aggs)))
	for _, id := range sortedKeys(st.Aggs) {
		a := st.Aggs[id]
		b = appendString(b, id)
		b = binary.AppendVarint(b, a.N)
		b = binary.AppendVarint(b, a.K)
		for _, f := range [...]float64{a.S, a.Lo, a.Hi} {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
		}
		for _, e := range [...]*Entry{a.F, a.L} {
			if e == nil {
				b = append(b, 0)
				continue
			}
			b = append(b, 1)
			b = appendEntry(b, *e)
		}
		b = binary.AppendUvarint(b, uint64(len(a.M)))
		for _, k := range sortedKeys(a.M) {
			b = appendString(b, k)
			b = binary.AppendVarint(b, a.M[k])
		}
		b = binary.AppendUvarint(b, uint64(len(a.E)))
		for _, e := range a.E {
			b = appendEntry(b, e)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(st.Traits)))
	for _, k := range sortedKeys(st.Traits) {
		t := st.Traits[k]
		b = appendString(b, k)
		b = appendString(b, string(t.V))
		b = binary.AppendVarint(b, t.T)
		if t.P {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendEntry(b []byte, e Entry) []byte {
	b = binary.AppendVarint(b, e.T)
	b = binary.AppendVarint(b, e.Q)
	return appendString(b, string(e.V))
}

var errCorrupt = errors.New("audience: corrupt state")

type reader struct {
	b   []byte
	err error
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) count() int {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

func (r *reader) bytes() []byte {
	l := r.count()
	if r.err != nil || l > len(r.b) {
		r.fail()
		return nil
	}
	v := r.b[:l:l]
	r.b = r.b[l:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) float() float64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errCorrupt
	}
	r.b = nil
}

func (r *reader) entry() Entry {
	e := Entry{T: r.varint(), Q: r.varint()}
	if v := r.bytes(); len(v) > 0 {
		e.V = v
	}
	return e
}

// DecodeState reads a stored state. The returned state shares no memory
// with b.
func DecodeState(b []byte) (*State, error) {
	b = slices.Clone(b)
	r := &reader{b: b}
	if v := r.byte(); v != stateVersion {
		return nil, fmt.Errorf("audience: state format %d unknown", v)
	}
	st := &State{Due: r.varint()}
	if n := r.count(); n > 0 {
		st.Aggs = make(map[string]*Agg, n)
		for range n {
			id := string(r.bytes())
			a := &Agg{N: r.varint(), K: r.varint(), S: r.float(), Lo: r.float(), Hi: r.float()}
			for _, dst := range [...]**Entry{&a.F, &a.L} {
				if r.byte() == 1 {
					e := r.entry()
					*dst = &e
				}
			}
			if m := r.count(); m > 0 {
				a.M = make(map[string]int64, m)
				for range m {
					k := string(r.bytes())
					a.M[k] = r.varint()
				}
			}
			if m := r.count(); m > 0 {
				a.E = make([]Entry, m)
				for i := range a.E {
					a.E[i] = r.entry()
				}
			}
			st.Aggs[id] = a
		}
	}
	if n := r.count(); n > 0 {
		st.Traits = make(map[string]TraitValue, n)
		for range n {
			k := string(r.bytes())
			st.Traits[k] = TraitValue{V: r.bytes(), T: r.varint(), P: r.byte() == 1}
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, errCorrupt
	}
	return st, nil
}
