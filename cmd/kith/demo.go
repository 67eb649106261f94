package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/demo"
	"github.com/kithcdp/kith/dmp"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/imports"
	"github.com/kithcdp/kith/insights"
	"github.com/kithcdp/kith/mappings"
)

// demoDefinitions are the audiences and computed traits the demo defines, so
// that the platform shows segments from the first minute.
var demoDefinitions = []struct{ kind, key, text string }{
	{kith.KindComputedTrait, "orders_365d", `count(event "Order Completed" within 365d)`},
	{kith.KindComputedTrait, "spend_365d", `sum(properties.revenue of event "Order Completed" within 365d)`},
	{kith.KindComputedTrait, "favourite_category", `most_frequent(properties.category of event "Product Viewed" within 180d)`},
	{kith.KindComputedTrait, "email_opens_90d", `count(event "Email Opened" within 90d)`},
	{kith.KindAudience, "loyal_customers", `count(event "Order Completed" within 365d) >= 3`},
	{kith.KindAudience, "lapsed_customers", `count(event "Order Completed") >= 1 and count(event "Order Completed" within 270d) = 0`},
	{kith.KindAudience, "coffee_lovers", `count(event "Product Viewed" where properties.category in ["Coffee Machines", "Coffee & Tea"] within 180d) >= 3`},
	{kith.KindAudience, "newsletter_engaged", `count(event "Email Opened" within 90d) >= 1`},
	{kith.KindAudience, "at_risk_valuable", `traits.p_alive < 0.5 and traits.clv_365d > 50`},
	{kith.KindAudience, "advertising_ok", `consent "Advertising"`},
}

// demoMarker records a completed load in the data directory, so running
// `kith demo` again serves the same data without loading it twice.
const demoMarker = "demo.json"

// demoResult is what a load produced: the marker's content.
type demoResult struct {
	Customers int               `json:"customers"`
	Seed      int64             `json:"seed"`
	LoadedAt  time.Time         `json:"loadedAt"`
	Seconds   float64           `json:"seconds"`
	Dataset   demo.Summary      `json:"dataset"`
	Imports   []demoImport      `json:"imports"`
	DMP       dmp.ImportSummary `json:"dmp"`
	Identity  demoIdentity      `json:"identity"`
	Audiences map[string]int64  `json:"audiences"`
	// Sample is a customer to look at first: one with orders from more
	// than one channel.
	Sample string `json:"sample"`
}

type demoImport struct {
	File    string          `json:"file"`
	Source  string          `json:"source"`
	Summary imports.Summary `json:"summary"`
}

// demoIdentity scores identity resolution against the ground truth:
// pairwise precision and recall over the identifiers of the same person.
type demoIdentity struct {
	ExactIDs      demo.Scores `json:"exactIds"`
	AfterMatching demo.Scores `json:"afterMatching"`
	NotFound      int         `json:"notFound"`
	Profiles      int         `json:"profiles"`
}

// runDemo is `kith demo`: generate a seeded multi-channel dataset, load it
// into a fresh embedded store through the same paths as live data (events
// through the collector, files through the ready-made import mappings, a
// DMP file), score identity resolution against the ground truth, and
// serve. /healthz answers 503 until loading is done.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	finish := serveFlags(fs)
	customers := fs.Int("customers", demo.DefaultCustomers, "people to generate")
	seed := fs.Int64("seed", 1, "dataset seed: the same seed gives the same data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := finish()
	if err != nil {
		return err
	}
	if !flagSet(fs, "data") && os.Getenv("KITH_DATA") == "" {
		cfg.DataDir = "./kith-demo"
	}
	if cfg.PostgresURL != "" {
		return fmt.Errorf("kith demo loads a fresh embedded store; run it without --postgres")
	}
	if cfg.IdentityRules == nil {
		// The demo's customers write Dutch phone numbers without the
		// country code.
		cfg.IdentityRules = identity.DefaultRules()
		cfg.IdentityRules.DefaultRegion = "NL"
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = kith.NewSecret("kith_demo_")
	}
	var previous *demoResult
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, demoMarker)); err == nil {
		var r demoResult
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(cfg.DataDir, demoMarker), err)
		}
		if r.Customers != *customers || r.Seed != *seed {
			return fmt.Errorf("%s holds the demo with %d customers and seed %d; use another --data directory for %d customers and seed %d",
				cfg.DataDir, r.Customers, r.Seed, *customers, *seed)
		}
		previous = &r
	} else if ents, err := os.ReadDir(cfg.DataDir); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s is not empty and holds no demo; kith demo needs a fresh --data directory", cfg.DataDir)
	}

	s := &Server{Config: cfg}
	s.SetLoading("demo dataset")
	if err := s.Open(ctx); err != nil {
		return err
	}
	defer s.Close()
	url := "http://" + s.Addr()
	fmt.Fprintf(stdout, "Kith demo at %s (data in %s)\n", url, cfg.DataDir)
	res := previous
	if res == nil {
		fmt.Fprintf(stdout, "loading %d customers (seed %d); /healthz answers 503 until done\n", *customers, *seed)
		if res, err = loadDemo(ctx, s, *customers, *seed, stdout); err != nil {
			return err
		}
	}
	s.SetLoading("")
	printDemo(stdout, res, url, cfg.AdminToken)
	<-ctx.Done()
	return nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// demoLoader feeds the generator's output into the running server: live
// events through the group committer (as the HTTP collector would), CSV
// rows into files imported afterwards with the ready-made mappings, the
// ground truth into a file, and a third-party audience file for the DMP.
type demoLoader struct {
	ctx     context.Context
	s       *Server
	sources map[string]string // name → id
	batches map[string][]json.RawMessage
	files   map[string]*csv.Writer
	closers []func() error
	truth   *csv.Writer
	dmpFile *csv.Writer
	rng     *mrand.Rand
	now     time.Time
	sent    int64
	// The person whose truth is being written, and the first with a web
	// account and a loyalty card (the sample customer).
	person     string
	user, card string
	sample     string
}

func loadDemo(ctx context.Context, s *Server, customers int, seed int64, stdout io.Writer) (*demoResult, error) {
	start := time.Now()
	dir := filepath.Join(s.Config.DataDir, "demo-input")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	l := &demoLoader{ctx: ctx, s: s, sources: map[string]string{}, batches: map[string][]json.RawMessage{},
		files: map[string]*csv.Writer{}, rng: mrand.New(mrand.NewPCG(uint64(seed), 0xd3)), now: now}
	for _, name := range []string{demo.SourceWebshop, demo.SourceApp} {
		src, _, err := admin.CreateSource(ctx, s.store, name, now)
		if err != nil {
			return nil, err
		}
		l.sources[name] = src.ID
	}
	open := func(name string, header []string) (*csv.Writer, error) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		w := csv.NewWriter(bw)
		l.closers = append(l.closers, func() error {
			w.Flush()
			if err := w.Error(); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			return f.Close()
		})
		return w, w.Write(header)
	}
	var err error
	for _, file := range []string{demo.FileCRMContacts, demo.FileOrders, demo.FileEmailEngagement} {
		if l.files[file], err = open(file+".csv", demo.Headers[file]); err != nil {
			return nil, err
		}
	}
	if l.truth, err = open("truth.csv", []string{"person_id", "type", "value"}); err != nil {
		return nil, err
	}
	if l.dmpFile, err = open("dmp_audiences.csv", []string{"id_type", "id", "audiences", "expires_at"}); err != nil {
		return nil, err
	}
	ds, err := demo.Generate(demo.Config{Customers: customers, Seed: seed, Now: now}, l)
	if err != nil {
		return nil, fmt.Errorf("demo: generating: %w", err)
	}
	if err := l.flushAll(); err != nil {
		return nil, err
	}
	for _, c := range l.closers {
		if err := c(); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(stdout, "  live events: %d webshop, %d app\n", ds.Events[demo.SourceWebshop], ds.Events[demo.SourceApp])

	res := &demoResult{Customers: customers, Seed: seed, LoadedAt: now, Dataset: ds, Audiences: map[string]int64{}, Sample: l.sample}
	for _, imp := range []struct{ file, source, mapping string }{
		{demo.FileCRMContacts, "crm", "crm_contacts"},
		{demo.FileOrders, "pos", "orders"},
		{demo.FileEmailEngagement, "email", "email_engagement"},
	} {
		sum, err := l.importFile(filepath.Join(dir, imp.file+".csv"), imp.source, imp.mapping)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "  import %-24s read=%d accepted=%d rejected=%d\n", imp.file+".csv", sum.Read, sum.Accepted, sum.Rejected)
		res.Imports = append(res.Imports, demoImport{File: imp.file + ".csv", Source: imp.source, Summary: sum})
	}
	if err := s.waitIndexed(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "  indexed in %s\n", time.Since(start).Round(100*time.Millisecond))

	// The DMP file names cookie and advertising ids of some people, plus
	// ids nobody has.
	f, err := os.Open(filepath.Join(dir, "dmp_audiences.csv"))
	if err != nil {
		return nil, err
	}
	secret, err := s.store.Secret(ctx)
	if err != nil {
		return nil, err
	}
	m := &dmp.Matcher{Store: s.store, Keyer: identity.NewKeyer(secret), Rules: s.rules.Load, TTL: s.Config.DMPTTL}
	res.DMP, err = m.Import(ctx, "demo-dmp", f, dmp.FormatCSV, nil)
	f.Close()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "  DMP audiences: read=%d matched=%d unmatched=%d\n", res.DMP.Read, res.DMP.Matched, res.DMP.Unmatched)

	if res.Identity.ExactIDs, res.Identity.NotFound, res.Identity.Profiles, err = scoreIdentity(ctx, s, filepath.Join(dir, "truth.csv")); err != nil {
		return nil, err
	}
	if _, err := s.matcher.Run(ctx); err != nil {
		return nil, fmt.Errorf("demo: probabilistic matching: %w", err)
	}
	if err := s.waitIndexed(ctx); err != nil {
		return nil, err
	}
	if res.Identity.AfterMatching, _, res.Identity.Profiles, err = scoreIdentity(ctx, s, filepath.Join(dir, "truth.csv")); err != nil {
		return nil, err
	}
	run, err := s.insights.RunNow(ctx, insights.TriggerAPI, s.Config.Insights)
	if err != nil {
		return nil, fmt.Errorf("demo: insights: %w", err)
	}
	if run.Status != kith.RunFinished {
		return nil, fmt.Errorf("demo: insight run %s: %s", run.Status, run.Error)
	}
	for _, d := range demoDefinitions {
		if _, err := s.audiences.Put(ctx, kith.Definition{Kind: d.kind, Key: d.key, Text: d.text}); err != nil {
			return nil, fmt.Errorf("demo: %s %s: %w", d.kind, d.key, err)
		}
	}
	if err := s.waitBackfills(ctx); err != nil {
		return nil, err
	}
	for _, d := range demoDefinitions {
		if d.kind == kith.KindAudience {
			if res.Audiences[d.key], err = s.store.AudienceSize(ctx, d.key); err != nil {
				return nil, err
			}
		}
	}
	res.Seconds = time.Since(start).Seconds()
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(s.Config.DataDir, demoMarker), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

// Event implements demo.Sink: live events go out in batches of 500.
func (l *demoLoader) Event(source string, msg []byte) error {
	l.batches[source] = append(l.batches[source], append(json.RawMessage(nil), msg...))
	if len(l.batches[source]) >= 500 {
		return l.flush(source)
	}
	return nil
}

func (l *demoLoader) flushAll() error {
	for src := range l.batches {
		if err := l.flush(src); err != nil {
			return err
		}
	}
	return nil
}

// flush commits a source's pending events, waiting while the indexer is
// far behind or the commit queue is full, as a client would retry.
func (l *demoLoader) flush(source string) error {
	msgs := l.batches[source]
	if len(msgs) == 0 {
		return nil
	}
	for l.s.indexer.Backlog() > l.s.Config.MaxBacklog/2 {
		select {
		case <-l.ctx.Done():
			return l.ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	sink := imports.CommitSink{Committer: l.s.committer, SourceID: l.sources[source], Limits: l.s.Config.Limits}
	for {
		outs, err := sink.Send(l.ctx, msgs, nil)
		if errors.Is(err, collect.ErrOverloaded) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("demo: storing events: %w", err)
		}
		for i, o := range outs {
			if o.Status == imports.StatusRejected {
				return fmt.Errorf("demo: the collector rejected a generated event (%s: %s): %s", o.Reason, o.Message, msgs[i])
			}
		}
		break
	}
	l.sent += int64(len(msgs))
	l.batches[source] = msgs[:0]
	return nil
}

// Row implements demo.Sink.
func (l *demoLoader) Row(file string, record []string) error {
	return l.files[file].Write(record)
}

// Truth implements demo.Sink; a fifth of the people's cookie and
// advertising ids also go into the DMP's audience file.
func (l *demoLoader) Truth(person, typ, value string) error {
	if err := l.truth.Write([]string{person, typ, value}); err != nil {
		return err
	}
	if person != l.person {
		l.person, l.user, l.card = person, "", ""
	}
	switch typ {
	case kith.IdentUserID:
		l.user = value
	case "loyalty_card":
		l.card = value
	}
	if l.sample == "" && l.user != "" && l.card != "" {
		l.sample = "user_id:" + l.user
	}
	idType := ""
	switch {
	case typ == kith.IdentAnonymousID && !strings.HasPrefix(value, "card-"):
		idType = dmp.IDTypeCookie
	case strings.HasSuffix(typ, ".idfa"):
		idType = dmp.IDTypeMAID
	case typ == kith.IdentEmail:
		idType = dmp.IDTypeEmailSHA256
		value = dmp.HashSHA256(value)
	default:
		return nil
	}
	if l.rng.Float64() >= 0.2 {
		return nil
	}
	dmpAudiences := []string{"in-market-kitchen", "coffee-enthusiasts", "home-cooks", "deal-seekers", "premium-shoppers"}
	aud := dmpAudiences[l.rng.IntN(len(dmpAudiences))]
	if l.rng.IntN(3) == 0 {
		aud += "|" + dmpAudiences[l.rng.IntN(len(dmpAudiences))]
	}
	if err := l.dmpFile.Write([]string{idType, value, aud, ""}); err != nil {
		return err
	}
	// Now and then an id the DMP knows and this shop does not.
	if l.rng.IntN(4) == 0 {
		return l.dmpFile.Write([]string{dmp.IDTypeCookie, fmt.Sprintf("dmp-only-%016x", l.rng.Uint64()), aud, ""})
	}
	return nil
}

// importFile imports one generated file with a ready-made mapping.
func (l *demoLoader) importFile(path, source, mapping string) (imports.Summary, error) {
	mb, err := mappings.Mapping(mapping)
	if err != nil {
		return imports.Summary{}, err
	}
	m, err := imports.ParseMapping(mb)
	if err != nil {
		return imports.Summary{}, err
	}
	src, _, err := admin.CreateSource(l.ctx, l.s.store, source, l.now)
	if err != nil {
		return imports.Summary{}, err
	}
	in, err := imports.FileInput(path)
	if err != nil {
		return imports.Summary{}, err
	}
	r := &imports.Runner{Source: source, Mapping: m, Sink: imports.CommitSink{Committer: l.s.committer, SourceID: src.ID, Limits: l.s.Config.Limits},
		RejectsPath: strings.TrimSuffix(path, ".csv") + ".rejects.csv"}
	return r.Run(l.ctx, []imports.Input{in})
}

// waitIndexed waits until the indexer has applied the whole log.
func (s *Server) waitIndexed(ctx context.Context) error {
	for {
		head, err := s.store.LogHead(ctx)
		if err != nil {
			return err
		}
		if s.indexer.Cursor() >= head {
			return s.audiences.WaitFor(ctx, head)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitBackfills waits until every definition's backfill has finished.
func (s *Server) waitBackfills(ctx context.Context) error {
	for {
		pending := false
		for _, kind := range []string{kith.KindAudience, kith.KindComputedTrait} {
			for _, d := range s.audiences.Definitions(kind) {
				if d.Backfill.Error != "" {
					return fmt.Errorf("demo: backfill of %s: %s", d.Key, d.Backfill.Error)
				}
				pending = pending || d.Backfill.State != "done"
			}
		}
		if !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// scoreIdentity resolves every identifier of the ground truth to its
// profile and scores the clustering: pairwise precision and recall of
// "these two identifiers belong to the same person".
func scoreIdentity(ctx context.Context, s *Server, truthPath string) (demo.Scores, int, int, error) {
	f, err := os.Open(truthPath)
	if err != nil {
		return demo.Scores{}, 0, 0, err
	}
	defer f.Close()
	secret, err := s.store.Secret(ctx)
	if err != nil {
		return demo.Scores{}, 0, 0, err
	}
	keyer := identity.NewKeyer(secret)
	r := csv.NewReader(bufio.NewReader(f))
	if _, err := r.Read(); err != nil {
		return demo.Scores{}, 0, 0, err
	}
	var (
		assign   []demo.Assignment
		notFound int
		persons  []string
		keys     []kith.IdentKey
	)
	profiles := map[string]bool{}
	resolve := func() error {
		owners, err := s.store.LookupIdentifiers(ctx, keys)
		if err != nil {
			return err
		}
		for i, k := range keys {
			o, ok := owners[k]
			if !ok {
				notFound++
				continue
			}
			assign = append(assign, demo.Assignment{Person: persons[i], Cluster: o.Canonical})
			profiles[o.Canonical] = true
		}
		persons, keys = persons[:0], keys[:0]
		return nil
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return demo.Scores{}, 0, 0, err
		}
		persons = append(persons, rec[0])
		keys = append(keys, keyer.Key(identity.Identifier{Type: rec[1], Value: rec[2]}))
		if len(keys) == 1000 {
			if err := resolve(); err != nil {
				return demo.Scores{}, 0, 0, err
			}
		}
	}
	if err := resolve(); err != nil {
		return demo.Scores{}, 0, 0, err
	}
	return demo.Score(assign), notFound, len(profiles), nil
}

func printDemo(w io.Writer, r *demoResult, url, token string) {
	ds := r.Dataset
	fmt.Fprintf(w, "\nThe demo is ready (%d customers, seed %d, loaded in %.1f s).\n", r.Customers, r.Seed, r.Seconds)
	fmt.Fprintf(w, "  identity resolution against the ground truth (pairwise, %d identifiers of %d people in %d profiles):\n",
		r.Identity.AfterMatching.Records, r.Identity.AfterMatching.People, r.Identity.Profiles)
	fmt.Fprintf(w, "    exact identifiers:       precision %.4f  recall %.4f  F1 %.4f\n", r.Identity.ExactIDs.Precision, r.Identity.ExactIDs.Recall, r.Identity.ExactIDs.F1)
	fmt.Fprintf(w, "    + probabilistic matching: precision %.4f  recall %.4f  F1 %.4f\n", r.Identity.AfterMatching.Precision, r.Identity.AfterMatching.Recall, r.Identity.AfterMatching.F1)
	fmt.Fprintf(w, "  dataset: %d people, %d live events, %d CRM contacts, %d order lines, %d e-mail events\n",
		ds.People, ds.Events[demo.SourceWebshop]+ds.Events[demo.SourceApp], ds.Rows[demo.FileCRMContacts], ds.Rows[demo.FileOrders], ds.Rows[demo.FileEmailEngagement])
	keys := make([]string, 0, len(r.Audiences))
	for k := range r.Audiences {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "  audiences:")
	for _, k := range keys {
		fmt.Fprintf(w, " %s=%d", k, r.Audiences[k])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\n  URL:         %s\n  admin token: %s\n\n", url, token)
	fmt.Fprintf(w, "Open %s in a browser and sign in with that token: the console finds any customer and shows them on one page.\n\n", url)
	fmt.Fprintf(w, "Try:\n  export KITH_SERVER=%s KITH_TOKEN=%s\n", url, token)
	fmt.Fprintf(w, "  go run ./cmd/kith stats\n  go run ./cmd/kith audience list\n  go run ./cmd/kith insights runs\n")
	if r.Sample != "" {
		fmt.Fprintf(w, "  curl -H \"Authorization: Bearer $KITH_TOKEN\" %s/v1/profiles/%s/traits\n", url, r.Sample)
	}
	fmt.Fprintln(w, "Ctrl-C stops the server; running the same command again serves the same data.")
}
