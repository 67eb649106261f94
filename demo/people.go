package demo

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// name is a given name with its nickname ("" when none) for in-store
// duplicates that were typed by someone else.
type name struct{ given, nick string }

var (
	femaleNames = []name{{"Emma", ""}, {"Julia", ""}, {"Sophie", "Fie"}, {"Anna", ""}, {"Tess", ""}, {"Sara", ""},
		{"Lotte", ""}, {"Eva", ""}, {"Fleur", ""}, {"Anouk", ""}, {"Sanne", ""}, {"Lisa", ""}, {"Ingrid", ""},
		{"Marieke", "Mariek"}, {"Els", ""}, {"Femke", ""}, {"Iris", ""}, {"Noor", ""}, {"Fatima", ""}, {"Priya", ""},
		{"Daniëlle", "Danielle"}, {"Zoë", "Zoe"}, {"Mila", ""}, {"Nina", ""}, {"Linda", ""}, {"Monique", ""},
		{"Petra", ""}, {"Esther", ""}, {"Yasmina", ""}, {"Margaretha", "Greet"}, {"Johanna", "Annie"}, {"Elisabeth", "Liesbeth"}}
	maleNames = []name{{"Jan", ""}, {"Pieter", "Piet"}, {"Daan", ""}, {"Sem", ""}, {"Lucas", "Luuk"}, {"Levi", ""},
		{"Finn", ""}, {"Milan", ""}, {"Bram", ""}, {"Thomas", "Tom"}, {"Jeroen", ""}, {"Mark", ""}, {"Cornelis", "Kees"},
		{"Willem", "Wim"}, {"Hendrik", "Henk"}, {"Alexander", "Sander"}, {"Ruben", ""}, {"Tim", ""}, {"Niels", ""},
		{"Mohamed", ""}, {"Youssef", ""}, {"Emre", ""}, {"Stijn", ""}, {"Gerrit", "Gert"}, {"Bas", ""}, {"Koen", ""},
		{"Joris", ""}, {"Dennis", ""}, {"Rick", ""}, {"Johannes", "Hans"}, {"Jacobus", "Jaap"}, {"Frederik", "Frits"}}
	lastNames = []string{"de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser",
		"Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker",
		"Brouwer", "de Wit", "Dijkstra", "Smits", "de Graaf", "van der Meer", "van der Linden", "Kok", "Jacobs",
		"de Haan", "Vermeulen", "van den Heuvel", "van der Veen", "van den Broek", "de Bruijn", "van der Heijden",
		"Schouten", "van Beek", "Willems", "van Vliet", "van de Ven", "Hoekstra", "Maas", "Verhoeven", "Koster",
		"van Dam", "van der Wal", "Prins", "Blom", "Huisman", "Peeters", "Maes", "Claes", "Goossens", "Wouters",
		"Müller", "Schmidt", "Schneider", "Fischer", "Yılmaz", "Kaya", "El Amrani", "Bennani", "Nguyen", "Singh",
		"Boukhari", "Öztürk", "Postma", "Kuipers", "Veenstra", "Timmermans"}
	streetsNL = []string{"Kerkstraat", "Dorpsstraat", "Schoolstraat", "Julianastraat", "Wilhelminastraat", "Nieuwstraat",
		"Hoofdstraat", "Molenstraat", "Oranjestraat", "Tulpstraat", "Rozenstraat", "Meidoornstraat", "Stationsweg",
		"Molenweg", "Industrieweg", "Parkweg", "Beukenlaan", "Eikenlaan", "Lindelaan", "Kastanjelaan", "Sportlaan",
		"Prinsengracht", "Marktplein", "Emmastraat", "Vondelstraat", "Populierenlaan", "Ringbaan", "Dijkstraat"}
	streetsBE = []string{"Kerkstraat", "Stationsstraat", "Grote Markt", "Molenstraat", "Nieuwstraat", "Dorpstraat", "Kapelstraat", "Veldstraat"}
	streetsDE = []string{"Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Gartenstraße", "Lindenstraße", "Kirchweg", "Goethestraße"}
	suffixes  = []string{"A", "B", "C", "-1", "-2", " bis", "a", "hs"}
)

// city is a place people live, with its country, its postal codes (from
// lo to hi, the first four digits in the Netherlands) and its size.
type city struct {
	name, country string
	lo, hi        int
	weight        float64
}

var cities = []city{
	{"Amsterdam", "NL", 1011, 1109, 10}, {"Rotterdam", "NL", 3011, 3089, 7}, {"Den Haag", "NL", 2491, 2599, 6},
	{"Utrecht", "NL", 3511, 3585, 4.5}, {"Eindhoven", "NL", 5611, 5658, 2.8}, {"Groningen", "NL", 9711, 9747, 2.7},
	{"Tilburg", "NL", 5011, 5049, 2.6}, {"Almere", "NL", 1311, 1363, 2.5}, {"Breda", "NL", 4811, 4841, 2.2},
	{"Nijmegen", "NL", 6511, 6546, 2.1}, {"Haarlem", "NL", 2011, 2037, 1.9}, {"Arnhem", "NL", 6811, 6846, 1.9},
	{"Amersfoort", "NL", 3811, 3829, 1.8}, {"Zwolle", "NL", 8011, 8043, 1.6}, {"Leiden", "NL", 2311, 2334, 1.5},
	{"Maastricht", "NL", 6211, 6229, 1.5}, {"Delft", "NL", 2611, 2629, 1.3}, {"Apeldoorn", "NL", 7311, 7339, 1.8},
	{"Enschede", "NL", 7511, 7548, 1.8}, {"Leeuwarden", "NL", 8911, 8939, 1.3},
	{"Antwerpen", "BE", 2000, 2060, 3.5}, {"Gent", "BE", 9000, 9052, 2.5}, {"Brussel", "BE", 1000, 1210, 2.5},
	{"Leuven", "BE", 3000, 3012, 1}, {"Hasselt", "BE", 3500, 3512, 0.8},
	{"Aachen", "DE", 52062, 52080, 1.2}, {"Köln", "DE", 50667, 50939, 1.6}, {"Düsseldorf", "DE", 40210, 40629, 1.2},
	{"Kleve", "DE", 47533, 47559, 0.5}, {"Münster", "DE", 48143, 48167, 0.6},
}

// Consumer mail providers by country, and the domains of the work and old
// addresses some people also use.
var (
	domainsNL   = []string{"gmail.com", "gmail.com", "gmail.com", "hotmail.com", "hotmail.com", "outlook.com", "ziggo.nl", "kpnmail.nl", "live.nl", "icloud.com", "xs4all.nl"}
	domainsBE   = []string{"gmail.com", "gmail.com", "hotmail.com", "telenet.be", "skynet.be", "outlook.com"}
	domainsDE   = []string{"gmail.com", "web.de", "gmx.de", "t-online.de", "outlook.com"}
	domainsWork = []string{"kantoor.example.nl", "gemeente.example.nl", "techbedrijf.example.com", "zorggroep.example.nl", "universiteit.example.nl"}
	domainsOld  = []string{"hetnet.nl", "planet.nl", "home.nl", "chello.nl", "quicknet.nl"}
)

// postalLetters are the letters Dutch postal codes use.
const postalLetters = "ABCDEGHJKLMNPRSTVWXZ"

var cityCum = func() []float64 {
	var out []float64
	sum := 0.0
	for _, c := range cities {
		sum += c.weight
		out = append(out, sum)
	}
	return out
}()

// pickCity draws a home town: mostly Dutch, some Belgian and German.
func pickCity(rng *rand.Rand) int {
	x := rng.Float64() * cityCum[len(cityCum)-1]
	for i, v := range cityCum {
		if x < v {
			return i
		}
	}
	return len(cities) - 1
}

// zipfIndex draws an index below n with small indexes more likely, as
// names and streets are in real life.
func zipfIndex(rng *rand.Rand, n int) int {
	u := rng.Float64()
	return int(u * u * float64(n))
}

// ascii folds the accented letters the name lists contain and drops
// spaces, apostrophes and hyphens, as people do in e-mail addresses.
func ascii(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch r {
		case ' ', '\'', '-':
		case 'ë', 'é', 'è':
			b.WriteByte('e')
		case 'ö', 'ó':
			b.WriteByte('o')
		case 'ü':
			b.WriteByte('u')
		case 'ï', 'ı':
			b.WriteByte('i')
		case 'ä':
			b.WriteByte('a')
		case 'ß':
			b.WriteString("ss")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// address is a postal address as the CRM stores it.
type address struct {
	street, houseNo, suffix, postal, city, country string
}

// line is the street column: street, house number and suffix, as
// "Kerkstraat 12A".
func (a address) line() string {
	return a.street + " " + a.houseNo + a.suffix
}

// newAddress draws an address in city ci.
func newAddress(rng *rand.Rand, ci int) address {
	c := cities[ci]
	a := address{city: c.name, country: c.country, houseNo: strconv.Itoa(1 + zipfIndex(rng, 180))}
	code := c.lo + rng.IntN(c.hi-c.lo+1)
	switch c.country {
	case "NL":
		a.street = streetsNL[zipfIndex(rng, len(streetsNL))]
		l1, l2 := postalLetters[rng.IntN(len(postalLetters))], postalLetters[rng.IntN(len(postalLetters))]
		if l1 == 'S' && (l2 == 'A' || l2 == 'D' || l2 == 'S') {
			l2 = 'B'
		}
		a.postal = strconv.Itoa(code) + " " + string([]byte{l1, l2})
		if rng.IntN(6) == 0 {
			a.suffix = suffixes[rng.IntN(len(suffixes))]
		}
	case "BE":
		a.street = streetsBE[rng.IntN(len(streetsBE))]
		a.postal = strconv.Itoa(code)
		if rng.IntN(10) == 0 {
			a.suffix = " bus " + strconv.Itoa(1+rng.IntN(12))
		}
	default:
		a.street = streetsDE[rng.IntN(len(streetsDE))]
		a.postal = strconv.Itoa(code)
		if rng.IntN(10) == 0 {
			a.suffix = "a"
		}
	}
	return a
}

// abbreviateStreet writes "straat"/"straße" as "str." and "laan" as "ln.",
// as clerks do; ok is false when the street has neither.
func abbreviateStreet(s string) (string, bool) {
	for _, w := range []string{"straat", "straße", "laan"} {
		if rest, found := strings.CutSuffix(s, w); found {
			if w == "laan" {
				return rest + "ln.", true
			}
			return rest + "str.", true
		}
	}
	return s, false
}

// typo changes one letter of s: a substitution, a deletion, a doubled
// letter or two neighbours swapped. Only ASCII letters are touched, so the
// result stays valid UTF-8.
func typo(rng *rand.Rand, s string) string {
	b := []byte(s)
	var pos []int
	for i, c := range b {
		if 'a' <= c && c <= 'z' && i > 0 {
			pos = append(pos, i)
		}
	}
	if len(pos) == 0 {
		return s + "e"
	}
	i := pos[rng.IntN(len(pos))]
	switch rng.IntN(4) {
	case 0:
		b[i] = byte('a' + (int(b[i]-'a')+1+rng.IntN(25))%26)
	case 1:
		b = append(b[:i], b[i+1:]...)
	case 2:
		b = append(b[:i+1], b[i:]...)
	default:
		if i+1 < len(b) && 'a' <= b[i+1] && b[i+1] <= 'z' && b[i] != b[i+1] {
			b[i], b[i+1] = b[i+1], b[i]
		} else {
			b = append(b[:i], b[i+1:]...)
		}
	}
	return string(b)
}

// Phone formats: all Dutch mobile numbers that parse for region NL.
const (
	phoneSpaced   = iota // +31 6 12345678
	phoneDashed          // 06-12345678
	phoneNational        // 0612345678
	phoneE164            // +31612345678
	phoneFormats
)

// formatPhone writes a mobile number given as its nine national digits
// ("612345678") in one of the formats people use.
func formatPhone(digits string, f int) string {
	switch f {
	case phoneSpaced:
		return "+31 6 " + digits[1:]
	case phoneDashed:
		return "06-" + digits[1:]
	case phoneNational:
		return "0" + digits
	default:
		return "+31" + digits
	}
}

// mobileSecond are the second digits of Dutch mobile numbers (06-1 to
// 06-5 and 06-8).
const mobileSecond = "123458"

// mobile returns the nine national digits of person i's mobile number,
// distinct for every i below 60 million.
func mobile(i uint64, key uint64) string {
	v := permute(i, 60_000_000, key)
	var b [9]byte
	b[0] = '6'
	b[1] = mobileSecond[v/10_000_000]
	r := v % 10_000_000
	for j := 8; j >= 2; j-- {
		b[j] = byte('0' + r%10)
		r /= 10
	}
	return string(b[:])
}

// loyaltyCard returns the EAN-13 number of card k (distinct for every k
// below a billion): "260", nine digits and a check digit.
func loyaltyCard(k uint64, key uint64) string {
	v := permute(k, 1_000_000_000, key^0xca4d)
	var b [13]byte
	b[0], b[1], b[2] = '2', '6', '0'
	for j := 11; j >= 3; j-- {
		b[j] = byte('0' + v%10)
		v /= 10
	}
	sum := 0
	for j := 0; j < 12; j++ {
		d := int(b[j] - '0')
		if j%2 == 1 {
			d *= 3
		}
		sum += d
	}
	b[12] = byte('0' + (10-sum%10)%10)
	return string(b[:])
}
