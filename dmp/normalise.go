package dmp

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// maxPhoneInput is the longest phone input parsed; libphonenumber itself
// refuses anything longer than 250 characters.
const maxPhoneInput = 250

// HashSHA256 returns the SHA-256 digest of s as 64 lower-case hex digits.
// It hashes s as given: normalise first.
func HashSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// IsSHA256Hex reports whether s is exactly 64 hex digits, in either case:
// the shape of a hex-encoded SHA-256 digest.
func IsSHA256Hex(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// NormaliseEmail returns s trimmed of surrounding white space and in lower
// case, the normalisation Meta and Google share, and reports whether the
// result has the shape of an e-mail address: exactly one '@', a non-empty
// local part without white space, control characters or the specials
// `"(),:;<>[\]`, and a domain of at least two non-empty dot-separated labels
// of letters, digits and inner hyphens (non-ASCII letters are allowed for
// internationalised domains). It returns "", false otherwise.
//
// Meta: "Trim any leading and trailing spaces. Convert all characters to
// lowercase." (Conversions API customer information parameters, em,
// https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters).
// Google: "Remove leading and trailing whitespaces. Convert text to
// lowercase." (Google Ads API, Customer Match,
// https://developers.google.com/google-ads/api/docs/remarketing/audience-types/customer-match).
// Use NormaliseEmailFor for the platform-specific form.
func NormaliseEmail(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	at := strings.IndexByte(s, '@')
	if at < 0 || at != strings.LastIndexByte(s, '@') {
		return "", false
	}
	if !validLocalPart(s[:at]) || !validDomain(s[at+1:]) {
		return "", false
	}
	return s, true
}

// NormaliseEmailFor returns s normalised for upload to platform p, and
// whether it is an e-mail address at all (see NormaliseEmail).
//
// For PlatformMeta this is NormaliseEmail: Meta documents no rule beyond
// trimming and lower-casing.
//
// For PlatformGoogle the dots are also removed from the local part of
// gmail.com and googlemail.com addresses: "If the email address has the
// gmail.com or googlemail.com domain, remove all dots (.) before the @
// symbol." (Google Data Manager API, Format user data,
// https://developers.google.com/data-manager/api/get-started/formatting).
// The Google Ads API Customer Match page says removing them is not required
// but is accepted, so the stricter form is safe for both Google APIs. A
// '+' tag is kept: neither page asks for its removal.
//
// It returns "", false for an unknown platform.
func NormaliseEmailFor(s string, p Platform) (string, bool) {
	if !p.valid() {
		return "", false
	}
	e, ok := NormaliseEmail(s)
	if !ok || p != PlatformGoogle {
		return e, ok
	}
	at := strings.IndexByte(e, '@')
	local, domain := e[:at], e[at+1:]
	if domain == "gmail.com" || domain == "googlemail.com" {
		local = strings.ReplaceAll(local, ".", "")
		if local == "" {
			return "", false
		}
	}
	return local + "@" + domain, true
}

// NormalisePhone parses s as a phone number and returns it in the form
// platform p hashes, and whether s is a valid number. A number written
// without its country code ("06-12345678", "(650) 555-1234") is read as a
// number of defaultRegion, an ISO 3166-1 alpha-2 code such as "NL" or "US";
// with an empty or unknown defaultRegion only numbers written with a '+'
// and country code (or the region's international prefix) are accepted.
// Extensions are dropped. Validity is libphonenumber's: the number must fit
// a numbering plan, not merely have a plausible length.
//
// For PlatformGoogle the result is E.164 with its leading '+', such as
// "+16505551234": "Include the plus sign (+) and the country code. All
// characters after the plus sign must be digits. For example, the US phone
// number (800)555-0100 should be formatted and normalized to +18005550100."
// (Google Data Manager API, Format user data,
// https://developers.google.com/data-manager/api/get-started/formatting;
// the Customer Match CSV template likewise says "Phone numbers must be
// formatted as E.164 prior to hashing").
//
// For PlatformMeta the result is the same digits without the '+', such as
// "16505551234": "Remove symbols, letters, and any leading zeros. Phone
// numbers must include a country code to be used for matching" with the
// example "(650)555-1212" normalised to "16505551212" (Conversions API
// customer information parameters, ph,
// https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters;
// the Custom Audiences "Hashing and Normalizing Data" table gives the same
// rule for PHONE). E.164 never starts with a zero, so the national trunk
// zero ("06" in the Netherlands) is gone while a zero that belongs to the
// number itself, as in Italy's "+39 06 ...", stays.
//
// It returns "", false for an unknown platform.
func NormalisePhone(s, defaultRegion string, p Platform) (string, bool) {
	if !p.valid() {
		return "", false
	}
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxPhoneInput {
		return "", false
	}
	region := strings.ToUpper(strings.TrimSpace(defaultRegion))
	num, err := phonenumbers.Parse(s, region)
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", false
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	if p == PlatformMeta {
		return strings.TrimPrefix(e164, "+"), true
	}
	return e164, true
}

// HashEmail returns the hex SHA-256 digest of s normalised for platform p
// (NormaliseEmailFor), and whether s gave one. A value that is already a
// SHA-256 hex digest, as a DMP sends hashed e-mails, is passed through in
// lower case instead; it is taken as hashed by the sender's normalisation,
// which this package cannot check.
func HashEmail(s string, p Platform) (string, bool) {
	if !p.valid() {
		return "", false
	}
	if t := strings.TrimSpace(s); IsSHA256Hex(t) {
		return strings.ToLower(t), true
	}
	e, ok := NormaliseEmailFor(s, p)
	if !ok {
		return "", false
	}
	return HashSHA256(e), true
}

// HashPhone returns the hex SHA-256 digest of s normalised for platform p
// (NormalisePhone with defaultRegion), and whether s gave one. A value that
// is already a SHA-256 hex digest is passed through in lower case instead.
func HashPhone(s, defaultRegion string, p Platform) (string, bool) {
	if !p.valid() {
		return "", false
	}
	if t := strings.TrimSpace(s); IsSHA256Hex(t) {
		return strings.ToLower(t), true
	}
	n, ok := NormalisePhone(s, defaultRegion, p)
	if !ok {
		return "", false
	}
	return HashSHA256(n), true
}

// validLocalPart reports whether local is a non-empty e-mail local part
// without white space, control characters or the characters that need
// quoting in RFC 5322.
func validLocalPart(local string) bool {
	if local == "" || !utf8.ValidString(local) {
		return false
	}
	for _, r := range local {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`"(),:;<>[\]`, r) {
			return false
		}
	}
	return true
}

// validDomain reports whether domain has at least two non-empty labels of
// letters, digits and hyphens, none starting or ending with a hyphen.
func validDomain(domain string) bool {
	if !utf8.ValidString(domain) {
		return false
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				return false
			}
		}
	}
	return true
}
