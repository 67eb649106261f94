package basket

import (
	"slices"
	"testing"
)

// Baskets {0,1} {0,2} {0,1} {1,2} {3} {0,1,2}: popularity 0:4 1:4 2:3 3:1;
// co-occurrence 0-1: 3, 0-2: 2, 1-2: 2; item 3 is alone. With MinCoCount 2
// the confidences are 0→1 3/4, 1→0 3/4, 0→2 2/4, 1→2 2/4, 2→0 2/3, 2→1 2/3.
var shop = [][][]int32{
	{{0, 1}, {0, 2}},
	{{0, 1}},
	{{1, 2}, {3}},
	{{0, 1, 2}},
}

func TestNextBest(t *testing.T) {
	def, err := NewRecommender(shop, RecommenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	strict, err := NewRecommender(shop, RecommenderOptions{MinCoCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	// 4 and 5 share 2 baskets, 4 and 6 share 2: conf 4→5 = conf 4→6 = 2/4;
	// 6 is more popular (3 baskets against 2), so it wins the tie.
	tie, err := NewRecommender([][][]int32{{{4, 5}, {4, 5}}, {{4, 6}, {4, 6}}, {{6}}}, RecommenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		r      *Recommender
		bought []int32
		n      int
		want   []Recommendation
	}{
		{"scores then popular fallback", def, []int32{0}, 3, []Recommendation{{1, 0.75}, {2, 0.5}, {3, 0}}},
		{"scores sum over bought items", def, []int32{1, 0, 0}, 2, []Recommendation{{2, 1.0}, {3, 0}}},
		{"equal score and popularity: smaller id", def, []int32{2}, 1, []Recommendation{{0, 2.0 / 3}}},
		{"truncated to n", def, []int32{0}, 1, []Recommendation{{1, 0.75}}},
		{"everything bought but one", def, []int32{0, 1, 2}, 5, []Recommendation{{3, 0}}},
		{"new customer gets most popular", def, nil, 3, []Recommendation{{0, 0}, {1, 0}, {2, 0}}},
		{"unknown ids are ignored", def, []int32{99, -1, 3}, 2, []Recommendation{{0, 0}, {1, 0}}},
		{"n zero", def, []int32{0}, 0, nil},
		{"MinCoCount 3 keeps only 0-1", strict, []int32{0}, 3, []Recommendation{{1, 0.75}, {2, 0}, {3, 0}}},
		{"equal score: more popular first", tie, []int32{4}, 2, []Recommendation{{6, 0.5}, {5, 0.5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.r.NextBest(tt.bought, tt.n)
			if !slices.EqualFunc(got, tt.want, func(a, b Recommendation) bool {
				return a.Item == b.Item && near(a.Score, b.Score)
			}) {
				t.Errorf("NextBest(%v, %d) = %v, want %v", tt.bought, tt.n, got, tt.want)
			}
			for _, rec := range got {
				if slices.Contains(tt.bought, rec.Item) {
					t.Errorf("recommended bought item %d", rec.Item)
				}
			}
		})
	}
}

func TestPopular(t *testing.T) {
	r, err := NewRecommender(shop, RecommenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Popular([]int32{1}, 2); !slices.Equal(items(got), []int32{0, 2}) {
		t.Errorf("Popular = %v, want items 0 2", got)
	}
	if got := r.Popularity(0); got != 4 {
		t.Errorf("Popularity(0) = %d, want 4", got)
	}
	if got := r.Popularity(42); got != 0 {
		t.Errorf("Popularity(42) = %d, want 0", got)
	}
}

func TestNewRecommenderValidation(t *testing.T) {
	tests := []struct {
		name      string
		customers [][][]int32
		opts      RecommenderOptions
	}{
		{"no customers", nil, RecommenderOptions{}},
		{"customers without baskets", [][][]int32{{}, {}}, RecommenderOptions{}},
		{"negative MinCoCount", shop, RecommenderOptions{MinCoCount: -1}},
		{"negative item id", [][][]int32{{{1, -1}}}, RecommenderOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRecommender(tt.customers, tt.opts); err == nil {
				t.Error("want an error")
			}
		})
	}
}

func TestEvaluateHandComputed(t *testing.T) {
	// Held out: customer 0's {5} and customer 7's {0}. Training popularity
	// 0:4 1:2 2:1 4:3 5:2; only 4-5 co-occur twice.
	//   customer 0 bought {4}: NextBest → 5 (hit), Popular → 0 (miss).
	//   customer 7 bought {1}: no link, both fall back to 0 (hit, hit).
	// Customer 8's empty basket is ignored, so it has one basket and only
	// trains.
	customers := [][][]int32{
		{{4}, {5}},
		{{4, 5}},
		{{4, 5}},
		{{0}}, {{0}}, {{0}}, {{0, 1}},
		{{1}, {0}},
		{{}, {2}},
	}
	got, err := Evaluate(customers, 1, RecommenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := Evaluation{N: 1, Customers: 2, Hits: 2, BaselineHits: 1, HitRate: 1, BaselineHitRate: 0.5}
	if got != want {
		t.Errorf("Evaluate = %+v, want %+v", got, want)
	}

	if _, err := Evaluate(customers, 0, RecommenderOptions{}); err == nil {
		t.Error("n 0: want an error")
	}
	if _, err := Evaluate([][][]int32{{{1}}, {{2}, {}}}, 10, RecommenderOptions{}); err == nil {
		t.Error("no customer with two baskets: want an error")
	}
}

func items(recs []Recommendation) []int32 {
	out := make([]int32, len(recs))
	for i, r := range recs {
		out[i] = r.Item
	}
	return out
}

func TestMaxLinks(t *testing.T) {
	// Item 0 co-occurs with 1 (3 baskets), 2 (2 baskets) and 3 (2 baskets).
	customers := [][][]int32{{{0, 1}, {0, 1}, {0, 1, 2}}, {{0, 2, 3}, {0, 3}}}
	all, err := NewRecommender(customers, RecommenderOptions{MinCoCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	one, err := NewRecommender(customers, RecommenderOptions{MinCoCount: 1, MaxLinks: 1})
	if err != nil {
		t.Fatal(err)
	}
	// With every link, a customer who bought 0 gets 1, then 2 and 3 (tied
	// at 2/5, by popularity then id); with one link per item only 1
	// scores and the rest is filled by popularity with score 0.
	got := all.NextBest([]int32{0}, 3)
	if len(got) != 3 || got[0].Item != 1 || got[1].Score == 0 || got[2].Score == 0 {
		t.Errorf("all links: %v", got)
	}
	got = one.NextBest([]int32{0}, 3)
	if len(got) != 3 || got[0].Item != 1 || got[0].Score != 0.6 || got[1].Score != 0 || got[2].Score != 0 {
		t.Errorf("one link: %v", got)
	}
	if _, err := NewRecommender(customers, RecommenderOptions{MaxLinks: -1}); err == nil {
		t.Error("negative MaxLinks: want an error")
	}
}
