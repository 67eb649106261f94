package dmp

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

type person struct {
	email, phone string
	written      bool
}

func TestSeedWriterGolden(t *testing.T) {
	const hashedUpper = "973DFE463EC85785F5F95AF5BA3906EEDB2D931C24E69824A89EA65DBA4E813B"
	tests := []struct {
		name   string
		p      Platform
		region string
		people []person
		golden string
	}{
		{
			name:   "meta",
			p:      PlatformMeta,
			region: "US",
			people: []person{
				{"  John_Smith@Gmail.com ", "(650)555-1212", true},
				{"", "+31 6 12345678", true},
				{"not-an-email", "123", false},
				{hashedUpper, "", true},
				{"Jane.Doe@gmail.com", "not a phone", true},
			},
			golden: "seed_meta.csv",
		},
		{
			name:   "google",
			p:      PlatformGoogle,
			region: "NL",
			people: []person{
				{"Jane.Doe@Gmail.com", "06-12345678", true},
				{"test@example.com", "+1 (650) 555-1234", true},
				{"bad@", "abc", false},
				{"", "", false},
				{"", "+1 (800) 555-0100", true},
			},
			golden: "seed_google.csv",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			sw := NewSeedWriter(&buf, tc.p)
			sw.DefaultRegion = tc.region
			for _, pr := range tc.people {
				written, err := sw.Write(pr.email, pr.phone)
				if err != nil {
					t.Fatalf("Write(%q, %q): %v", pr.email, pr.phone, err)
				}
				if written != pr.written {
					t.Errorf("Write(%q, %q) written = %v, want %v", pr.email, pr.phone, written, pr.written)
				}
			}
			if err := sw.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", tc.golden))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("output differs from %s\n got:\n%s\nwant:\n%s", tc.golden, buf.Bytes(), want)
			}
		})
	}
}

func TestSeedWriterHeaderOnly(t *testing.T) {
	tests := []struct {
		p    Platform
		want string
	}{
		{PlatformMeta, "email,phone\n"},
		{PlatformGoogle, "Email,Phone\n"},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		sw := NewSeedWriter(&buf, tc.p)
		if written, err := sw.Write("nobody", ""); written || err != nil {
			t.Errorf("%v: Write of nobody = %v, %v", tc.p, written, err)
		}
		if err := sw.Flush(); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("%v: got %q, want %q", tc.p, buf.String(), tc.want)
		}
		// Flushing again writes no second header.
		if err := sw.Flush(); err != nil || buf.String() != tc.want {
			t.Errorf("%v: second Flush gave %q, %v", tc.p, buf.String(), err)
		}
	}
}

func TestSeedWriterNoRegion(t *testing.T) {
	var buf bytes.Buffer
	sw := NewSeedWriter(&buf, PlatformGoogle)
	if written, err := sw.Write("", "06-12345678"); written || err != nil {
		t.Errorf("national number without DefaultRegion: written %v, err %v", written, err)
	}
	if written, err := sw.Write("", "+31 6 12345678"); !written || err != nil {
		t.Errorf("international number without DefaultRegion: written %v, err %v", written, err)
	}
}

func TestSeedWriterUnknownPlatform(t *testing.T) {
	var buf bytes.Buffer
	sw := NewSeedWriter(&buf, Platform(0))
	if _, err := sw.Write("test@example.com", ""); !errors.Is(err, ErrUnknownPlatform) {
		t.Errorf("Write error = %v, want ErrUnknownPlatform", err)
	}
	if err := sw.Flush(); !errors.Is(err, ErrUnknownPlatform) {
		t.Errorf("Flush error = %v, want ErrUnknownPlatform", err)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %q for an unknown platform", buf.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSeedWriterWriteError(t *testing.T) {
	sw := NewSeedWriter(failWriter{}, PlatformMeta)
	if _, err := sw.Write("test@example.com", ""); err != nil {
		t.Fatalf("buffered Write failed early: %v", err)
	}
	if err := sw.Flush(); err == nil {
		t.Error("Flush to a failing writer returned nil")
	}
}
