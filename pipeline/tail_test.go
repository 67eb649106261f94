package pipeline

import (
	"reflect"
	"testing"

	"github.com/kithcdp/kith"
)

func seqs(msgs []kith.Message) []int64 {
	var out []int64
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

func run(from, to int64) []kith.Message {
	var out []kith.Message
	for s := from; s <= to; s++ {
		out = append(out, kith.Message{Seq: s})
	}
	return out
}

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		offers [][]kith.Message
		after  int64
		limit  int
		want   []int64
		left   []int64
	}{
		{"continues", [][]kith.Message{run(1, 3), run(4, 5)}, 0, 10, []int64{1, 2, 3, 4, 5}, nil},
		{"limit", [][]kith.Message{run(1, 5)}, 0, 2, []int64{1, 2}, []int64{3, 4, 5}},
		{"skips applied", [][]kith.Message{run(1, 5)}, 3, 10, []int64{4, 5}, nil},
		{"does not start there", [][]kith.Message{run(5, 6)}, 2, 10, nil, []int64{5, 6}},
		{"gap drops the older run", [][]kith.Message{run(1, 2), run(5, 6)}, 4, 10, []int64{5, 6}, nil},
		{"overflow drops, then refills", [][]kith.Message{run(1, 6), run(7, 8)}, 6, 10, []int64{7, 8}, nil},
		{"an offer over the bound is ignored", [][]kith.Message{run(1, 9)}, 0, 10, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := tail{max: 7}
			for _, o := range tc.offers {
				tl.offer(o)
			}
			if got := seqs(tl.take(tc.after, tc.limit)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("take = %v, want %v", got, tc.want)
			}
			if got := seqs(tl.msgs); !reflect.DeepEqual(got, tc.left) {
				t.Errorf("left %v, want %v", got, tc.left)
			}
		})
	}
}
