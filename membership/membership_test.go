package membership

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func TestChunkRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, sparseLimit - 1, sparseLimit, ChunkSize} {
		var c Chunk
		var want []int64
		for i := range n {
			off := int64(i * ChunkSize / max(n, 1))
			c.Add(off)
			want = append(want, off)
		}
		enc := c.Encode()
		if n == 0 && enc != nil {
			t.Fatalf("empty chunk encoded as %d bytes", len(enc))
		}
		if n > 0 && n < sparseLimit && len(enc) != 2*n || n >= sparseLimit && len(enc) != bitmapBytes {
			t.Fatalf("%d members encoded in %d bytes", n, len(enc))
		}
		var got Chunk
		if err := DecodeChunk(enc, &got); err != nil {
			t.Fatal(err)
		}
		var offs []int64
		got.Each(0, func(i int64) bool { offs = append(offs, i); return true })
		if !slices.Equal(offs, want) || got.Count() != n {
			t.Fatalf("%d members: decoded %d (%d)", n, len(offs), got.Count())
		}
	}
	var c Chunk
	c.Add(5)
	c.Add(70)
	c.Remove(5)
	var from []int64
	c.Each(6, func(i int64) bool { from = append(from, i); return true })
	if !slices.Equal(from, []int64{70}) {
		t.Fatalf("Each from 6 = %v", from)
	}
	if err := DecodeChunk(make([]byte, 3), &c); err == nil {
		t.Fatal("a chunk of 3 bytes decoded")
	}
}

func TestMembersRoundTrip(t *testing.T) {
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var blob []byte
	var prev int64
	for i, a := range []string{"a", "buyers", "zeta"} {
		since := at.Add(time.Duration(i) * time.Hour).UnixMicro()
		blob = AppendMember(blob, a, since, prev)
		prev = since
	}
	ms, err := Members("p_1", blob)
	if err != nil || len(ms) != 3 || ms[1].Audience != "buyers" || !ms[2].Since.Equal(at.Add(2*time.Hour)) || ms[0].ProfileID != "p_1" {
		t.Fatalf("Members = %+v, %v", ms, err)
	}
	if _, err := Members("p_1", blob[:len(blob)-1]); err == nil {
		t.Fatal("a cut blob decoded")
	}
}

func TestIDsRoundTrip(t *testing.T) {
	tests := [][]string{nil, {"p_1"}, {"p_0000000000001", "p_0000000000002", "p_0000000000100", "q", ""}}
	for _, ids := range tests {
		r := NewIDReader(EncodeIDs(ids))
		var got []string
		for r.Next() {
			got = append(got, string(r.ID()))
		}
		if r.Err() != nil || !slices.Equal(got, ids) && len(ids) > 0 {
			t.Fatalf("%v: got %v, %v", ids, got, r.Err())
		}
	}
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("p_%013d", i)
	}
	if enc := EncodeIDs(many); len(enc) > 5*len(many) {
		t.Fatalf("1000 ids took %d bytes: front coding does not work", len(enc))
	}
	r := NewIDReader([]byte{9, 1, 'x'})
	if r.Next() || r.Err() == nil {
		t.Fatal("corrupt ids decoded")
	}
}

func TestExpandBulk(t *testing.T) {
	ids := EncodeIDs([]string{"p_1", "p_2", "p_3", "p_4"})
	first := kith.MembershipChange{Seq: 10, Audience: "a", Entered: true, Cause: "backfill"}
	tests := []struct {
		after int64
		limit int
		want  []string
	}{
		{0, 10, []string{"p_1", "p_2", "p_3", "p_4"}},
		{11, 10, []string{"p_3", "p_4"}},
		{11, 1, []string{"p_3"}},
		{13, 10, nil},
	}
	for _, tt := range tests {
		out, err := ExpandBulk(nil, first, ids, tt.after, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, c := range out {
			got = append(got, c.ProfileID)
			if c.Audience != "a" || !c.Entered || c.Cause != "backfill" || c.Seq != tt.after+1+int64(i) && tt.after >= 10 {
				t.Errorf("after %d: change %+v", tt.after, c)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("after %d limit %d = %v, want %v", tt.after, tt.limit, got, tt.want)
		}
	}
	for profile, want := range map[string]int64{"p_1": 10, "p_4": 13, "p_9": 0} {
		if seq, err := FindInBulk(ids, 10, profile); err != nil || seq != want {
			t.Errorf("FindInBulk(%s) = %d, %v; want %d", profile, seq, err, want)
		}
	}
	if _, err := ExpandBulk(nil, first, []byte{9, 1, 'x'}, 0, 10); err == nil {
		t.Error("corrupt ids expanded")
	}
}
