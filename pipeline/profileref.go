package pipeline

import "encoding/binary"

// profileRef is a profile id in eight bytes with no pointer, for caches
// that hold millions of them. An id the indexer gave (profileID: "p_" and
// a log position in base32) is that position plus one; any other id (one
// given by an older version, or by a test) is interned, with the top bit
// set; 0 is the empty id.
type profileRef uint64

const internedRef profileRef = 1 << 63

// profileNames turns profile ids into profileRefs and back. The interned
// ids are kept until the cache that holds their refs is dropped.
type profileNames struct {
	ids  []string
	refs map[string]profileRef
}

func newProfileNames() profileNames {
	return profileNames{refs: map[string]profileRef{}}
}

// ref returns p's profileRef.
func (n *profileNames) ref(p string) profileRef {
	if p == "" {
		return 0
	}
	// 13 base32 digits hold 65 bits: the last digit's low bit is 0 in
	// what profileID writes, so that one id decodes to each position.
	if len(p) == 15 && p[:2] == "p_" && canonicalLast(p[14]) {
		var b [8]byte
		if m, err := profileEncoding.Decode(b[:], []byte(p[2:])); err == nil && m == 8 {
			if seq := binary.BigEndian.Uint64(b[:]); seq < uint64(internedRef)-1 {
				return profileRef(seq + 1)
			}
		}
	}
	if r, ok := n.refs[p]; ok {
		return r
	}
	r := internedRef | profileRef(len(n.ids))
	n.ids = append(n.ids, p)
	n.refs[p] = r
	return r
}

// id returns the profile id of r.
func (n *profileNames) id(r profileRef) string {
	switch {
	case r == 0:
		return ""
	case r&internedRef != 0:
		return n.ids[r&^internedRef]
	}
	return profileID(int64(r - 1))
}

// canonicalLast reports whether c is a digit of profileEncoding with its
// low bit 0.
func canonicalLast(c byte) bool {
	switch {
	case c >= '0' && c <= '9':
		return (c-'0')%2 == 0
	case c >= 'a' && c <= 'v':
		return (c-'a'+10)%2 == 0
	}
	return false
}
