// Package chart renders small, self-contained SVG charts on the server: line
// charts of named (x, y) series with an optional vertical marker (Line), and
// grouped bar charts of named series over categories (Bars); a histogram is
// a Bars with one series.
//
// The output of SVG is a complete SVG document without an XML declaration,
// so the same bytes can be written to a .svg file or placed inline in an
// HTML page (with html/template, as template.HTML(b)). It needs nothing
// outside itself: no scripts, no external fonts, style sheets or images.
// The root element carries role="img" and aria-labelledby pointing at its
// <title> and <desc>; the ids are derived from a hash of the content, so
// output is deterministic and distinct charts on one page get distinct ids.
//
// Axes, tick labels and text are drawn in currentColor, so an inline chart
// takes the text colour of the surrounding page. A standalone document (a
// .svg file, or one shown with <img> or <object>) is its own root element;
// for that case only, an embedded style sheet paints an opaque background
// and sets the text colour, switching both with prefers-color-scheme: dark.
// Series colours come from a fixed palette whose every colour has at least
// 3:1 contrast on white and on near-black backgrounds, so the same colours
// serve both schemes. Renderers that ignore CSS still produce a readable
// chart: black text on a transparent background.
//
// Every data point and bar carries a <title> child, which browsers show as a
// tooltip with the exact value on hover. Tooltips work when the SVG is
// inline or opened directly, not when it is shown through <img>, since
// images are not interactive.
//
// Axis ticks fall on "nice" numbers, 1, 2 or 5 times a power of ten, and the
// axes are widened to the nearest tick outside the data. All text from the
// caller (titles, labels, series and category names) is XML-escaped; text
// that is too long for the space it has is cut short with an ellipsis in
// the drawing but kept whole in the accessible title, description and
// tooltips.
package chart

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrNoData is returned, wrapped, by SVG when there is nothing to plot: no
// series, no points in any series, or no categories.
var ErrNoData = errors.New("chart: no data")

// ErrInvalid is returned, wrapped, by SVG when the input cannot be drawn:
// mismatched lengths, NaN or infinite values, a negative or too small size,
// or values whose range overflows float64.
var ErrInvalid = errors.New("chart: invalid input")

const (
	defaultWidth  = 720
	defaultHeight = 400

	// minPlot is the smallest plot area, in pixels each way, that SVG
	// accepts once margins for title, legend, ticks and labels are taken.
	minPlot = 40

	pad         = 10   // outer padding
	fontSize    = 12.0 // base font size
	titleSize   = 15.0 // chart title font size
	charWidth   = 0.6  // estimated average glyph width, in ems
	tickLen     = 5    // tick mark length
	legendRowH  = 18   // height of one legend row
	targetTicks = 5    // preferred number of intervals on a numeric axis

	// densePoints is the number of points in a line series above which
	// the point markers are drawn transparent: they still show tooltips,
	// but no longer clutter the line.
	densePoints = 40

	fontFamily = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
)

// palette holds the series colours, used in order and repeated when there
// are more series. chart_test.go checks the contrast of each against white
// and near-black backgrounds.
var palette = []string{
	"#0072b2", // blue
	"#d55e00", // vermillion
	"#009e73", // bluish green
	"#cc79a7", // reddish purple
	"#b8860b", // dark goldenrod
	"#8c6bb1", // purple
}

// colour returns the palette colour of the i-th series.
func colour(i int) string { return palette[i%len(palette)] }

// styleSheet is embedded in every chart. The rules on svg:root apply only
// when the chart is a document of its own; inline in HTML, the root is
// <html> and the chart inherits the page's colours. Class names carry a
// "kc-" prefix because an inline <style> applies to the whole page.
const styleSheet = `svg:root{color:#1f2328}` +
	`svg:root .kc-bg{fill:#ffffff}` +
	`@media (prefers-color-scheme:dark){svg:root{color:#e6edf3}svg:root .kc-bg{fill:#16181d}}` +
	`.kc-pt:hover{fill-opacity:1}`

// esc returns s escaped for use as XML character data or as an attribute
// value in double quotes. Characters not allowed in XML, and invalid UTF-8,
// become U+FFFD.
func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '&':
			b.WriteString("&amp;")
		case r == '"':
			b.WriteString("&quot;")
		case r == '\'':
			b.WriteString("&apos;")
		case r == '\t', r == '\n', r == '\r':
			// Attribute-value normalisation would turn these into
			// spaces; write them as character references.
			fmt.Fprintf(&b, "&#x%X;", r)
		case r < 0x20, r == utf8.RuneError, r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE, r == 0xFFFF:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// num formats a coordinate with at most two decimals.
func num(v float64) string {
	v = math.Round(v*100) / 100
	if v == 0 {
		v = 0 // no "-0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// exact formats a data value as the shortest decimal that reads back as the
// same float64, in plain notation unless it is very large or very small.
func exact(v float64) string {
	if v == 0 {
		return "0"
	}
	if a := math.Abs(v); a < 1e-6 || a >= 1e21 {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// textWidth estimates the rendered width of s at the given font size.
func textWidth(s string, size float64) float64 {
	return float64(utf8.RuneCountInString(s)) * size * charWidth
}

// fit shortens s with an ellipsis so that its estimated width at the given
// font size is at most width. It returns "" if not even one character and
// the ellipsis fit.
func fit(s string, size, width float64) string {
	if textWidth(s, size) <= width {
		return s
	}
	n := int(width/(size*charWidth)) - 1
	if n < 1 {
		return ""
	}
	r := []rune(s)
	return strings.TrimRight(string(r[:n]), " ") + "…"
}

// ticks is a numeric axis: its bounds, which are multiples of step, and the
// tick values from lo to hi inclusive with their labels.
type ticks struct {
	lo, hi, step float64
	values       []float64
	labels       []string
}

// niceTicks returns an axis covering [lo, hi] (lo <= hi, both finite) with
// a step of 1, 2 or 5 times a power of ten: the smallest such step that
// divides the range into at most target intervals. The axis bounds are lo
// rounded down and hi rounded up to multiples of the step, and there is a
// tick at every multiple between them, so 0..4339 gives 0, 1000, ..., 5000
// and -3..7 gives -4, -2, ..., 8.
//
// A range of zero width (or one narrower than a billionth of its largest
// magnitude) around a value v is first widened to v ± 10^floor(log10 |v|),
// which keeps v in the middle and never crosses zero, or to [0, 1] if v is
// zero: 5..5 gives 4, 4.5, ..., 6 and -2..-2 gives -3, -2.5, ..., -1.
//
// Labels use the same number of decimals throughout, as many as the step
// needs, except that zero is always "0": 0..1 gives 0, 0.2, ..., 1.0. When
// the largest magnitude on the axis is at least 10000 the labels are shown
// in thousands, millions, billions or trillions with a k, M, G or T suffix,
// the largest that needs no more than two decimals: 0..25000 gives 0, 5k,
// ..., 25k, and 0..2200000 gives 0, 0.5M, 1.0M, ..., 2.5M.
func niceTicks(lo, hi float64, target int) ticks {
	if hi-lo <= max(math.Abs(lo), math.Abs(hi))*1e-9 {
		if v := lo/2 + hi/2; v == 0 {
			lo, hi = 0, 1
		} else {
			m := math.Pow(10, math.Floor(math.Log10(math.Abs(v))))
			lo, hi = min(lo, v-m), max(hi, v+m)
		}
	}
	raw := (hi - lo) / float64(target)
	e := int(math.Floor(math.Log10(raw)))
	mag := math.Pow(10, float64(e))
	var m int64
	// The tolerance keeps a rounding error in raw or mag from choosing
	// the next larger step when raw is itself a nice number.
	const tol = 1 + 1e-9
	switch f := raw / mag; {
	case f <= 1*tol:
		m = 1
	case f <= 2*tol:
		m = 2
	case f <= 5*tol:
		m = 5
	default:
		m, e = 1, e+1
	}
	// value returns k steps as the float64 nearest to the decimal k*m*10^e.
	value := func(k int64) float64 {
		if e >= 0 {
			return float64(k*m) * math.Pow10(e)
		}
		return float64(k*m) / math.Pow10(-e)
	}
	step := value(1)
	// lo/step and hi/step may be off by a rounding error (0.3/0.1 is
	// 2.9999999999999996), so settle k0 and k1 by comparing the tick
	// values themselves.
	k0 := int64(math.Floor(lo / step))
	for value(k0+1) <= lo {
		k0++
	}
	for value(k0) > lo {
		k0--
	}
	k1 := int64(math.Ceil(hi / step))
	for value(k1-1) >= hi {
		k1--
	}
	for value(k1) < hi {
		k1++
	}
	t := ticks{lo: value(k0), hi: value(k1), step: step}

	maxAbs := max(math.Abs(t.lo), math.Abs(t.hi))
	unit, suffix := 0, ""
	if maxAbs >= 1e4 {
		// The largest power of 1000 up to the magnitude, but no more
		// than two orders above the step, so at most two decimals.
		unit = min(int(math.Floor(math.Log10(maxAbs)/3))*3, 12)
		unit = min(unit, int(math.Floor(float64(e+2)/3))*3)
		unit = max(unit, 0)
		suffix = map[int]string{3: "k", 6: "M", 9: "G", 12: "T"}[unit]
	}
	decimals := max(0, unit-e)
	for k := k0; k <= k1; k++ {
		v := value(k)
		t.values = append(t.values, v)
		label := "0"
		if k != 0 {
			label = strconv.FormatFloat(v/math.Pow10(unit), 'f', decimals, 64) + suffix
		}
		t.labels = append(t.labels, label)
	}
	return t
}

// scale maps the axis interval [lo, hi] linearly onto pixels [p0, p1].
type scale struct{ lo, hi, p0, p1 float64 }

func (s scale) at(v float64) float64 {
	return s.p0 + (v-s.lo)/(s.hi-s.lo)*(s.p1-s.p0)
}

// legendEntry is one series in a legend.
type legendEntry struct {
	name   string
	colour string
	dashed bool
}

// frame holds what Line and Bars have in common: the text around the plot
// and its layout. Coordinates x0, x1, y0, y1 bound the plot area, with y0
// at the top.
type frame struct {
	kind           string // "Line chart" or "Bar chart", the title if none is given
	width, height  int
	title, desc    string
	xLabel, yLabel string
	legend         []legendEntry
	legendBars     bool // legend swatches are squares, not line segments

	x0, x1, y0, y1 float64
	legendTop      float64
	legendRows     [][]int // indexes into legend, one slice per row
}

// size returns the width and height to use, or an error if either is
// negative.
func size(w, h int) (int, int, error) {
	if w < 0 || h < 0 {
		return 0, 0, fmt.Errorf("%w: negative size %d×%d", ErrInvalid, w, h)
	}
	if w == 0 {
		w = defaultWidth
	}
	if h == 0 {
		h = defaultHeight
	}
	return w, h, nil
}

// layout computes the plot area from the margins that the title, the
// legend, the axis titles and the tick labels need. yTickWidth is the width
// of the widest y tick label, bottom the height of the x tick labels below
// the tick marks, right the room needed right of the plot, and minLeft the
// least room left of it, axis title aside.
func (f *frame) layout(yTickWidth, bottom, right, minLeft float64) error {
	w, h := float64(f.width), float64(f.height)
	top := float64(pad)
	if f.title != "" {
		top += titleSize + 6
	}
	f.legendTop = top
	if len(f.legend) > 1 {
		avail := w - 2*pad
		var row []int
		x := 0.0
		for i, e := range f.legend {
			ew := f.legendEntryWidth(e)
			if len(row) > 0 && x+ew > avail {
				f.legendRows = append(f.legendRows, row)
				row, x = nil, 0
			}
			row = append(row, i)
			x += ew
		}
		f.legendRows = append(f.legendRows, row)
		top += float64(len(f.legendRows)*legendRowH) + 4
	}
	top += fontSize / 2 // room for the top tick label

	left := max(float64(pad)+yTickWidth+tickLen+4, minLeft)
	if f.yLabel != "" {
		left += fontSize + 10
	}
	bot := float64(pad) + tickLen + bottom
	if f.xLabel != "" {
		bot += fontSize + 8
	}
	f.x0, f.x1 = left, w-float64(pad)-right
	f.y0, f.y1 = top, h-bot
	if f.x1-f.x0 < minPlot || f.y1-f.y0 < minPlot {
		return fmt.Errorf("%w: size %d×%d leaves no room for the plot", ErrInvalid, f.width, f.height)
	}
	return nil
}

const (
	legendSwatch = 18 // width of a legend swatch
	legendGap    = 16 // space after a legend entry
	legendMaxLen = 240.0
)

func (f *frame) legendEntryWidth(e legendEntry) float64 {
	return legendSwatch + 5 + textWidth(fit(e.name, fontSize, legendMaxLen), fontSize) + legendGap
}

// document assembles the SVG document around body, which holds the plot.
func (f *frame) document(body string) []byte {
	var b strings.Builder
	w, h := f.width, f.height

	// Chart title, legend and axis titles.
	var deco strings.Builder
	if f.title != "" {
		fmt.Fprintf(&deco, `<text x="%s" y="%s" text-anchor="middle" font-size="%s" font-weight="600">%s</text>`+"\n",
			num(float64(w)/2), num(pad+titleSize), num(titleSize), esc(fit(f.title, titleSize, float64(w-2*pad))))
	}
	for r, row := range f.legendRows {
		total := -float64(legendGap)
		for _, i := range row {
			total += f.legendEntryWidth(f.legend[i])
		}
		x := (float64(w) - total) / 2
		cy := f.legendTop + float64(r*legendRowH) + legendRowH/2
		for _, i := range row {
			e := f.legend[i]
			if f.legendBars {
				fmt.Fprintf(&deco, `<rect x="%s" y="%s" width="12" height="12" fill="%s"/>`, num(x+3), num(cy-6), e.colour)
			} else {
				dash := ""
				if e.dashed {
					dash = ` stroke-dasharray="6 4"`
				}
				fmt.Fprintf(&deco, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2.5"%s/>`,
					num(x), num(cy), num(x+legendSwatch), num(cy), e.colour, dash)
			}
			fmt.Fprintf(&deco, `<text x="%s" y="%s" dy="0.35em">%s</text>`+"\n",
				num(x+legendSwatch+5), num(cy), esc(fit(e.name, fontSize, legendMaxLen)))
			x += f.legendEntryWidth(e)
		}
	}
	if f.xLabel != "" {
		fmt.Fprintf(&deco, `<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n",
			num((f.x0+f.x1)/2), num(float64(h-pad)-2), esc(fit(f.xLabel, fontSize, float64(w-2*pad))))
	}
	if f.yLabel != "" {
		cx, cy := float64(pad)+fontSize, (f.y0+f.y1)/2
		fmt.Fprintf(&deco, `<text x="%s" y="%s" text-anchor="middle" transform="rotate(-90 %s %s)">%s</text>`+"\n",
			num(cx), num(cy), num(cx), num(cy), esc(fit(f.yLabel, fontSize, f.y1-f.y0)))
	}

	title := f.title
	if title == "" {
		title = f.kind
	}
	hash := fnv.New64a()
	for _, s := range []string{title, f.desc, deco.String(), body} {
		hash.Write([]byte(s))
		hash.Write([]byte{0})
	}
	id := fmt.Sprintf("kc-%012x", hash.Sum64()>>16)

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-title %s-desc" font-family="%s" font-size="%s" fill="currentColor">`+"\n",
		w, h, w, h, id, id, fontFamily, num(fontSize))
	fmt.Fprintf(&b, `<title id="%s-title">%s</title>`+"\n", id, esc(title))
	fmt.Fprintf(&b, `<desc id="%s-desc">%s</desc>`+"\n", id, esc(f.desc))
	fmt.Fprintf(&b, "<style>%s</style>\n", styleSheet)
	fmt.Fprintf(&b, `<rect class="kc-bg" width="100%%" height="100%%" fill="none"/>`+"\n")
	b.WriteString(deco.String())
	b.WriteString(body)
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// yAxis draws the horizontal grid lines, the y tick labels and the left
// axis line for the ticks t mapped by s.
func (f *frame) yAxis(b *strings.Builder, t ticks, s scale) {
	b.WriteString(`<g stroke="currentColor" stroke-opacity="0.15" shape-rendering="crispEdges">`)
	for _, v := range t.values {
		y := num(s.at(v))
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`, num(f.x0-tickLen), y, num(f.x1), y)
	}
	b.WriteString("</g>\n")
	b.WriteString(`<g text-anchor="end">`)
	for i, v := range t.values {
		fmt.Fprintf(b, `<text x="%s" y="%s" dy="0.35em">%s</text>`, num(f.x0-tickLen-3), num(s.at(v)), esc(t.labels[i]))
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="currentColor" shape-rendering="crispEdges"/>`+"\n",
		num(f.x0), num(f.y0), num(f.x0), num(f.y1))
}

// hLine draws a horizontal axis line across the plot at pixel y.
func (f *frame) hLine(b *strings.Builder, y float64) {
	fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="currentColor" shape-rendering="crispEdges"/>`+"\n",
		num(f.x0), num(y), num(f.x1), num(y))
}

// maxLabelWidth returns the estimated width of the widest label.
func maxLabelWidth(labels []string) float64 {
	w := 0.0
	for _, l := range labels {
		w = max(w, textWidth(l, fontSize))
	}
	return w
}

// axisName returns label, or fallback if label is empty.
func axisName(label, fallback string) string {
	if label != "" {
		return label
	}
	return fallback
}

// checkFinite returns an error naming what if v is NaN or infinite.
func checkFinite(v float64, what string) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%w: %s is %v", ErrInvalid, what, v)
	}
	return nil
}

// checkSpan returns an error if hi-lo overflows float64.
func checkSpan(lo, hi float64, axis string) error {
	if math.IsInf(hi-lo, 0) {
		return fmt.Errorf("%w: %s values span too wide a range (%s to %s)", ErrInvalid, axis, exact(lo), exact(hi))
	}
	return nil
}

// joinNames lists names for a description, with at most limit shown.
func joinNames(names []string, limit int) string {
	if len(names) > limit {
		return strings.Join(names[:limit], ", ") + fmt.Sprintf(" and %d more", len(names)-limit)
	}
	return strings.Join(names, ", ")
}
