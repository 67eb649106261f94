package demo

// Assignment places one record (an identifier) of a true person in a
// cluster found by identity resolution.
type Assignment struct {
	// Person is the true person (the personID of Sink.Truth).
	Person string
	// Cluster is the profile the record was resolved to.
	Cluster string
}

// Scores are the pairwise quality measures of a clustering: a pair of
// records is a true match when both belong to one person, and predicted
// when both are in one cluster.
type Scores struct {
	// Precision is the share of predicted pairs that are true matches (1
	// when no pair is predicted).
	Precision float64
	// Recall is the share of true matches that are predicted (1 when there
	// are none).
	Recall float64
	// F1 is the harmonic mean of Precision and Recall.
	F1 float64
	// Records, People and Clusters count the assignments and the distinct
	// persons and clusters among them.
	Records, People, Clusters int
}

// Score computes pairwise precision, recall and F1 of a clustering against
// the truth. assignments holds one (person, cluster) pair per record. The
// counts come from the contingency table of persons by clusters (a cell
// with n records holds n(n-1)/2 pairs), so the cost is linear in the
// number of records, not quadratic.
func Score(assignments []Assignment) Scores {
	cells := map[Assignment]int64{}
	people := map[string]int64{}
	clusters := map[string]int64{}
	for _, a := range assignments {
		cells[a]++
		people[a.Person]++
		clusters[a.Cluster]++
	}
	var tp, truePairs, predicted int64
	for _, n := range cells {
		tp += n * (n - 1) / 2
	}
	for _, n := range people {
		truePairs += n * (n - 1) / 2
	}
	for _, n := range clusters {
		predicted += n * (n - 1) / 2
	}
	s := Scores{Precision: 1, Recall: 1, Records: len(assignments), People: len(people), Clusters: len(clusters)}
	if predicted > 0 {
		s.Precision = float64(tp) / float64(predicted)
	}
	if truePairs > 0 {
		s.Recall = float64(tp) / float64(truePairs)
	}
	if s.Precision+s.Recall > 0 {
		s.F1 = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
	}
	return s
}
