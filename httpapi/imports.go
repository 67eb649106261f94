package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/imports"
	"github.com/kithcdp/kith/mappings"
)

// maxImportBatchBytes bounds one POST /v1/imports/batch body: an import
// sends larger batches than an SDK (orders with many line items), each
// message still within the event size limit.
const maxImportBatchBytes = 16 << 20

// maxUploadRejects bounds the rejected rows an upload's answer lists; the
// counts stay exact beyond it. `kith import` writes every one to a file.
const maxUploadRejects = 10000

// uploadLimits bound each file the server reads from an upload (POST
// /v1/imports and POST /v1/dmp/audiences): at most 1 GiB once
// decompressed (a gzip bomb stops there, ETOOLARGE, naming the line) and
// 10 million rows, each of at most 1 MiB (a longer row is a rejected row).
// Larger files go through `kith import`, which reads them on the client.
var uploadLimits = imports.Limits{MaxRowBytes: imports.DefaultMaxRowBytes, MaxInputBytes: 1 << 30, MaxRows: 10_000_000}

func (s *Server) importRoutes() {
	s.route("POST /v1/imports/batch", kith.ScopeImportsWrite, s.handleImportBatch)
	s.route("POST /v1/imports", kith.ScopeImportsWrite, s.handleImportUpload)
	s.route("GET /v1/imports/mappings", kith.ScopeImportsWrite, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"data": mappings.Names()})
	})
}

// importSource finds the enabled source called name. When there is none
// it creates it if the request's token may create sources (sources:write;
// imports:write alone imports into existing sources) and refuses the
// import otherwise, naming the source. created says whether it was.
func (s *Server) importSource(ctx context.Context, name string) (src kith.Source, created bool, err error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return src, false, kith.Errorf(kith.EINVALID, "an import needs a source name")
	}
	s.importMu.Lock()
	defer s.importMu.Unlock()
	list, err := s.store.Sources(ctx)
	if err != nil {
		return src, false, err
	}
	for _, x := range list {
		if x.Name == name {
			if x.Disabled {
				return x, false, kith.Errorf(kith.EFORBIDDEN, "source %q is disabled", name)
			}
			return x, false, nil
		}
	}
	if tok := tokenIn(ctx); !tok.HasScope(kith.ScopeSourcesWrite) {
		return src, false, kith.Errorf(kith.ENOTFOUND, "there is no source %q, and token %q may not create one (that takes scope %s): create it first (kith source create), or import with a token that may", name, tok.Name, kith.ScopeSourcesWrite)
	}
	src, _, err = admin.CreateSource(ctx, s.store, name, s.cfg.Now())
	if err != nil {
		return src, false, err
	}
	s.invalidateSources()
	return src, true, nil
}

// importSink stores an import's messages under one source through the
// group committer, as live events.
type importSink struct {
	s   *Server
	src kith.Source
	ip  string
	// failed records a store failure (Sends run concurrently), which an
	// upload reports as such rather than as a problem with the file.
	failed *atomic.Pointer[error]
}

func (k importSink) Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]imports.Outcome, error) {
	out, err := imports.CommitSink{Committer: k.s.committer, SourceID: k.src.ID, Limits: k.s.cfg.Limits, Now: k.s.cfg.Now, IP: k.ip}.Send(ctx, msgs, rejected)
	if err != nil && k.failed != nil {
		k.failed.CompareAndSwap(nil, &err)
	}
	return out, err
}

type importBatchRequest struct {
	Source   string            `json:"source"`
	Batch    []json.RawMessage `json:"batch"`
	Rejected map[string]int64  `json:"rejected"`
}

// handleImportBatch serves POST /v1/imports/batch: messages an import
// built (kith import maps rows on the client), validated as /v1/batch
// items and stored under the named source, with the rows the import
// rejected counted in the source's accounting. The answer gives each
// message's outcome in order.
func (s *Server) handleImportBatch(w http.ResponseWriter, r *http.Request) {
	if s.refuseWhenBehind(w, r) {
		return
	}
	var req importBatchRequest
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxImportBatchBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.error(w, r, kith.Errorf(kith.ETOOLARGE, "an import batch may not exceed %d bytes", maxImportBatchBytes))
			return
		}
		s.error(w, r, kith.Errorf(kith.EINVALID, "invalid JSON body: %v", err))
		return
	}
	if err := imports.CheckRejected(req.Rejected); err != nil {
		s.error(w, r, err)
		return
	}
	src, created, err := s.importSource(r.Context(), req.Source)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out, err := importSink{s: s, src: src, ip: clientIP(r)}.Send(r.Context(), req.Batch, req.Rejected)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"source":  map[string]any{"id": src.ID, "name": src.Name, "created": created},
		"results": out,
	})
}

// handleImportUpload serves POST /v1/imports: a multipart upload of a
// mapping (a "mapping" file part, or the name of a ready-made one in the
// "mapping" field or query parameter) and one or more "file" parts, into
// the source named by the "source" field or query parameter. Parts are
// read as they arrive, so the mapping and source come before the files.
// The answer is the import's summary and its rejected rows.
func (s *Server) handleImportUpload(w http.ResponseWriter, r *http.Request) {
	if s.refuseWhenBehind(w, r) {
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		s.error(w, r, kith.Errorf(kith.EINVALID, "send the files as multipart/form-data: %v", err))
		return
	}
	sourceName := r.URL.Query().Get("source")
	var mapping *imports.Mapping
	if name := r.URL.Query().Get("mapping"); name != "" {
		if mapping, err = readyMapping(name); err != nil {
			s.error(w, r, err)
			return
		}
	}
	var (
		total   imports.Summary
		rejects = []imports.Reject{}
		more    bool
		src     kith.Source
		created bool
		files   int
	)
	total.Reasons = map[string]int64{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.error(w, r, kith.Errorf(kith.EINVALID, "reading the upload: %v", err))
			return
		}
		switch name := part.FormName(); {
		case name == "source":
			sourceName, err = formValue(part)
		case name == "mapping" && part.FileName() == "":
			var v string
			if v, err = formValue(part); err == nil {
				mapping, err = readyMapping(v)
			}
		case name == "mapping":
			var b []byte
			if b, err = io.ReadAll(io.LimitReader(part, 1<<20)); err == nil {
				if mapping, err = imports.ParseMapping(b); err != nil {
					err = kith.Errorf(kith.EINVALID, "%v", err)
				}
			}
		case name == "file":
			if mapping == nil {
				err = kith.Errorf(kith.EINVALID, "the mapping must come before the files in the upload")
				break
			}
			if src.ID == "" {
				if src, created, err = s.importSource(r.Context(), sourceName); err != nil {
					break
				}
			}
			files++
			err = s.importPart(r, part, mapping, src, &total, &rejects, &more)
		default:
			err = kith.Errorf(kith.EINVALID, "unexpected part %q (source, mapping, file)", name)
		}
		part.Close()
		if err != nil {
			s.error(w, r, err)
			return
		}
	}
	if files == 0 {
		s.error(w, r, kith.Errorf(kith.EINVALID, "the upload has no file part"))
		return
	}
	total.Files = files
	writeJSON(w, http.StatusOK, map[string]any{
		"source":           map[string]any{"id": src.ID, "name": src.Name, "created": created},
		"summary":          total,
		"rejects":          rejects,
		"rejectsTruncated": more,
	})
}

func (s *Server) importPart(r *http.Request, part *multipart.Part, m *imports.Mapping, src kith.Source, total *imports.Summary, rejects *[]imports.Reject, more *bool) error {
	name := part.FileName()
	if name == "" {
		name = "upload.csv"
	}
	used := false
	in := imports.Input{Name: name, Open: func() (io.ReadCloser, error) {
		if used {
			return nil, fmt.Errorf("an uploaded file can be read once")
		}
		used = true
		return io.NopCloser(part), nil
	}}
	var failed atomic.Pointer[error]
	run := &imports.Runner{Source: src.Name, Mapping: m, Sink: importSink{s: s, src: src, ip: clientIP(r), failed: &failed}, Limits: uploadLimits,
		OnReject: func(x imports.Reject) {
			if len(*rejects) < maxUploadRejects {
				if len(x.Row) > 1000 {
					x.Row = x.Row[:1000] + "…"
				}
				*rejects = append(*rejects, x)
			} else {
				*more = true
			}
		}}
	sum, err := run.Run(r.Context(), []imports.Input{in})
	total.Read += sum.Read
	total.Accepted += sum.Accepted
	total.Duplicates += sum.Duplicates
	total.Rejected += sum.Rejected
	total.Messages += sum.Messages
	for k, v := range sum.Reasons {
		total.Reasons[k] += v
	}
	if err != nil {
		if f := failed.Load(); f != nil {
			return *f
		}
		code := kith.EINVALID
		if le := (*imports.LimitError)(nil); errors.As(err, &le) {
			code = kith.ETOOLARGE
		}
		return kith.Errorf(code, "%v (rows before the error were imported: %d accepted, %d rejected)", err, total.Accepted, total.Rejected)
	}
	return nil
}

func formValue(p *multipart.Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(p, 4096))
	return strings.TrimSpace(string(b)), err
}

func readyMapping(name string) (*imports.Mapping, error) {
	b, err := mappings.Mapping(name)
	if err != nil {
		return nil, kith.Errorf(kith.EINVALID, "%v", err)
	}
	m, err := imports.ParseMapping(b)
	if err != nil {
		return nil, fmt.Errorf("ready-made mapping %s: %w", name, err)
	}
	return m, nil
}
