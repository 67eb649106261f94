// Package match links records that share no key: a point-of-sale loyalty
// record and a CRM contact whose name carries a typo, say. It implements the
// Fellegi–Sunter model with unsupervised expectation–maximisation, in the way
// Splink does:
//
//   - Records are normalised (see [Normalise]), their field values interned
//     per field, and kept column by column in an [Index]. Correlated fields,
//     such as the parts of an address, can be compared as one
//     [CombinedField].
//   - Blocking rules ([BlockingRule]) bound the candidate pairs: a pair is a
//     candidate when it agrees on the key of at least one rule, and each pair
//     is generated once, by the first rule that finds it. Blocks larger than
//     [Settings].MaxBlockPairs are skipped and reported.
//   - Each [Comparison] maps a pair to a level (exact, Jaro–Winkler,
//     Levenshtein, date or numeric closeness, else; null when a value is
//     missing, which weighs nothing).
//   - [Index.Train] estimates u (the level frequencies among non-matches)
//     from random pairs, then m (the level frequencies among matches) and the
//     prior λ by EM on the candidate pairs, aggregated by comparison pattern
//     so that an iteration costs distinct patterns, not pairs. EM runs once
//     over all candidates or, with [Settings].Training, in sessions on
//     pairs that agree on identifying fields, which keeps frequent
//     non-matches such as members of one household out of the match class.
//   - [Model.Score] gives every candidate pair a match weight (log2 Bayes
//     factor plus prior log-odds) and probability, with a Splink-style term
//     frequency adjustment for exact agreement on a value, and
//     [Model.Explain] breaks the weight down per comparison for a person
//     reviewing the pair.
//   - [Cluster] joins the pairs above the auto-merge threshold into entities
//     (connected components).
//
// A deployment chooses its comparisons, blocking rules and thresholds in
// [Settings]: pairs at or above AutoMerge merge, pairs between Review and
// AutoMerge go to a person with their [Explanation].
//
// Batch runs use [Index.Run]; incremental matching of one new record uses
// [Index.Candidates] and [Model.ScoreRecord] against an index and a model
// estimated earlier, then [Index.Add] to make the record findable.
package match
