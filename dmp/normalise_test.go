package dmp

import (
	"errors"
	"strings"
	"testing"
)

func TestHashSHA256Vectors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// Published by Meta, Conversions API customer information
		// parameters: the normalised forms of "John_Smith@gmail.com",
		// "(650)555-1212" (US) and "Mary" and their expected SHA-256.
		{"meta em example", "john_smith@gmail.com", "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"},
		{"meta ph example", "16505551212", "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"},
		{"meta fn example", "mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"},
		// Computed with printf '%s' VALUE | sha256sum.
		{"plain e-mail", "test@example.com", "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"},
		{"gmail without dots", "janedoe@gmail.com", "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"},
		{"gmail with dots", "jane.doe@gmail.com", "831f6494ad6be4fcb3a724c3d5fef22d3ceffa3c62ef3a7984e45a0ea177f982"},
		{"google phone US", "+16505551234", "a2996076d3ad4af5dc818b908b3d8e354f26ededf7df0e0aa6ac354143805ee0"},
		{"meta phone US", "16505551234", "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599"},
		{"google phone NL", "+31612345678", "fab7be8a931d1088a82f6acf9e468aaf6a3accc07d5112ee5d6fca93281e1583"},
		{"meta phone NL", "31612345678", "e03d152bbe638d9fe7a04f9b88a67674bf15b73c0981755c16eb78d177721e03"},
		{"google documented phone", "+18005550100", "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"},
		{"empty string", "", emptySHA256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HashSHA256(tc.in); got != tc.want {
				t.Errorf("HashSHA256(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestIsSHA256Hex(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b", true},
		{"973DFE463EC85785F5F95AF5BA3906EEDB2D931C24E69824A89EA65DBA4E813B", true},
		{"973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813", false},   // 63
		{"973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813bb", false}, // 65
		{"973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813g", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := IsSHA256Hex(tc.in); got != tc.want {
			t.Errorf("IsSHA256Hex(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNormaliseEmail(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"test@example.com", "test@example.com", true},
		{"  USER@Example.COM \t", "user@example.com", true},
		{"John_Smith@gmail.com", "john_smith@gmail.com", true},
		{"Jane.Doe@gmail.com", "jane.doe@gmail.com", true}, // no gmail rule here
		{"jane+ads@sub.example.co.uk", "jane+ads@sub.example.co.uk", true},
		{"ÉLODIE@exemple.fr", "élodie@exemple.fr", true},
		{"a@xn--bcher-kva.example", "a@xn--bcher-kva.example", true},
		{"", "", false},
		{"   ", "", false},
		{"not-an-email", "", false},
		{"@example.com", "", false},
		{"user@", "", false},
		{"user@localhost", "", false},
		{"a@@example.com", "", false},
		{"a@b@example.com", "", false},
		{"a b@example.com", "", false},
		{"a@exa mple.com", "", false},
		{"a@example..com", "", false},
		{"a@.example.com", "", false},
		{"a@example.com.", "", false},
		{"a@-example.com", "", false},
		{"a@example_x.com", "", false},
		{"<a@example.com>", "", false},
		{"a,b@example.com", "", false},
		{"973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b", "", false},
	}
	for _, tc := range tests {
		got, ok := NormaliseEmail(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("NormaliseEmail(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestNormaliseEmailFor(t *testing.T) {
	tests := []struct {
		in     string
		p      Platform
		want   string
		wantOK bool
	}{
		{" Jane.Doe@Gmail.com ", PlatformGoogle, "janedoe@gmail.com", true},
		{"j.a.n.e@googlemail.com", PlatformGoogle, "jane@googlemail.com", true},
		{"jane.doe+ads@gmail.com", PlatformGoogle, "janedoe+ads@gmail.com", true},
		{"jane.doe@example.com", PlatformGoogle, "jane.doe@example.com", true},
		{"jane.doe@mail.gmail.com", PlatformGoogle, "jane.doe@mail.gmail.com", true},
		{"...@gmail.com", PlatformGoogle, "", false},
		{" Jane.Doe@Gmail.com ", PlatformMeta, "jane.doe@gmail.com", true},
		{"jane.doe@googlemail.com", PlatformMeta, "jane.doe@googlemail.com", true},
		{"bad", PlatformMeta, "", false},
		{"bad", PlatformGoogle, "", false},
		{"test@example.com", Platform(0), "", false},
		{"test@example.com", Platform(99), "", false},
	}
	for _, tc := range tests {
		got, ok := NormaliseEmailFor(tc.in, tc.p)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("NormaliseEmailFor(%q, %v) = %q, %v; want %q, %v", tc.in, tc.p, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestNormalisePhone(t *testing.T) {
	tests := []struct {
		in, region string
		google     string // "" means invalid
		meta       string
	}{
		{"+31 6 12345678", "NL", "+31612345678", "31612345678"},
		{"+31 6 12345678", "", "+31612345678", "31612345678"},
		{"+31 6 12345678", "US", "+31612345678", "31612345678"},
		{"06-12345678", "NL", "+31612345678", "31612345678"},
		{"06 1234 5678", "nl", "+31612345678", "31612345678"},
		{"0031 6 12345678", "NL", "+31612345678", "31612345678"},
		{"020 123 4567", "NL", "+31201234567", "31201234567"},
		{"(650) 555-1234", "US", "+16505551234", "16505551234"},
		{"650.555.1234", "US", "+16505551234", "16505551234"},
		{"+1 650 555 1234", "NL", "+16505551234", "16505551234"},
		{"650-555-1234 ext. 12", "US", "+16505551234", "16505551234"},
		// Meta's documented example: (650)555-1212 -> 16505551212.
		{"(650)555-1212", "US", "+16505551212", "16505551212"},
		// Google's documented example: (800)555-0100 -> +18005550100.
		{"(800)555-0100", "US", "+18005550100", "18005550100"},
		// A zero that belongs to the number stays (Italy).
		{"+39 06 1234 5678", "", "+390612345678", "390612345678"},
		// Invalid.
		{"06-12345678", "", "", ""},      // national form without a region
		{"(650) 555-1234", "XX", "", ""}, // unknown region
		{"123", "US", "", ""},
		{"abc", "US", "", ""},
		{"", "NL", "", ""},
		{"   ", "NL", "", ""},
		{"+1 123 456 7890", "", "", ""}, // no such area code
		{"+31 6 1234", "", "", ""},      // too short
	}
	for _, tc := range tests {
		for _, c := range []struct {
			p    Platform
			want string
		}{{PlatformGoogle, tc.google}, {PlatformMeta, tc.meta}} {
			got, ok := NormalisePhone(tc.in, tc.region, c.p)
			if got != c.want || ok != (c.want != "") {
				t.Errorf("NormalisePhone(%q, %q, %v) = %q, %v; want %q, %v", tc.in, tc.region, c.p, got, ok, c.want, c.want != "")
			}
		}
	}
	if got, ok := NormalisePhone("+31612345678", "NL", Platform(0)); ok || got != "" {
		t.Errorf("NormalisePhone with no platform = %q, %v; want \"\", false", got, ok)
	}
}

func TestHashEmailAndPhone(t *testing.T) {
	const upper = "973DFE463EC85785F5F95AF5BA3906EEDB2D931C24E69824A89EA65DBA4E813B"
	const lower = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
	emails := []struct {
		in     string
		p      Platform
		want   string
		wantOK bool
	}{
		{"John_Smith@gmail.com", PlatformMeta, "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f", true},
		{"Jane.Doe@gmail.com", PlatformGoogle, "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69", true},
		{"Jane.Doe@gmail.com", PlatformMeta, "831f6494ad6be4fcb3a724c3d5fef22d3ceffa3c62ef3a7984e45a0ea177f982", true},
		{" " + upper + " ", PlatformMeta, lower, true},
		{upper, PlatformGoogle, lower, true},
		{"nope", PlatformGoogle, "", false},
		{upper, Platform(0), "", false},
	}
	for _, tc := range emails {
		got, ok := HashEmail(tc.in, tc.p)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("HashEmail(%q, %v) = %q, %v; want %q, %v", tc.in, tc.p, got, ok, tc.want, tc.wantOK)
		}
	}
	phones := []struct {
		in, region string
		p          Platform
		want       string
		wantOK     bool
	}{
		{"(650)555-1212", "US", PlatformMeta, "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176", true},
		{"(650) 555-1234", "US", PlatformGoogle, "a2996076d3ad4af5dc818b908b3d8e354f26ededf7df0e0aa6ac354143805ee0", true},
		{"06-12345678", "NL", PlatformMeta, "e03d152bbe638d9fe7a04f9b88a67674bf15b73c0981755c16eb78d177721e03", true},
		{upper, "", PlatformGoogle, lower, true},
		{"123", "US", PlatformGoogle, "", false},
	}
	for _, tc := range phones {
		got, ok := HashPhone(tc.in, tc.region, tc.p)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("HashPhone(%q, %q, %v) = %q, %v; want %q, %v", tc.in, tc.region, tc.p, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in      string
		want    Platform
		wantErr bool
	}{
		{"meta", PlatformMeta, false},
		{" Meta ", PlatformMeta, false},
		{"google", PlatformGoogle, false},
		{"GOOGLE", PlatformGoogle, false},
		{"facebook", 0, true},
		{"", 0, true},
	}
	for _, tc := range tests {
		got, err := ParsePlatform(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !errors.Is(err, ErrUnknownPlatform) {
			t.Errorf("ParsePlatform(%q) error %v does not wrap ErrUnknownPlatform", tc.in, err)
		}
		if err == nil && got.String() != strings.ToLower(strings.TrimSpace(tc.in)) {
			t.Errorf("Platform(%q).String() = %q", tc.in, got.String())
		}
	}
	if s := Platform(7).String(); s != "Platform(7)" {
		t.Errorf("Platform(7).String() = %q", s)
	}
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		p    Platform
		want []string
	}{
		{PlatformMeta, []string{"email", "phone"}},
		{PlatformGoogle, []string{"Email", "Phone"}},
		{Platform(0), nil},
	}
	for _, tc := range tests {
		got := Headers(tc.p)
		if len(got) != len(tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("Headers(%v) = %q, want %q", tc.p, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Headers(%v) = %q, want %q", tc.p, got, tc.want)
			}
		}
	}
	// Each call returns a new slice.
	h := Headers(PlatformMeta)
	h[0] = "changed"
	if Headers(PlatformMeta)[0] != "email" {
		t.Error("Headers returned a shared slice")
	}
}
