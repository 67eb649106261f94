package chart

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
)

// Series is one named line of a Line chart: the points (X[i], Y[i]), joined
// in the order given. X and Y must have the same length; a series may have
// no points, in which case it only appears in the legend.
type Series struct {
	// Name identifies the series in the legend and in tooltips.
	Name string
	// X and Y hold the coordinates of the points.
	X, Y []float64
	// Dashed draws the line dashed instead of solid, for example for a
	// model's prediction against observed data.
	Dashed bool
}

// Marker is a labelled vertical line across the plot of a Line chart, such
// as the end of a calibration period.
type Marker struct {
	// X is where the line is drawn; the x axis is widened to include it.
	X float64
	// Label is shown at the top of the line.
	Label string
}

// Line is a line chart of one or more series on numeric x and y axes. Each
// series is drawn as a line through its points in a colour of its own, each
// point carries a tooltip with its exact coordinates, and a legend names
// the series when there is more than one. A series of up to 40 points shows
// them as dots; in a longer one they stay transparent, and visible only
// under the pointer, so as not to clutter the line. Both axes span the data (and the
// marker) widened to nice tick values; the y axis does not necessarily
// start at zero.
type Line struct {
	// Title is the chart's heading and accessible name.
	Title string
	// Desc is the accessible description. If empty, one is generated
	// that names the series and the ranges of the data.
	Desc string
	// XLabel and YLabel are the axis titles; either may be empty.
	XLabel, YLabel string
	// Series holds the lines to draw, in drawing order.
	Series []Series
	// Marker, if not nil, adds a labelled vertical line.
	Marker *Marker
	// Width and Height are the size of the chart in pixels; zero means
	// 720 and 400.
	Width, Height int
}

// SVG renders the chart as an SVG document. It returns an error wrapping
// ErrNoData if no series has any point, and one wrapping ErrInvalid if a
// series has X and Y of different lengths, a coordinate or the marker is
// NaN or infinite, or the size is negative or too small for the plot.
func (l Line) SVG() ([]byte, error) {
	w, h, err := size(l.Width, l.Height)
	if err != nil {
		return nil, err
	}
	xlo, xhi := math.Inf(1), math.Inf(-1)
	ylo, yhi := math.Inf(1), math.Inf(-1)
	total := 0
	for i, s := range l.Series {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("%w: series %d (%q) has %d x values but %d y values", ErrInvalid, i, s.Name, len(s.X), len(s.Y))
		}
		for j := range s.X {
			if err := checkFinite(s.X[j], fmt.Sprintf("series %d (%q) x[%d]", i, s.Name, j)); err != nil {
				return nil, err
			}
			if err := checkFinite(s.Y[j], fmt.Sprintf("series %d (%q) y[%d]", i, s.Name, j)); err != nil {
				return nil, err
			}
			xlo, xhi = min(xlo, s.X[j]), max(xhi, s.X[j])
			ylo, yhi = min(ylo, s.Y[j]), max(yhi, s.Y[j])
		}
		total += len(s.X)
	}
	if total == 0 {
		return nil, fmt.Errorf("%w: line chart has no points", ErrNoData)
	}
	dataXlo, dataXhi := xlo, xhi
	if m := l.Marker; m != nil {
		if err := checkFinite(m.X, "marker x"); err != nil {
			return nil, err
		}
		xlo, xhi = min(xlo, m.X), max(xhi, m.X)
	}
	if err := checkSpan(xlo, xhi, "x"); err != nil {
		return nil, err
	}
	if err := checkSpan(ylo, yhi, "y"); err != nil {
		return nil, err
	}

	f := &frame{
		kind: "Line chart", width: w, height: h,
		title: l.Title, xLabel: l.XLabel, yLabel: l.YLabel,
	}
	for i, s := range l.Series {
		f.legend = append(f.legend, legendEntry{name: s.Name, colour: colour(i), dashed: s.Dashed})
	}
	f.desc = l.Desc
	if f.desc == "" {
		f.desc = l.describe(total, dataXlo, dataXhi, ylo, yhi)
	}

	yt := niceTicks(ylo, yhi, max(2, min(10, h/80)))
	var xt ticks
	for target := max(2, min(10, w/120)); ; target-- {
		xt = niceTicks(xlo, xhi, target)
		right := max(8, maxLabelWidth(xt.labels[len(xt.labels)-1:])/2)
		if err := f.layout(maxLabelWidth(yt.labels), fontSize+4, right, 0); err != nil {
			return nil, err
		}
		spacing := (f.x1 - f.x0) / float64(len(xt.values)-1)
		if spacing >= maxLabelWidth(xt.labels)+8 || target == 1 {
			break
		}
	}
	xs := scale{xt.lo, xt.hi, f.x0, f.x1}
	ys := scale{yt.lo, yt.hi, f.y1, f.y0}

	var b strings.Builder
	f.yAxis(&b, yt, ys)
	f.hLine(&b, f.y1)
	if yt.lo < 0 && yt.hi > 0 {
		f.hLine(&b, ys.at(0))
	}
	b.WriteString(`<g stroke="currentColor" shape-rendering="crispEdges">`)
	for _, v := range xt.values {
		x := num(xs.at(v))
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`, x, num(f.y1), x, num(f.y1+tickLen))
	}
	b.WriteString("</g>\n")
	b.WriteString(`<g text-anchor="middle">`)
	for i, v := range xt.values {
		fmt.Fprintf(&b, `<text x="%s" y="%s" dy="0.8em">%s</text>`, num(xs.at(v)), num(f.y1+tickLen+2), esc(xt.labels[i]))
	}
	b.WriteString("</g>\n")

	if m := l.Marker; m != nil {
		x := xs.at(m.X)
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="currentColor" stroke-opacity="0.7" stroke-dasharray="4 3"/>`+"\n",
			num(x), num(f.y0), num(x), num(f.y1))
		if m.Label != "" {
			label := fit(m.Label, fontSize, max(x-f.x0, f.x1-x)-6)
			anchor, lx := "start", x+4
			if x+4+textWidth(label, fontSize) > f.x1 {
				anchor, lx = "end", x-4
			}
			fmt.Fprintf(&b, `<text x="%s" y="%s" dy="0.8em" text-anchor="%s">%s</text>`+"\n",
				num(lx), num(f.y0+2), anchor, esc(label))
		}
	}

	xName, yName := axisName(l.XLabel, "x"), axisName(l.YLabel, "y")
	for i, s := range l.Series {
		if len(s.X) == 0 {
			continue
		}
		c := colour(i)
		if len(s.X) > 1 {
			dash := ""
			if s.Dashed {
				dash = ` stroke-dasharray="6 4"`
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"%s points="`, c, dash)
			for j := range s.X {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(num(xs.at(s.X[j])) + "," + num(ys.at(s.Y[j])))
			}
			b.WriteString(`"/>` + "\n")
		}
		dot := `r="3"`
		if len(s.X) > densePoints {
			dot = `r="4" fill-opacity="0"`
		}
		prefix := ""
		if s.Name != "" {
			prefix = s.Name + ": "
		}
		fmt.Fprintf(&b, `<g fill="%s">`+"\n", c)
		for j := range s.X {
			tip := fmt.Sprintf("%s%s = %s, %s = %s", prefix, xName, exact(s.X[j]), yName, exact(s.Y[j]))
			fmt.Fprintf(&b, `<circle class="kc-pt" cx="%s" cy="%s" %s><title>%s</title></circle>`+"\n",
				num(xs.at(s.X[j])), num(ys.at(s.Y[j])), dot, esc(tip))
		}
		b.WriteString("</g>\n")
	}
	return f.document(b.String()), nil
}

// describe generates the accessible description of the chart.
func (l Line) describe(points int, xlo, xhi, ylo, yhi float64) string {
	var d strings.Builder
	names := make([]string, len(l.Series))
	for i, s := range l.Series {
		names[i] = s.Name
		if s.Name == "" {
			names[i] = fmt.Sprintf("series %d", i+1)
		}
	}
	fmt.Fprintf(&d, "Line chart of %d series (%s) with %d points in all. ", len(l.Series), joinNames(names, 10), points)
	fmt.Fprintf(&d, "Values of %s run from %s to %s; values of %s run from %s to %s.",
		axisName(l.XLabel, "x"), exact(xlo), exact(xhi), axisName(l.YLabel, "y"), exact(ylo), exact(yhi))
	if m := l.Marker; m != nil {
		fmt.Fprintf(&d, " A vertical line marks %s = %s", axisName(l.XLabel, "x"), exact(m.X))
		if m.Label != "" {
			fmt.Fprintf(&d, ": %s", m.Label)
		}
		d.WriteString(".")
	}
	return d.String()
}

// WriteTo writes the chart's SVG document to w, implementing io.WriterTo.
// It writes nothing if SVG returns an error.
func (l Line) WriteTo(w io.Writer) (int64, error) {
	b, err := l.SVG()
	if err != nil {
		return 0, err
	}
	return bytes.NewReader(b).WriteTo(w)
}
