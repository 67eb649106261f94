package imports

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kithcdp/kith"
)

// Outcome statuses a Sink reports per message.
const (
	StatusAccepted  = "accepted"
	StatusDuplicate = "duplicate"
	StatusRejected  = "rejected"
	// StatusSuppressed: dropped, the message names an erased person who
	// asked not to be tracked again.
	StatusSuppressed = "suppressed"
)

// Outcome is what became of one message sent to a Sink.
type Outcome struct {
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Sink stores imported messages under the import's source. Send returns
// one Outcome per message, in order, once the accepted ones are durable.
// rejected counts the rows the import itself rejected since the previous
// Send, by reason, so that the source's accounting shows them too.
//
// The rejected counts always pass CheckRejected: the Runner splits larger
// counts over several Sends.
type Sink interface {
	Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]Outcome, error)
}

// MaxRejectedPerSend is the most rows one Send reports as rejected by the
// import, all reasons together. A server cannot check a client's counts,
// only bound them: no batch may claim more rows than a batch can account
// for, so the counters that add them up stay far from overflowing.
const MaxRejectedPerSend = 100_000

// importReasons are the reasons the import itself rejects rows for: the
// only ones a Send may report counts of.
var importReasons = []string{ReasonMalformedRow, ReasonRowTooLarge, ReasonMissingField, ReasonInvalidNumber,
	ReasonInvalidInteger, ReasonInvalidBoolean, ReasonInvalidTime, ReasonInvalidValue, ReasonMissingKey,
	ReasonDuplicateKey, ReasonInconsistent, ReasonGroupTooLarge}

// CheckRejected verifies the rejected counts of one Send, as a server
// receives them from a client: each reason one the import gives, each
// count at least 0, and at most MaxRejectedPerSend in all. The error is a
// *kith.Error (EINVALID) naming the offending entry.
func CheckRejected(counts map[string]int64) error {
	var total int64
	for _, reason := range slices.Sorted(maps.Keys(counts)) {
		field := fmt.Sprintf("rejected[%q]", reason)
		if len(reason) > 64 {
			field = fmt.Sprintf("rejected[%q…]", reason[:64])
		}
		if err := kith.CheckText(field, reason); err != nil {
			return err
		}
		if !slices.Contains(importReasons, reason) {
			return kith.Errorf(kith.EINVALID, "%s: not a reason an import rejects rows for (%s)", field, strings.Join(importReasons, ", "))
		}
		n := counts[reason]
		if n < 0 || n > MaxRejectedPerSend {
			return kith.Errorf(kith.EINVALID, "%s: %d is not a count of rows between 0 and %d", field, n, MaxRejectedPerSend)
		}
		if total += n; total > MaxRejectedPerSend {
			return kith.Errorf(kith.EINVALID, "rejected: %d rows or more in one batch, more than the %d one batch may report", total, MaxRejectedPerSend)
		}
	}
	return nil
}

// splitRejected divides rejected counts into parts that each pass
// CheckRejected's bound, the first part first.
func splitRejected(counts map[string]int64) []map[string]int64 {
	parts := []map[string]int64{{}}
	room := int64(MaxRejectedPerSend)
	for _, reason := range slices.Sorted(maps.Keys(counts)) {
		for n := counts[reason]; n > 0; {
			if room == 0 {
				parts, room = append(parts, map[string]int64{}), MaxRejectedPerSend
			}
			k := min(n, room)
			parts[len(parts)-1][reason] += k
			n, room = n-k, room-k
		}
	}
	return parts
}

// Input is one file to import.
type Input struct {
	// Name is shown in summaries and the rejects file; its base name is
	// part of every message id.
	Name    string
	Open    func() (io.ReadCloser, error)
	Size    int64 // bytes, for progress; 0 if unknown
	ModTime time.Time
}

// FileInput is an Input reading a file on disk.
func FileInput(path string) (Input, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Input{}, fmt.Errorf("import: %w", err)
	}
	if st.IsDir() {
		return Input{}, fmt.Errorf("import: %s is a directory", path)
	}
	return Input{
		Name:    path,
		Open:    func() (io.ReadCloser, error) { return os.Open(path) },
		Size:    st.Size(),
		ModTime: st.ModTime().UTC(),
	}, nil
}

// Summary counts rows: every row read is accepted or rejected. Duplicates
// are accepted rows whose message was already stored (a repeated import).
type Summary struct {
	Files      int              `json:"files"`
	Read       int64            `json:"read"`
	Accepted   int64            `json:"accepted"`
	Duplicates int64            `json:"duplicates"`
	Rejected   int64            `json:"rejected"`
	Messages   int64            `json:"messages"`
	Reasons    map[string]int64 `json:"reasons"`
	// Resumed is the line an interrupted import continued after (0 when
	// it started from the beginning), in the file ResumedFile.
	Resumed     int    `json:"resumed,omitempty"`
	ResumedFile string `json:"resumedFile,omitempty"`
}

// Check verifies the promise of an import: read = accepted + rejected.
func (s Summary) Check() error {
	if s.Read != s.Accepted+s.Rejected {
		return fmt.Errorf("import: %d rows read but %d accepted + %d rejected", s.Read, s.Accepted, s.Rejected)
	}
	return nil
}

// Reject is one rejected row as the rejects file records it.
type Reject struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Row     string `json:"row"`
}

// RejectsHeader is the header row of a rejects file.
var RejectsHeader = []string{"file", "line", "reason", "message", "row"}

// Progress is reported after every batch.
type Progress struct {
	File      string
	FileIndex int // 0-based
	Files     int
	// Done and Total are bytes of input (as stored, so compressed bytes
	// for a gzip file) over all inputs; Total is 0 if a size is unknown.
	Done, Total int64
	Summary     Summary
}

// Runner imports inputs with one mapping into one source.
type Runner struct {
	Source  string
	Mapping *Mapping
	Sink    Sink
	// RejectsPath is the CSV file rejected rows are written to; empty for
	// none (OnReject still sees them).
	RejectsPath string
	// StatePath records progress after every batch so that an interrupted
	// import resumes; empty disables resuming. It is removed when the
	// import finishes. While an import runs it holds a lock on its
	// rejects file (or on StatePath+".lock"): a second import with the
	// same files is refused (ErrLocked).
	StatePath string
	// Restart ignores a saved resume state: the import starts from the
	// beginning.
	Restart bool
	// OnReject, if set, is called for every rejected row.
	OnReject func(Reject)
	// OnProgress, if set, is called after every batch.
	OnProgress func(Progress)
	// OnResume, if set, is told where an interrupted import continues.
	OnResume func(file string, line int)
	// BatchSize is the number of messages per Send (default 500).
	BatchSize int
	// Concurrency is the number of Sends in flight (default 4).
	Concurrency int
	// Limits bound what reading each input may cost. The zero value reads
	// inputs of any size with rows of up to DefaultMaxRowBytes; a server
	// reading uploads sets them all.
	Limits Limits
}

// pendingMsg is a built message waiting for its outcome, with the rows it
// was built from (all accepted or rejected together).
type pendingMsg struct {
	msg  json.RawMessage
	rows []row
}

// batch is a Send's worth of messages plus the rows the mapping rejected
// since the previous batch, in input order.
type batch struct {
	file     int
	name     string
	msgs     []pendingMsg
	rejected []Reject
	lastLine int   // every row up to it is in this or an earlier batch
	done     int64 // input bytes consumed
	bytes    int   // size of msgs
}

// Run imports the inputs in order and returns the summary. An error means
// the import stopped (a file that cannot be read, a mapping that does not
// fit the header, the sink failing); with StatePath set, running it again
// resumes where the last completed batch ended.
func (r *Runner) Run(ctx context.Context, inputs []Input) (Summary, error) {
	if r.BatchSize <= 0 {
		r.BatchSize = 500
	}
	if r.Concurrency <= 0 {
		r.Concurrency = 4
	}
	bases := map[string]string{}
	for _, in := range inputs {
		b := filepath.Base(in.Name)
		if other, dup := bases[b]; dup {
			return Summary{}, fmt.Errorf("import: %s and %s have the same name, which message ids are derived from; import them into different sources or rename one", other, in.Name)
		}
		bases[b] = in.Name
	}
	held, err := r.lock()
	if err != nil {
		return Summary{}, err
	}
	if held != nil {
		defer held.Close()
	}
	st := r.freshState(inputs)
	if r.StatePath != "" && r.Restart {
		if err := os.Remove(r.StatePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return Summary{}, fmt.Errorf("import: removing the resume file: %w", err)
		}
	}
	if r.StatePath != "" {
		if old, ok := loadState(r.StatePath); ok && old.matches(st) {
			st = old
			if r.OnResume != nil {
				r.OnResume(inputs[st.File].Name, st.Line)
			}
		}
	}
	rej, err := openRejects(r.RejectsPath, st.RejectsSize)
	if err != nil {
		return st.Summary, err
	}
	defer rej.close()
	sum := st.Summary
	if st.Line > 0 {
		sum.Resumed, sum.ResumedFile = st.Line, inputs[st.File].Name
	}
	if sum.Reasons == nil {
		sum.Reasons = map[string]int64{}
	}
	sum.Files = len(inputs)
	var total, before int64
	for _, in := range inputs {
		total += in.Size
	}
	for i := 0; i < st.File; i++ {
		before += inputs[i].Size
	}
	for fi := st.File; fi < len(inputs); fi++ {
		skip := 0
		if fi == st.File {
			skip = st.Line
		}
		err := r.runFile(ctx, inputs, fi, skip, rej, &sum, func(b batch) error {
			st.File, st.Line, st.Summary = b.file, b.lastLine, sum
			size, err := rej.flush()
			if err != nil {
				return err
			}
			st.RejectsSize = size
			if r.StatePath != "" {
				if err := st.save(r.StatePath); err != nil {
					return err
				}
			}
			if r.OnProgress != nil {
				r.OnProgress(Progress{File: inputs[fi].Name, FileIndex: fi, Files: len(inputs),
					Done: before + b.done, Total: total, Summary: sum})
			}
			return nil
		})
		if err != nil {
			return sum, err
		}
		before += inputs[fi].Size
		st.File, st.Line = fi+1, 0
	}
	if _, err := rej.flush(); err != nil {
		return sum, err
	}
	if r.StatePath != "" {
		if err := os.Remove(r.StatePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return sum, fmt.Errorf("import: removing the resume file: %w", err)
		}
	}
	return sum, sum.Check()
}

// runFile reads one input, builds batches on one goroutine and sends them
// in order on this one.
func (r *Runner) runFile(ctx context.Context, inputs []Input, fi, skip int, rej *rejectsFile, sum *Summary, checkpoint func(batch) error) error {
	in := inputs[fi]
	f, err := in.Open()
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	cr := &countingReader{r: f}
	rows, err := openRows(r.Mapping, in.Name, cr, r.Limits)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	b, err := newBuilder(r.Mapping, r.Source, in.Name, rows.header())
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan batch, 2)
	readErr := make(chan error, 1)
	go func() {
		defer close(batches)
		readErr <- r.produce(ctx, fi, in.Name, rows, b, skip, cr, batches)
	}()
	// Up to Concurrency batches are in flight at once (the server's group
	// commit shares one fsync among them); their outcomes are accounted
	// for, and checkpointed, strictly in input order.
	type inflight struct {
		bt   batch
		outs []Outcome
		err  error
		done chan struct{}
	}
	queue := make(chan *inflight, r.Concurrency)
	slots := make(chan struct{}, r.Concurrency)
	stopped := false // the dispatcher gave up on batches: cancelled
	go func() {
		defer close(queue)
		for bt := range batches {
			select {
			case slots <- struct{}{}: // freed once the batch is accounted for
			case <-ctx.Done():
				stopped = true
				return
			}
			f := &inflight{bt: bt, done: make(chan struct{})}
			go func() {
				defer close(f.done)
				f.outs, f.err = r.deliver(ctx, f.bt)
			}()
			select {
			case queue <- f:
			case <-ctx.Done():
				<-f.done
				stopped = true
				return
			}
		}
	}()
	var failed error
	for f := range queue {
		<-f.done
		if failed != nil {
			<-slots
			continue
		}
		err := f.err
		if err == nil {
			err = r.account(f.bt, f.outs, rej, sum)
		}
		if err == nil {
			err = checkpoint(f.bt)
		}
		<-slots
		if err != nil {
			failed = err
			cancel()
		}
	}
	if failed != nil {
		<-readErr
		return failed
	}
	if stopped { // set before queue was closed
		<-readErr
		return fmt.Errorf("import: %w", context.Cause(ctx))
	}
	return <-readErr
}

// produce reads rows, groups and builds them, and hands out batches.
func (r *Runner) produce(ctx context.Context, fi int, name string, rows rowReader, b *builder, skip int, cr *countingReader, out chan<- batch) error {
	var (
		cur   = batch{file: fi, name: name}
		group []row
		gkey  string
		// held are rows that could not be used (unreadable, no key)
		// while a group was open: whether they belonged to it is known
		// only when the next row comes. They are rejected when the group
		// is flushed, so a checkpoint never falls inside a group (but for
		// one rejected for its size: see over); and if the group goes on
		// after one, the group is rejected as a whole rather than stored
		// without that row.
		held    []Reject
		tainted bool
		// gbytes counts the open group's rows and the rows held with it:
		// a group becomes one message, so past maxGroupBytes it is
		// rejected (over says why) and its further rows with it, as they
		// come, rather than held in memory. A checkpoint may then fall
		// inside it; resuming there re-reads the rows before it, which
		// reject the group again at the same row.
		gbytes int
		over   *reject
		// seen holds a hash of every key used in this file, so that a key
		// repeated further down (an order whose rows are not together, a
		// contact listed twice) is rejected rather than silently merged
		// into the first as a duplicate. It costs about 40 bytes per row.
		seen = map[uint64]int{}
		seed = maphash.MakeSeed()
	)
	rejectRows := func(rs []row, why *reject) {
		for _, x := range rs {
			cur.rejected = append(cur.rejected, Reject{File: name, Line: x.line, Reason: why.Reason, Message: why.Message, Row: x.raw})
			cur.bytes += len(x.raw)
		}
	}
	// release keeps a group's rows and held rows after the skip point as
	// rejected (the rows with why) and moves the checkpoint past them.
	release := func(rs []row, hs []Reject, why *reject) {
		for _, x := range rs {
			if x.line > skip && why != nil {
				rejectRows([]row{x}, why)
			}
			cur.lastLine = max(cur.lastLine, x.line)
		}
		for _, x := range hs {
			if x.Line > skip {
				cur.rejected = append(cur.rejected, x)
				cur.bytes += len(x.Row)
			}
			cur.lastLine = max(cur.lastLine, x.Line)
		}
	}
	emit := func() error {
		cur.done = cr.n
		select {
		case out <- cur:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur = batch{file: fi, name: name, lastLine: cur.lastLine}
		return nil
	}
	full := func() bool {
		return len(cur.msgs) >= r.BatchSize || cur.bytes >= maxBatchBytes || len(cur.rejected) >= 4*r.BatchSize
	}
	flushGroup := func() error {
		rs, hs, taint := group, held, tainted
		group, held, tainted = nil, nil, false
		if len(rs) > 0 && rs[0].line > skip {
			h := maphash.String(seed, gkey)
			if at, dup := seen[h]; dup && at != rs[0].line {
				rejectRows(rs, rejectf(ReasonDuplicateKey, "the key %q was already used at line %d of this file", gkey, at))
			} else if taint {
				seen[h] = rs[0].line
				rejectRows(rs, rejectf(ReasonInconsistent, "rows of %s %q are interrupted by a row that could not be read (line %d)", b.m.GroupBy, gkey, hs[0].Line))
			} else {
				seen[h] = rs[0].line
				if msg, why := b.build(rs, gkey); why != nil {
					rejectRows(rs, why)
				} else {
					cur.bytes += len(msg)
					for i := range rs {
						// Only the line and the text are needed now,
						// should the server reject the message.
						rs[i].fields, rs[i].obj = nil, nil
						cur.bytes += len(rs[i].raw)
					}
					cur.msgs = append(cur.msgs, pendingMsg{msg: msg, rows: rs})
				}
			}
		}
		release(rs, hs, nil)
		if full() {
			return emit()
		}
		return nil
	}
	unusable := func(x row, why *reject) error {
		if len(group) > 0 && b.m.GroupBy != "" {
			held = append(held, Reject{File: name, Line: x.line, Reason: why.Reason, Message: why.Message, Row: x.raw})
			if gbytes += len(x.raw); gbytes > maxGroupBytes {
				// So many unreadable rows after a group: it has ended.
				return flushGroup()
			}
			return nil
		}
		if x.line > skip {
			rejectRows([]row{x}, why)
		}
		cur.lastLine = max(cur.lastLine, x.line)
		if full() {
			return emit()
		}
		return nil
	}
	for {
		x, err := rows.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// What was read before is sent and accounted for; not an
			// open group of rows, which may have gone on.
			if b.m.GroupBy == "" {
				if ferr := flushGroup(); ferr != nil {
					return ferr
				}
			}
			if len(cur.msgs) > 0 || len(cur.rejected) > 0 {
				if eerr := emit(); eerr != nil {
					return eerr
				}
			}
			return fmt.Errorf("import: reading %s: %w", name, err)
		}
		if x.bad != nil {
			if err := unusable(x, x.bad); err != nil {
				return err
			}
			continue
		}
		key, why := b.key(&x)
		if why != nil {
			if err := unusable(x, why); err != nil {
				return err
			}
			continue
		}
		if b.m.GroupBy != "" && key == gkey && over != nil {
			if err := unusable(x, over); err != nil {
				return err
			}
			continue
		}
		if b.m.GroupBy != "" && len(group) > 0 && key == gkey {
			group = append(group, x)
			tainted = tainted || len(held) > 0
			if gbytes += len(x.raw); gbytes > maxGroupBytes {
				over = rejectf(ReasonGroupTooLarge, "the rows of %s %q come to more than %d bytes, more than one message may hold", b.m.GroupBy, gkey, maxGroupBytes)
				if h := maphash.String(seed, gkey); seen[h] == 0 {
					seen[h] = group[0].line
				}
				release(group, held, over)
				group, held, tainted = nil, nil, false
				if full() {
					if err := emit(); err != nil {
						return err
					}
				}
			}
			continue
		}
		over = nil
		if err := flushGroup(); err != nil {
			return err
		}
		if x.line <= skip {
			// Skipped rows still claim their keys, so a repeat after the
			// resume point is caught as it was before the interruption.
			if _, dup := seen[maphash.String(seed, key)]; !dup {
				seen[maphash.String(seed, key)] = x.line
			}
		}
		group, gkey, gbytes = []row{x}, key, len(x.raw)
	}
	if err := flushGroup(); err != nil {
		return err
	}
	if len(cur.msgs) > 0 || len(cur.rejected) > 0 || cur.lastLine > skip {
		return emit()
	}
	return nil
}

// maxBatchBytes bounds the messages of one Send (the admin API takes at
// most 16 MiB per request), and with the rows they were built from and the
// rejected rows, the memory a batch holds.
const maxBatchBytes = 4 << 20

// maxGroupBytes bounds the rows of one group: they become one message,
// which must fit in one Send.
const maxGroupBytes = maxBatchBytes

// deliver sends one batch's messages and the counts of the rows the
// mapping rejected.
func (r *Runner) deliver(ctx context.Context, bt batch) ([]Outcome, error) {
	counts := map[string]int64{}
	for _, x := range bt.rejected {
		counts[x.Reason]++
	}
	msgs := make([]json.RawMessage, len(bt.msgs))
	for i, p := range bt.msgs {
		msgs[i] = p.msg
	}
	if len(msgs) == 0 && len(counts) == 0 {
		return nil, nil
	}
	parts := splitRejected(counts)
	outs, err := r.Sink.Send(ctx, msgs, parts[0])
	if err != nil {
		return nil, fmt.Errorf("import: sending %d messages: %w", len(msgs), err)
	}
	if len(outs) != len(msgs) {
		return nil, fmt.Errorf("import: the server answered %d outcomes for %d messages", len(outs), len(msgs))
	}
	for _, p := range parts[1:] {
		if _, err := r.Sink.Send(ctx, nil, p); err != nil {
			return nil, fmt.Errorf("import: sending the counts of rejected rows: %w", err)
		}
	}
	return outs, nil
}

// account counts every row of a delivered batch and writes its rejects.
func (r *Runner) account(bt batch, outs []Outcome, rej *rejectsFile, sum *Summary) error {
	all := bt.rejected
	for i, o := range outs {
		p := bt.msgs[i]
		n := int64(len(p.rows))
		switch o.Status {
		case StatusAccepted, StatusDuplicate:
			sum.Read += n
			sum.Accepted += n
			sum.Messages++
			if o.Status == StatusDuplicate {
				sum.Duplicates += n
			}
		case StatusRejected:
			for _, x := range p.rows {
				all = append(all, Reject{File: bt.name, Line: x.line, Reason: o.Reason, Message: o.Message, Row: x.raw})
			}
		case StatusSuppressed:
			// The row is about a person who was erased and asked not to
			// be tracked again: it is dropped, and not repeated in the
			// rejects file either.
			for _, x := range p.rows {
				all = append(all, Reject{File: bt.name, Line: x.line, Reason: "suppressed", Message: "the row names a person who was erased and suppressed; it is not imported"})
			}
		default:
			return fmt.Errorf("import: unknown outcome %q", o.Status)
		}
	}
	// Rejects go out in line order, whichever stage rejected them.
	sortRejects(all)
	for _, x := range all {
		sum.Read++
		sum.Rejected++
		sum.Reasons[x.Reason]++
		if err := rej.write(x); err != nil {
			return err
		}
		if r.OnReject != nil {
			r.OnReject(x)
		}
	}
	return nil
}

func sortRejects(rs []Reject) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Line < rs[j].Line })
}

// rejectsFile appends rejected rows to a CSV file.
type rejectsFile struct {
	f *os.File
	w *csv.Writer
}

// openRejects opens the rejects file: truncated to size when resuming
// (dropping rows written after the last checkpoint, which will be
// rejected again), created afresh otherwise.
func openRejects(path string, size int64) (*rejectsFile, error) {
	if path == "" {
		return &rejectsFile{}, nil
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("import: rejects file: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("import: rejects file: %w", err)
	}
	if st, err := f.Stat(); err != nil || st.Size() < size {
		f.Close()
		return nil, fmt.Errorf("import: the rejects file %s is shorter than when the interrupted import last saved its progress (was it moved or edited?); run again from the beginning (kith import --restart)", path)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("import: rejects file: %w", err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("import: rejects file: %w", err)
	}
	rf := &rejectsFile{f: f, w: csv.NewWriter(f)}
	if size == 0 {
		if err := rf.w.Write(RejectsHeader); err != nil {
			f.Close()
			return nil, err
		}
	}
	return rf, nil
}

func (r *rejectsFile) write(x Reject) error {
	if r.w == nil {
		return nil
	}
	return r.w.Write([]string{x.File, strconv.Itoa(x.Line), x.Reason, x.Message, x.Row})
}

// flush writes buffered rows through and returns the file's size.
func (r *rejectsFile) flush() (int64, error) {
	if r.w == nil {
		return 0, nil
	}
	r.w.Flush()
	if err := r.w.Error(); err != nil {
		return 0, fmt.Errorf("import: rejects file: %w", err)
	}
	// The resume file will record this size: the rows must be on disk
	// before it says so.
	if err := r.f.Sync(); err != nil {
		return 0, fmt.Errorf("import: rejects file: %w", err)
	}
	off, err := r.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, fmt.Errorf("import: rejects file: %w", err)
	}
	return off, nil
}

func (r *rejectsFile) close() {
	if r.f != nil {
		r.w.Flush()
		r.f.Close()
	}
}
