package kith

import (
	"crypto/rand"
	"encoding/hex"
)

// NewID returns a new identifier for something Kith creates (a source, a
// token, a link, an erasure request, a message without an id …): prefix,
// then 16 random bytes in hex. 128 random bits never collide in practice,
// so ids need no coordination between processes or nodes, and they say
// nothing about who or what they name.
func NewID(prefix string) string { return prefix + randomHex(16) }

// NewSecret returns a new credential (a write key, an API token, a
// session): prefix, then 32 random bytes in hex, as hard to guess as the
// keys that sign them.
func NewSecret(prefix string) string { return prefix + randomHex(32) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24 on)
	return hex.EncodeToString(b)
}
