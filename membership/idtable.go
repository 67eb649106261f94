package membership

import "hash/maphash"

// idTable is a plan's index from profile id to profile: open addressing
// with linear probing over slots that hold the id's hash and the id
// itself, so that finding an id costs one cache miss where a Go map costs
// two or three, and ids are looked up in groups whose misses the
// processor overlaps. A backfill batch names millions of ids, and misses
// are most of what each costs.
type idTable struct {
	seed  maphash.Seed
	slots []idSlot
	mask  uint64
	ids   []string // by index: the order in which they were added
	sink  uint64   // keeps the loads that start a group's misses
}

// idSlot is one slot of an idTable.
type idSlot struct {
	h   uint64
	id  string
	idx int32 // 1 + the profile's index; 0 for an empty slot
	n   int32 // how many changes name the profile
}

// idGroup is how many ids an idTable looks up at once.
const idGroup = 16

// newIDTable returns a table with room for hint ids before it grows.
func newIDTable(hint int) *idTable {
	size := 16
	for size < 2*hint {
		size <<= 1
	}
	return &idTable{seed: maphash.MakeSeed(), slots: make([]idSlot, size), mask: uint64(size - 1)}
}

// grow doubles the table.
func (t *idTable) grow() {
	old := t.slots
	t.slots = make([]idSlot, 2*len(old))
	t.mask = uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.idx == 0 {
			continue
		}
		pos := s.h & t.mask
		for t.slots[pos].idx != 0 {
			pos = (pos + 1) & t.mask
		}
		t.slots[pos] = s
	}
}

// lookup sets out[i] to the index of ids[i], or to -1 if the table lacks
// it; with add set it adds what it lacks instead, with the next indexes,
// and with count it counts each id as a change that names the profile.
func (t *idTable) lookup(ids []string, out []int32, add, count bool) {
	var hs [idGroup]uint64
	for start := 0; start < len(ids); start += idGroup {
		group := ids[start:min(start+idGroup, len(ids))]
		if add && 2*(len(t.ids)+len(group)) > len(t.slots) {
			t.grow()
		}
		// Load every slot of the group first: the loads do not depend
		// on each other, so their misses overlap.
		var sink uint64
		for k, id := range group {
			h := maphash.String(t.seed, id)
			hs[k] = h
			sink += t.slots[h&t.mask].h
		}
		t.sink += sink
		for k, id := range group {
			h := hs[k]
			pos := h & t.mask
			var s *idSlot
			for {
				s = &t.slots[pos]
				if s.idx == 0 {
					if !add {
						s = nil
						break
					}
					t.ids = append(t.ids, id)
					*s = idSlot{h: h, id: id, idx: int32(len(t.ids))}
					break
				}
				if s.h == h && s.id == id {
					break
				}
				pos = (pos + 1) & t.mask
			}
			if s == nil {
				out[start+k] = -1
				continue
			}
			if count {
				s.n++
			}
			if out != nil {
				out[start+k] = s.idx - 1
			}
		}
	}
}
