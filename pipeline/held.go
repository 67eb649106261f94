package pipeline

// heldSet is the indexer's cache of the identifiers each canonical profile
// holds, for the identity rules' limits checks (see profileIdents). It
// holds up to a million profiles, so its lists hold no pointer: a profile
// is a profileRef and an identifier's type an index into types, and the
// collector marks each list without scanning it.
type heldSet struct {
	lists map[profileRef][]heldIdent
	names profileNames
	// types are the identifier types the lists name; typeOf indexes them.
	types  []string
	typeOf map[string]uint32
}

func newHeldSet() heldSet {
	return heldSet{lists: map[profileRef][]heldIdent{}, names: newProfileNames(), typeOf: map[string]uint32{}}
}

// get returns profile p's list, and whether it is cached.
func (s *heldSet) get(p string) ([]heldIdent, bool) {
	l, ok := s.lists[s.names.ref(p)]
	return l, ok
}

// set caches l as profile p's list.
func (s *heldSet) set(p string, l []heldIdent) { s.lists[s.names.ref(p)] = l }

// drop forgets profile p's list.
func (s *heldSet) drop(p string) { delete(s.lists, s.names.ref(p)) }

// len returns the number of profiles cached.
func (s *heldSet) len() int { return len(s.lists) }

// typ returns the index of identifier type name.
func (s *heldSet) typ(name string) uint32 {
	if t, ok := s.typeOf[name]; ok {
		return t
	}
	t := uint32(len(s.types))
	s.types = append(s.types, name)
	s.typeOf[name] = t
	return t
}

// typeName returns the identifier type of index t.
func (s *heldSet) typeName(t uint32) string { return s.types[t] }
