package console

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"regexp"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/chart"
	"github.com/kithcdp/kith/insights"
)

// svgImage inlines an SVG chart in the page, so its bars' tooltips show
// and its text takes the page's colours (light or dark). The chart's own
// stylesheet is allowed by its hash in the page's CSP (see chartStyleHash).
func svgImage(svg []byte, err error) template.HTML {
	if err != nil {
		return ""
	}
	return template.HTML(svg) // the chart package escapes every text it draws
}

// chartStyleHash is the CSP source for the <style> every chart embeds.
var chartStyleHash = func() string {
	svg, err := chart.Bars{Title: "x", Categories: []string{"a"}, Series: []chart.BarSeries{{Name: "x", Values: []float64{1}}}}.SVG()
	if err != nil {
		return ""
	}
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindSubmatch(svg)
	if m == nil {
		return ""
	}
	sum := sha256.Sum256(m[1])
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// insightsPage serves GET /insights: the last runs, the latest report's
// models, RFM segments and cross-sell rules, and the distributions of the
// predictions it wrote (churn risk, the RFM grid).
func (c *Console) insightsPage(w http.ResponseWriter, r *http.Request, s *session) {
	runs, err := c.cfg.Store.InsightRuns(r.Context(), 10)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	data := map[string]any{"Runs": runs}
	var rep *insights.Report
	for _, run := range runs {
		if run.Status == kith.RunFinished && len(run.Report) > 0 {
			rep = &insights.Report{}
			if err := json.Unmarshal(run.Report, rep); err != nil {
				rep = nil
				continue
			}
			data["Run"] = run
			break
		}
	}
	if rep == nil {
		c.render(w, r, s, "insights", data)
		return
	}
	data["Report"] = rep
	// The predictions' distributions, in one scan.
	var churn [10]float64
	var grid [5][5]int
	n := 0
	clvSum, clvN := map[string]float64{}, map[string]float64{}
	err = c.cfg.Store.ScanPredicted(r.Context(), []string{"churn_risk", "rfm_recency", "rfm_frequency", "clv_365d", "rfm_segment"}, func(_ string, t map[string]json.RawMessage) error {
		var seg string
		var clv float64
		if json.Unmarshal(t["rfm_segment"], &seg) == nil && json.Unmarshal(t["clv_365d"], &clv) == nil && seg != "" {
			clvSum[seg] += clv
			clvN[seg]++
		}
		var risk float64
		if json.Unmarshal(t["churn_risk"], &risk) == nil {
			churn[min(int(risk*10), 9)]++
			n++
		}
		var rr, ff int
		if json.Unmarshal(t["rfm_recency"], &rr) == nil && json.Unmarshal(t["rfm_frequency"], &ff) == nil && rr >= 1 && rr <= 5 && ff >= 1 && ff <= 5 {
			grid[5-rr][ff-1]++
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if n > 0 {
		cats := make([]string, 10)
		for i := range cats {
			cats[i] = fmt.Sprintf("%d–%d%%", i*10, i*10+10)
		}
		data["ChurnChart"] = svgImage(chart.Bars{Title: "Customers by churn risk", XLabel: "churn risk", YLabel: "customers", Categories: cats,
			Series: []chart.BarSeries{{Name: "customers", Values: churn[:]}}, Width: 640, Height: 320}.SVG())
	}
	if len(clvN) > 0 {
		// The segments in the report's order, then any others.
		var cats []string
		seen := map[string]bool{}
		for _, seg := range rep.RFM {
			if clvN[seg.Segment] > 0 {
				cats, seen[seg.Segment] = append(cats, seg.Segment), true
			}
		}
		for seg := range clvN {
			if !seen[seg] {
				cats = append(cats, seg)
			}
		}
		avg := make([]float64, len(cats))
		for i, seg := range cats {
			avg[i] = clvSum[seg] / clvN[seg]
		}
		data["RFMChart"] = svgImage(chart.Bars{Title: "Predicted 365-day CLV by RFM segment (mean)", YLabel: "CLV per customer", Categories: cats,
			Series: []chart.BarSeries{{Name: "mean CLV", Values: avg}}, Width: 640, Height: 320}.SVG())
	}
	data["Grid"] = grid
	c.render(w, r, s, "insights", data)
}
