package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/insights"
	"github.com/kithcdp/kith/rfm"
)

// InsightRunner starts insight runs (insights.Runner).
type InsightRunner interface {
	Start(ctx context.Context, trigger string, cfg insights.Config) (kith.InsightRun, error)
	RunNow(ctx context.Context, trigger string, cfg insights.Config) (kith.InsightRun, error)
	RunValidation(ctx context.Context, cfg insights.Config, holdoutDays int) (kith.InsightRun, error)
}

// runRequest is the body of POST /v1/insights/runs and
// /v1/insights/validations: settings that override the server's insight
// configuration for this run.
type runRequest struct {
	Model          *string  `json:"model"`
	AnalysisDate   string   `json:"analysisDate"`
	HorizonDays    *int     `json:"horizonDays"`
	CLVDays        *int     `json:"clvDays"`
	AnnualDiscount *float64 `json:"annualDiscount"`
	TopN           *int     `json:"topN"`
	MinSupport     *float64 `json:"minSupport"`
	MinConfidence  *float64 `json:"minConfidence"`
	// RFMRules replace the named RFM segments (first match wins).
	RFMRules []rfm.Rule `json:"rfmRules"`
	// Wait makes the call answer when the run has finished.
	Wait        bool `json:"wait"`
	HoldoutDays int  `json:"holdoutDays"`
}

func (s *Server) insightConfig(r *http.Request, req *runRequest) (insights.Config, error) {
	if r.ContentLength != 0 {
		if err := decodeJSON(r, req); err != nil {
			return insights.Config{}, err
		}
	}
	cfg := s.cfg.InsightConfig
	if req.Model != nil {
		cfg.Model = *req.Model
	}
	if req.AnalysisDate != "" {
		d, err := time.Parse(time.DateOnly, req.AnalysisDate)
		if err != nil {
			return cfg, kith.Errorf(kith.EINVALID, "analysisDate %q is not a date (YYYY-MM-DD)", req.AnalysisDate)
		}
		cfg.AnalysisDate = d
	}
	for _, o := range []struct {
		dst *int
		src *int
	}{{&cfg.HorizonDays, req.HorizonDays}, {&cfg.CLVDays, req.CLVDays}, {&cfg.TopN, req.TopN}} {
		if o.src != nil {
			*o.dst = *o.src
		}
	}
	for _, o := range []struct {
		dst *float64
		src *float64
	}{{&cfg.AnnualDiscount, req.AnnualDiscount}, {&cfg.MinSupport, req.MinSupport}, {&cfg.MinConfidence, req.MinConfidence}} {
		if o.src != nil {
			*o.dst = *o.src
		}
	}
	if req.RFMRules != nil {
		cfg.RFMRules = req.RFMRules
	}
	if err := cfg.Validate(); err != nil {
		return cfg, kith.Errorf(kith.EINVALID, "%v", err)
	}
	return cfg, nil
}

func (s *Server) handleStartRun(w http.ResponseWriter, r *http.Request) {
	var req runRequest
	cfg, err := s.insightConfig(r, &req)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if req.HoldoutDays != 0 {
		s.error(w, r, kith.Errorf(kith.EINVALID, "holdoutDays belongs to POST /v1/insights/validations"))
		return
	}
	if req.Wait {
		run, err := s.cfg.Insights.RunNow(r.Context(), insights.TriggerAPI, cfg)
		if err != nil && run.ID == "" {
			s.error(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, run)
		return
	}
	// The run outlives the request.
	run, err := s.cfg.Insights.Start(context.WithoutCancel(r.Context()), insights.TriggerAPI, cfg)
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/insights/runs/"+run.ID)
	writeJSON(w, http.StatusAccepted, run)
}

func (s *Server) handleValidate(w http.ResponseWriter, r *http.Request) {
	var req runRequest
	cfg, err := s.insightConfig(r, &req)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if req.HoldoutDays <= 0 {
		s.error(w, r, kith.Errorf(kith.EINVALID, "holdoutDays must be a positive number of days"))
		return
	}
	run, err := s.cfg.Insights.RunValidation(r.Context(), cfg, req.HoldoutDays)
	if err != nil && run.ID == "" {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) handleListRuns(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 20)
	if err != nil {
		s.error(w, r, err)
		return
	}
	runs, err := s.store.InsightRuns(r.Context(), limit)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// The list stays small: reports are fetched one run at a time.
	for i := range runs {
		runs[i].Report = nil
	}
	if runs == nil {
		runs = []kith.InsightRun{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": runs})
}

func (s *Server) handleGetRun(w http.ResponseWriter, r *http.Request) {
	run, err := s.store.InsightRun(r.Context(), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// handleRunChart serves a validation chart as SVG.
func (s *Server) handleRunChart(w http.ResponseWriter, r *http.Request) {
	run, err := s.store.InsightRun(r.Context(), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	var rep struct {
		Validation *struct {
			Charts map[string]string `json:"charts"`
		} `json:"validation"`
	}
	if len(run.Report) > 0 {
		if err := json.Unmarshal(run.Report, &rep); err != nil {
			s.error(w, r, err)
			return
		}
	}
	name := r.PathValue("name")
	if rep.Validation == nil || rep.Validation.Charts[name] == "" {
		s.error(w, r, kith.Errorf(kith.ENOTFOUND, "run %s has no chart %q", run.ID, name))
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write([]byte(rep.Validation.Charts[name]))
}
