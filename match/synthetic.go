package match

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// SyntheticSchema returns the Febrl schema that GenerateSynthetic fills:
// given_name, surname, street_number, address_1, address_2, suburb,
// postcode, state, date_of_birth (YYYYMMDD) and soc_sec_id.
func SyntheticSchema() Schema {
	return NewSchema("given_name", "surname", "street_number", "address_1", "address_2",
		"suburb", "postcode", "state", "date_of_birth", "soc_sec_id")
}

// SyntheticConfig parameterises GenerateSynthetic.
type SyntheticConfig struct {
	// Records is the total number of records, originals and duplicates.
	Records int
	// DuplicateShare is the fraction of records that are duplicates
	// (default 0.3).
	DuplicateShare float64
	// MaxDuplicates bounds the duplicates of one original (default 5).
	MaxDuplicates int
	// MaxModifications bounds the corruptions of one duplicate; each gets
	// one to MaxModifications (default 3).
	MaxModifications int
	// HouseholdShare is the percentage of originals that live with an
	// earlier original: same surname and address, different person. They
	// are the hard non-matches of real data (default 20; negative for none).
	HouseholdShare int
	// Seed makes the data repeatable.
	Seed uint64
}

// GenerateSynthetic makes Febrl-like person records with known truth, for
// evaluation and load tests. Originals draw names, streets and suburbs from
// generated vocabularies with Zipf-distributed frequencies (so some values
// are common), postcodes and states follow the suburb, dates of birth span
// 1920–2005 and social security numbers are unique. Duplicates copy an
// original and corrupt it the way the Febrl generator does: typing errors
// (insertion, deletion, substitution, transposition), OCR and phonetic
// confusions, split words, missing values, given name and surname swapped,
// day and month swapped. A share of originals live in the household of
// another (same surname and address), the hard non-matches. IDs follow Febrl: "rec-<N>-org" and
// "rec-<N>-dup-<k>", so records with the same N are the same person. The
// records come shuffled.
func GenerateSynthetic(cfg SyntheticConfig) []Record {
	if cfg.DuplicateShare <= 0 || cfg.DuplicateShare >= 1 {
		cfg.DuplicateShare = 0.3
	}
	if cfg.MaxDuplicates <= 0 {
		cfg.MaxDuplicates = 5
	}
	if cfg.MaxModifications <= 0 {
		cfg.MaxModifications = 3
	}
	if cfg.HouseholdShare == 0 {
		cfg.HouseholdShare = 20
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	g := newSynthGen(rng)
	nDup := int(float64(cfg.Records) * cfg.DuplicateShare)
	nOrg := cfg.Records - nDup
	if nOrg <= 0 {
		return nil
	}
	recs := make([]Record, 0, cfg.Records)
	for i := 0; i < nOrg; i++ {
		f := g.original(i)
		if i > 0 && rng.IntN(100) < cfg.HouseholdShare {
			// Another member of an earlier original's household: same
			// surname and address, a different person.
			h := recs[rng.IntN(i)].Fields
			for _, k := range []int{fSurname, fStreetNo, fAddr1, fAddr2, fSuburb, fPostcode, fState} {
				f[k] = h[k]
			}
		}
		recs = append(recs, Record{ID: "rec-" + strconv.Itoa(i) + "-org", Fields: f})
	}
	dups := make([]uint8, nOrg)
	for made, tries := 0, 0; made < nDup && tries < 20*nDup+100; tries++ {
		o := rng.IntN(nOrg)
		if int(dups[o]) >= cfg.MaxDuplicates {
			continue
		}
		fields := g.corrupt(recs[o].Fields, 1+rng.IntN(cfg.MaxModifications))
		recs = append(recs, Record{ID: fmt.Sprintf("rec-%d-dup-%d", o, dups[o]), Fields: fields})
		dups[o]++
		made++
	}
	rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	return recs
}

const (
	fGiven = iota
	fSurname
	fStreetNo
	fAddr1
	fAddr2
	fSuburb
	fPostcode
	fState
	fDOB
	fSSN
	nSynthFields
)

type synthGen struct {
	rng                       *rand.Rand
	given, surname, street    []string
	building, suburb          []string
	suburbPost                []string
	zGiven, zSurname, zStreet *rand.Zipf
	zBuilding, zSuburb, zNo   *rand.Zipf
	numbers                   []string
	states                    map[byte]string
}

var (
	synthOnsets = []string{"", "b", "br", "c", "ch", "cl", "d", "dr", "f", "fr", "g", "gr", "h", "j", "k", "kr", "l", "m", "n", "p", "pr", "r", "s", "sh", "st", "t", "tr", "th", "v", "w", "y", "z"}
	synthVowels = []string{"a", "e", "i", "o", "u", "ai", "ea", "ee", "ie", "oo", "ou", "y"}
	synthCodas  = []string{"", "", "", "n", "r", "l", "s", "th", "m", "nd", "rt", "ck", "ll", "ss", "x", "ng"}
	synthEnds   = []string{"", "son", "ley", "ton", "er", "man", "well", "by", "ford", "field", "ham", "ins"}
	synthTypes  = []string{"street", "street", "street", "road", "avenue", "place", "crescent", "circuit", "close", "drive", "court", "parade"}
	synthStates = []string{"act", "nsw", "vic", "qld", "sa", "wa", "tas", "nt"}
)

func newSynthGen(rng *rand.Rand) *synthGen {
	g := &synthGen{rng: rng, states: map[byte]string{}}
	word := func(syll int, ends bool) string {
		var b strings.Builder
		for i := 0; i < syll; i++ {
			b.WriteString(synthOnsets[rng.IntN(len(synthOnsets))])
			b.WriteString(synthVowels[rng.IntN(len(synthVowels))])
			b.WriteString(synthCodas[rng.IntN(len(synthCodas))])
		}
		if ends {
			b.WriteString(synthEnds[rng.IntN(len(synthEnds))])
		}
		return b.String()
	}
	vocab := func(n int, ends bool) []string {
		seen := map[string]bool{}
		out := make([]string, 0, n)
		for len(out) < n {
			w := word(1+rng.IntN(2), ends)
			if len(w) < 3 || seen[w] {
				continue
			}
			seen[w] = true
			out = append(out, w)
		}
		return out
	}
	g.given = vocab(5000, false)
	g.surname = vocab(40000, true)
	g.street = vocab(10000, false)
	g.building = vocab(8000, true)
	g.suburb = vocab(6000, true)
	for i, s := range g.suburb {
		if rng.IntN(4) == 0 {
			g.suburb[i] = s + " " + []string{"north", "south", "east", "west", "heights", "park", "hill"}[rng.IntN(7)]
		}
	}
	g.suburbPost = make([]string, len(g.suburb))
	for i := range g.suburbPost {
		g.suburbPost[i] = strconv.Itoa(800 + rng.IntN(9000))
		if len(g.suburbPost[i]) == 3 {
			g.suburbPost[i] = "0" + g.suburbPost[i]
		}
	}
	for d := byte('0'); d <= '9'; d++ {
		g.states[d] = synthStates[int(d-'0')%len(synthStates)]
	}
	g.numbers = make([]string, 3000)
	for i := range g.numbers {
		g.numbers[i] = strconv.Itoa(i)
	}
	g.zGiven = rand.NewZipf(rng, 1.07, 8, uint64(len(g.given)-1))
	g.zSurname = rand.NewZipf(rng, 1.03, 30, uint64(len(g.surname)-1))
	g.zStreet = rand.NewZipf(rng, 1.02, 50, uint64(len(g.street)-1))
	g.zBuilding = rand.NewZipf(rng, 1.02, 50, uint64(len(g.building)-1))
	g.zSuburb = rand.NewZipf(rng, 1.02, 100, uint64(len(g.suburb)-1))
	g.zNo = rand.NewZipf(rng, 1.3, 3, uint64(len(g.numbers)-2))
	return g
}

// original makes the fields of original number i.
func (g *synthGen) original(i int) []string {
	r := g.rng
	f := make([]string, nSynthFields)
	f[fGiven] = g.given[g.zGiven.Uint64()]
	f[fSurname] = g.surname[g.zSurname.Uint64()]
	f[fStreetNo] = g.numbers[1+g.zNo.Uint64()]
	f[fAddr1] = g.street[g.zStreet.Uint64()] + " " + synthTypes[r.IntN(len(synthTypes))]
	if r.IntN(2) == 0 {
		f[fAddr2] = g.building[g.zBuilding.Uint64()]
	}
	sub := g.zSuburb.Uint64()
	f[fSuburb] = g.suburb[sub]
	f[fPostcode] = g.suburbPost[sub]
	f[fState] = g.states[f[fPostcode][0]]
	day := daysFromCivil(1920, 1, 1) + r.IntN(daysFromCivil(2006, 1, 1)-daysFromCivil(1920, 1, 1))
	f[fDOB] = civilString(day)
	// Unique seven-digit numbers: i times a unit modulo 9,000,000.
	f[fSSN] = strconv.Itoa(1000000 + (i*7919+12345)%9000000)
	for k := range f {
		if k != fSSN && k != fAddr2 && r.IntN(100) < 2 {
			f[k] = ""
		}
	}
	return f
}

// civilString formats days since 1970-01-01 as YYYYMMDD.
func civilString(z int) string {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return fmt.Sprintf("%04d%02d%02d", y, m, d)
}

var (
	synthOCR  = [][2]string{{"m", "rn"}, {"l", "1"}, {"o", "0"}, {"s", "5"}, {"b", "6"}, {"g", "9"}, {"i", "l"}, {"d", "cl"}, {"w", "vv"}, {"1", "7"}, {"3", "8"}, {"5", "6"}}
	synthPhon = [][2]string{{"ph", "f"}, {"ck", "k"}, {"c", "k"}, {"ee", "ea"}, {"ie", "y"}, {"th", "t"}, {"ou", "ow"}, {"s", "z"}, {"er", "a"}, {"ll", "l"}}
)

// fieldWeights says how often each field is corrupted (Febrl favours names
// and addresses).
var synthFieldWeights = [nSynthFields]int{fGiven: 20, fSurname: 20, fStreetNo: 8, fAddr1: 14, fAddr2: 10, fSuburb: 10, fPostcode: 6, fState: 2, fDOB: 6, fSSN: 4}

// corrupt copies an original's fields and applies n modifications.
func (g *synthGen) corrupt(orig []string, n int) []string {
	r := g.rng
	f := append([]string(nil), orig...)
	total := 0
	for _, w := range synthFieldWeights {
		total += w
	}
	for ; n > 0; n-- {
		if r.IntN(100) < 5 {
			f[fGiven], f[fSurname] = f[fSurname], f[fGiven]
			continue
		}
		k, pick := 0, r.IntN(total)
		for pick >= synthFieldWeights[k] {
			pick -= synthFieldWeights[k]
			k++
		}
		if r.IntN(100) < 10 {
			f[k] = ""
			continue
		}
		if f[k] == "" {
			continue
		}
		digits := k == fStreetNo || k == fPostcode || k == fDOB || k == fSSN
		if k == fDOB && r.IntN(3) == 0 {
			if s := f[k]; len(s) == 8 {
				f[k] = s[:4] + s[6:8] + s[4:6] // day and month swapped
				continue
			}
		}
		switch op := r.IntN(10); {
		case op < 6 || digits:
			f[k] = typo(r, f[k], digits)
		case op < 8:
			f[k] = confuse(r, f[k], synthOCR)
		case op < 9:
			f[k] = confuse(r, f[k], synthPhon)
		default:
			if len(f[k]) > 3 {
				i := 1 + r.IntN(len(f[k])-2)
				f[k] = f[k][:i] + " " + f[k][i:]
			}
		}
	}
	return f
}

// typo inserts, deletes, substitutes or transposes one character.
func typo(r *rand.Rand, s string, digits bool) string {
	alpha := "abcdefghijklmnopqrstuvwxyz"
	if digits {
		alpha = "0123456789"
	}
	b := []byte(s)
	i := r.IntN(len(b))
	c := alpha[r.IntN(len(alpha))]
	switch r.IntN(4) {
	case 0:
		b = append(b[:i], append([]byte{c}, b[i:]...)...)
	case 1:
		if len(b) > 1 {
			b = append(b[:i], b[i+1:]...)
		}
	case 2:
		b[i] = c
	default:
		if i+1 < len(b) {
			b[i], b[i+1] = b[i+1], b[i]
		} else if i > 0 {
			b[i], b[i-1] = b[i-1], b[i]
		}
	}
	return string(b)
}

// confuse applies one confusion from the table (either direction) where
// it fits, or a typo when none does.
func confuse(r *rand.Rand, s string, table [][2]string) string {
	start := r.IntN(len(table))
	for t := 0; t < len(table); t++ {
		pair := table[(start+t)%len(table)]
		from, to := pair[0], pair[1]
		if r.IntN(2) == 0 {
			from, to = to, from
		}
		if i := strings.Index(s, from); i >= 0 {
			return s[:i] + to + s[i+len(from):]
		}
	}
	return typo(r, s, false)
}
