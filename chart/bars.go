package chart

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
)

// BarSeries is one named series of a Bars chart: one value per category,
// in the order of Bars.Categories.
type BarSeries struct {
	// Name identifies the series in the legend and in tooltips.
	Name string
	// Values holds the bar heights; it must be as long as the chart's
	// categories.
	Values []float64
}

// Bars is a grouped bar chart: a group of bars for each category along the
// x axis, one bar per series in the series' colour, each bar carrying a
// tooltip with its exact value. A histogram is a Bars with a single series.
// The y axis always includes zero, bars grow up from zero for positive
// values and down for negative ones, and a legend names the series when
// there is more than one. Category labels that do not fit side by side are
// drawn slanted, and only every so many of them if still too crowded.
type Bars struct {
	// Title is the chart's heading and accessible name.
	Title string
	// Desc is the accessible description. If empty, one is generated
	// that names the categories, the series and the range of the values.
	Desc string
	// XLabel and YLabel are the axis titles; either may be empty.
	XLabel, YLabel string
	// Categories labels the groups along the x axis, in order.
	Categories []string
	// Series holds the bars of each group, in order.
	Series []BarSeries
	// Width and Height are the size of the chart in pixels; zero means
	// 720 and 400.
	Width, Height int
}

const (
	catLabelMax = 140.0 // widest category label before it is shortened
	groupFill   = 0.8   // share of a category's band taken by its bars
	maxBarWidth = 80.0  // widest bar drawn
)

// SVG renders the chart as an SVG document. It returns an error wrapping
// ErrNoData if there are no categories or no series, and one wrapping
// ErrInvalid if a series has not one value per category, a value is NaN or
// infinite, or the size is negative or too small for the plot.
func (c Bars) SVG() ([]byte, error) {
	w, h, err := size(c.Width, c.Height)
	if err != nil {
		return nil, err
	}
	if len(c.Categories) == 0 || len(c.Series) == 0 {
		return nil, fmt.Errorf("%w: bar chart has %d categories and %d series", ErrNoData, len(c.Categories), len(c.Series))
	}
	lo, hi := 0.0, 0.0 // the y range: the values and zero
	dlo, dhi := math.Inf(1), math.Inf(-1)
	for i, s := range c.Series {
		if len(s.Values) != len(c.Categories) {
			return nil, fmt.Errorf("%w: series %d (%q) has %d values for %d categories", ErrInvalid, i, s.Name, len(s.Values), len(c.Categories))
		}
		for j, v := range s.Values {
			if err := checkFinite(v, fmt.Sprintf("series %d (%q) value %d", i, s.Name, j)); err != nil {
				return nil, err
			}
			lo, hi = min(lo, v), max(hi, v)
			dlo, dhi = min(dlo, v), max(dhi, v)
		}
	}
	if err := checkSpan(lo, hi, "y"); err != nil {
		return nil, err
	}

	f := &frame{
		kind: "Bar chart", width: w, height: h,
		title: c.Title, xLabel: c.XLabel, yLabel: c.YLabel,
		legendBars: true,
	}
	for i, s := range c.Series {
		f.legend = append(f.legend, legendEntry{name: s.Name, colour: colour(i)})
	}
	f.desc = c.Desc
	if f.desc == "" {
		f.desc = c.describe(dlo, dhi)
	}

	yt := niceTicks(lo, hi, max(2, min(10, h/80)))
	ytw := maxLabelWidth(yt.labels)
	if err := f.layout(ytw, fontSize+4, 8, 0); err != nil {
		return nil, err
	}
	n := len(c.Categories)
	band := (f.x1 - f.x0) / float64(n)
	labels := make([]string, n)
	for i, cat := range c.Categories {
		labels[i] = fit(cat, fontSize, catLabelMax)
	}
	slant, every := false, 1
	if maxLabelWidth(labels)+6 > band {
		// Slant the labels at 45°, taking at most 30% of the height,
		// widen the left margin so the first one stays inside the
		// chart, and thin them out if they would still overlap.
		slant = true
		room := min(catLabelMax, 0.3*float64(h)*math.Sqrt2-fontSize)
		for i := range labels {
			labels[i] = fit(labels[i], fontSize, room)
		}
		lw := maxLabelWidth(labels)
		if err := f.layout(ytw, (lw+fontSize)/math.Sqrt2+4, 8, pad+(lw+fontSize/2)/math.Sqrt2); err != nil {
			return nil, err
		}
		band = (f.x1 - f.x0) / float64(n)
		every = int(math.Ceil(fontSize * 1.5 / band))
	}
	ys := scale{yt.lo, yt.hi, f.y1, f.y0}

	var b strings.Builder
	f.yAxis(&b, yt, ys)

	// Category labels.
	if slant {
		b.WriteString(`<g text-anchor="end">`)
	} else {
		b.WriteString(`<g text-anchor="middle">`)
	}
	for i, l := range labels {
		if i%every != 0 || l == "" {
			continue
		}
		x, y := f.x0+(float64(i)+0.5)*band, f.y1+tickLen+2
		if slant {
			fmt.Fprintf(&b, `<text x="%s" y="%s" dy="0.8em" transform="rotate(-45 %s %s)">%s</text>`,
				num(x), num(y), num(x), num(y), esc(l))
		} else {
			fmt.Fprintf(&b, `<text x="%s" y="%s" dy="0.8em">%s</text>`, num(x), num(y), esc(l))
		}
	}
	b.WriteString("</g>\n")

	// Bars.
	ns := float64(len(c.Series))
	barW := min(band*groupFill/ns, maxBarWidth)
	gap := 0.0
	if ns > 1 {
		gap = min(2, barW*0.15)
	}
	zero := ys.at(0)
	xName, yName := axisName(c.XLabel, "category"), axisName(c.YLabel, "value")
	for i, s := range c.Series {
		prefix := ""
		if s.Name != "" {
			prefix = s.Name + ": "
		}
		fmt.Fprintf(&b, `<g fill="%s">`+"\n", colour(i))
		for j, v := range s.Values {
			x := f.x0 + (float64(j)+0.5)*band - barW*ns/2 + float64(i)*barW + gap/2
			y := ys.at(v)
			top, height := min(y, zero), math.Abs(y-zero)
			tip := fmt.Sprintf("%s%s = %s, %s = %s", prefix, xName, c.Categories[j], yName, exact(v))
			fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s"><title>%s</title></rect>`+"\n",
				num(x), num(top), num(barW-gap), num(height), esc(tip))
		}
		b.WriteString("</g>\n")
	}
	f.hLine(&b, zero)
	return f.document(b.String()), nil
}

// describe generates the accessible description of the chart.
func (c Bars) describe(lo, hi float64) string {
	names := make([]string, len(c.Series))
	for i, s := range c.Series {
		names[i] = s.Name
		if s.Name == "" {
			names[i] = fmt.Sprintf("series %d", i+1)
		}
	}
	return fmt.Sprintf("Bar chart of %d series (%s) over %d categories of %s (%s). Values of %s run from %s to %s.",
		len(c.Series), joinNames(names, 10), len(c.Categories), axisName(c.XLabel, "category"),
		joinNames(c.Categories, 12), axisName(c.YLabel, "value"), exact(lo), exact(hi))
}

// WriteTo writes the chart's SVG document to w, implementing io.WriterTo.
// It writes nothing if SVG returns an error.
func (c Bars) WriteTo(w io.Writer) (int64, error) {
	b, err := c.SVG()
	if err != nil {
		return 0, err
	}
	return bytes.NewReader(b).WriteTo(w)
}
