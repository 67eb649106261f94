package chart

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the example SVGs in testdata")

// doc is what walkSVG learns about a rendered document.
type doc struct {
	root     xml.StartElement
	title    string   // text of the first <title>, the chart title
	desc     string   // text of <desc>
	tooltips []string // text of every other <title>, in order
	texts    []string // text of every <text>
	ids      map[string]bool
	elements map[string]int // element counts by local name
}

// walkSVG decodes b as XML from start to end, failing the test on any error,
// and collects what the tests check.
func walkSVG(t *testing.T, b []byte) doc {
	t.Helper()
	d := doc{ids: map[string]bool{}, elements: map[string]int{}}
	dec := xml.NewDecoder(bytes.NewReader(b))
	var stack []string
	var text strings.Builder
	depth0 := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("output is not well-formed XML: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				depth0++
				d.root = tok.Copy()
			}
			for _, a := range tok.Attr {
				if a.Name.Local == "id" {
					if d.ids[a.Value] {
						t.Errorf("duplicate id %q", a.Value)
					}
					d.ids[a.Value] = true
				}
			}
			d.elements[tok.Name.Local]++
			stack = append(stack, tok.Name.Local)
			text.Reset()
		case xml.CharData:
			text.Write(tok)
		case xml.EndElement:
			switch tok.Name.Local {
			case "title":
				if d.elements["title"] == 1 {
					if parent := stack[len(stack)-2]; parent != "svg" {
						t.Errorf("chart title is inside <%s>, want <svg>", parent)
					}
					d.title = text.String()
				} else {
					d.tooltips = append(d.tooltips, text.String())
				}
			case "desc":
				d.desc = text.String()
			case "text":
				d.texts = append(d.texts, text.String())
			}
			stack = stack[:len(stack)-1]
			text.Reset()
		}
	}
	if depth0 != 1 {
		t.Fatalf("document has %d root elements, want 1", depth0)
	}
	if d.root.Name.Local != "svg" || d.root.Name.Space != "http://www.w3.org/2000/svg" {
		t.Errorf("root element is %v, want svg in the SVG namespace", d.root.Name)
	}
	attr := func(name string) string {
		for _, a := range d.root.Attr {
			if a.Name.Local == name {
				return a.Value
			}
		}
		return ""
	}
	if attr("role") != "img" {
		t.Errorf(`root role = %q, want "img"`, attr("role"))
	}
	if attr("viewBox") == "" {
		t.Error("root has no viewBox")
	}
	labelled := strings.Fields(attr("aria-labelledby"))
	if len(labelled) != 2 {
		t.Errorf("aria-labelledby = %q, want two ids", attr("aria-labelledby"))
	}
	for _, id := range labelled {
		if !d.ids[id] {
			t.Errorf("aria-labelledby names %q, which no element has", id)
		}
	}
	if d.elements["title"] == 0 || d.elements["desc"] != 1 || d.elements["style"] != 1 {
		t.Errorf("want <title>, one <desc> and one <style>; counts are %v", d.elements)
	}
	for _, bad := range []string{"script", "foreignObject", "image", "use", "a"} {
		if d.elements[bad] > 0 {
			t.Errorf("output has a <%s> element", bad)
		}
	}
	if bytes.Contains(b, []byte("href")) || bytes.Contains(b, []byte("url(")) || bytes.Contains(b, []byte("@import")) {
		t.Error("output refers to something outside itself")
	}
	return d
}

func TestLineSVG(t *testing.T) {
	week := make([]float64, 78)
	actual, model := make([]float64, 78), make([]float64, 78)
	for i := range week {
		week[i] = float64(i + 1)
		actual[i] = 4339 * (1 - math.Exp(-float64(i)/40))
		model[i] = 4300 * (1 - math.Exp(-float64(i)/38))
	}
	tests := []struct {
		name      string
		line      Line
		wantTitle string
		wantW     string
		wantTexts []string // among the <text> elements
	}{
		{
			name: "two series with marker",
			line: Line{
				Title: "Cumulative repeat transactions", XLabel: "week", YLabel: "transactions",
				Series: []Series{{Name: "actual", X: week, Y: actual}, {Name: "model", X: week, Y: model, Dashed: true}},
				Marker: &Marker{X: 39, Label: "end of calibration"},
			},
			wantTitle: "Cumulative repeat transactions",
			wantW:     "720",
			wantTexts: []string{"actual", "model", "end of calibration", "week", "transactions", "0", "1000", "4000", "80"},
		},
		{
			name:      "single point",
			line:      Line{Title: "one", Series: []Series{{Name: "s", X: []float64{3}, Y: []float64{7}}}},
			wantTitle: "one",
			wantW:     "720",
			wantTexts: []string{"2.0", "3.0", "4.0", "6.0", "7.0", "8.0"},
		},
		{
			name:      "all equal values",
			line:      Line{Title: "flat", Series: []Series{{X: []float64{1, 2, 3}, Y: []float64{5, 5, 5}}}, Width: 300, Height: 200},
			wantTitle: "flat",
			wantW:     "300",
			wantTexts: []string{"4", "5", "6"}, // only two intervals at this height
		},
		{
			name:      "all zero",
			line:      Line{Series: []Series{{X: []float64{0, 0}, Y: []float64{0, 0}}}},
			wantTitle: "Line chart",
			wantW:     "720",
			wantTexts: []string{"0", "1.0"},
		},
		{
			name: "negative values",
			line: Line{Title: "neg", Series: []Series{
				{Name: "a", X: []float64{-10, 0, 10}, Y: []float64{-3, 2, 7}},
				{Name: "b", X: []float64{-5, 5}, Y: []float64{-0.5, -0.25}},
			}},
			wantTitle: "neg",
			wantW:     "720",
			wantTexts: []string{"-10", "-4", "8", "a", "b"},
		},
		{
			name: "empty series beside a full one",
			line: Line{Title: "holdout pending", Series: []Series{
				{Name: "calibration", X: []float64{1, 2}, Y: []float64{1, 2}},
				{Name: "holdout"},
			}, Marker: &Marker{X: 10}},
			wantTitle: "holdout pending",
			wantW:     "720",
			wantTexts: []string{"calibration", "holdout", "10"},
		},
		{
			name:      "tiny values",
			line:      Line{Title: "tiny", Series: []Series{{Name: "p", X: []float64{0, 1}, Y: []float64{0.0001, 0.00043}}}},
			wantTitle: "tiny", wantW: "720",
			wantTexts: []string{"0.0001", "0.0005"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.line.SVG()
			if err != nil {
				t.Fatal(err)
			}
			d := walkSVG(t, b)
			if d.title != tt.wantTitle {
				t.Errorf("title = %q, want %q", d.title, tt.wantTitle)
			}
			if d.desc == "" {
				t.Error("desc is empty")
			}
			points := 0
			for _, s := range tt.line.Series {
				points += len(s.X)
			}
			if len(d.tooltips) != points {
				t.Errorf("%d tooltips, want one per point: %d", len(d.tooltips), points)
			}
			if d.elements["circle"] != points {
				t.Errorf("%d circles, want %d", d.elements["circle"], points)
			}
			for _, a := range d.root.Attr {
				if a.Name.Local == "width" && a.Value != tt.wantW {
					t.Errorf("width = %q, want %q", a.Value, tt.wantW)
				}
			}
			for _, want := range tt.wantTexts {
				if !slices.Contains(d.texts, want) {
					t.Errorf("no <text> %q among %q", want, d.texts)
				}
			}
			wantLegend := len(tt.line.Series) > 1
			for _, s := range tt.line.Series {
				if s.Name != "" && slices.Contains(d.texts, s.Name) != wantLegend {
					t.Errorf("legend entry %q shown = %v, want %v", s.Name, !wantLegend, wantLegend)
				}
			}
		})
	}
}

func TestLineTooltipsAndDesc(t *testing.T) {
	a, b := 0.1, 0.2
	l := Line{
		XLabel: "week", YLabel: "repeat transactions",
		Series: []Series{{Name: "actual", X: []float64{1, 2}, Y: []float64{a + b, 1234567}}},
		Marker: &Marker{X: 39, Label: "end of calibration"},
	}
	out, err := l.SVG()
	if err != nil {
		t.Fatal(err)
	}
	d := walkSVG(t, out)
	want := []string{
		"actual: week = 1, repeat transactions = 0.30000000000000004",
		"actual: week = 2, repeat transactions = 1234567",
	}
	if !slices.Equal(d.tooltips, want) {
		t.Errorf("tooltips = %q, want %q", d.tooltips, want)
	}
	for _, s := range []string{"actual", "week", "1 to 2", "0.30000000000000004 to 1234567", "week = 39", "end of calibration"} {
		if !strings.Contains(d.desc, s) {
			t.Errorf("desc %q does not mention %q", d.desc, s)
		}
	}
	// The y axis reaches 1.5M in steps of 0.5M.
	for _, s := range []string{"0", "0.5M", "1.5M"} {
		if !slices.Contains(d.texts, s) {
			t.Errorf("no tick label %q among %q", s, d.texts)
		}
	}
	l.Desc = "custom description"
	out, _ = l.SVG()
	if d := walkSVG(t, out); d.desc != "custom description" {
		t.Errorf("desc = %q, want the one given", d.desc)
	}
}

func TestDenseSeries(t *testing.T) {
	x := make([]float64, densePoints+1)
	for i := range x {
		x[i] = float64(i)
	}
	for _, n := range []int{densePoints, densePoints + 1} {
		b, err := Line{Series: []Series{{X: x[:n], Y: x[:n]}}}.SVG()
		if err != nil {
			t.Fatal(err)
		}
		d := walkSVG(t, b)
		if len(d.tooltips) != n {
			t.Errorf("%d points: %d tooltips", n, len(d.tooltips))
		}
		if hidden := bytes.Count(b, []byte(`fill-opacity="0"`)); (hidden > 0) != (n > densePoints) {
			t.Errorf("%d points: %d transparent markers", n, hidden)
		}
	}
}

func TestBarsSVG(t *testing.T) {
	long := make([]string, 60)
	vals := make([]float64, 60)
	for i := range long {
		long[i] = fmt.Sprintf("segment number %d with a long name", i)
		vals[i] = float64(i * i)
	}
	tests := []struct {
		name      string
		bars      Bars
		wantTitle string
		wantTexts []string
		slanted   bool
	}{
		{
			name: "actual vs model",
			bars: Bars{
				Title: "Repeat transactions per customer", XLabel: "repeat transactions", YLabel: "customers",
				Categories: []string{"0", "1", "2", "3", "4", "5", "6", "7+"},
				Series: []BarSeries{
					{Name: "actual", Values: []float64{1411, 439, 214, 100, 62, 38, 29, 64}},
					{Name: "model", Values: []float64{1400, 450, 205, 112, 64, 39, 24, 63}},
				},
			},
			wantTitle: "Repeat transactions per customer",
			wantTexts: []string{"0", "7+", "actual", "model", "1500", "customers"},
		},
		{
			name:      "histogram",
			bars:      Bars{Title: "h", Categories: []string{"a", "b", "c"}, Series: []BarSeries{{Values: []float64{1, 2, 3}}}},
			wantTitle: "h",
			wantTexts: []string{"a", "b", "c", "0", "3"},
		},
		{
			name:      "all zero",
			bars:      Bars{Categories: []string{"a"}, Series: []BarSeries{{Name: "only", Values: []float64{0}}}},
			wantTitle: "Bar chart",
			wantTexts: []string{"a", "0", "1.0"},
		},
		{
			name: "negative values",
			bars: Bars{Title: "margin", Categories: []string{"q1", "q2", "q3"}, Series: []BarSeries{
				{Name: "2024", Values: []float64{-20, 5, 12}},
				{Name: "2025", Values: []float64{-3, -8, 30}},
				{Name: "2026", Values: []float64{1, 2, 3}},
			}},
			wantTitle: "margin",
			wantTexts: []string{"-20", "30", "2024", "2026"},
		},
		{
			name:      "many long categories",
			bars:      Bars{Title: "crowded", Categories: long, Series: []BarSeries{{Name: "n", Values: vals}}},
			wantTitle: "crowded",
			wantTexts: []string{"4000"},
			slanted:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.bars.SVG()
			if err != nil {
				t.Fatal(err)
			}
			d := walkSVG(t, b)
			if d.title != tt.wantTitle {
				t.Errorf("title = %q, want %q", d.title, tt.wantTitle)
			}
			if d.desc == "" {
				t.Error("desc is empty")
			}
			n := len(tt.bars.Categories) * len(tt.bars.Series)
			if len(d.tooltips) != n {
				t.Errorf("%d tooltips, want one per bar: %d", len(d.tooltips), n)
			}
			if got := d.elements["rect"] - 1; got != n+legendSwatches(tt.bars.Series) {
				t.Errorf("%d rects besides the background, want %d bars and %d legend swatches", got, n, legendSwatches(tt.bars.Series))
			}
			for _, want := range tt.wantTexts {
				if !slices.Contains(d.texts, want) {
					t.Errorf("no <text> %q among %q", want, d.texts)
				}
			}
			if got := bytes.Contains(b, []byte("rotate(-45")); got != tt.slanted {
				t.Errorf("slanted labels = %v, want %v", got, tt.slanted)
			}
		})
	}
}

func legendSwatches(s []BarSeries) int {
	if len(s) > 1 {
		return len(s)
	}
	return 0
}

func TestBarsGeometry(t *testing.T) {
	// Positive bars stand on the zero line, negative ones hang from it.
	b, err := Bars{Categories: []string{"up", "down"}, Series: []BarSeries{{Values: []float64{4, -4}}}}.SVG()
	if err != nil {
		t.Fatal(err)
	}
	type rect struct {
		Y      float64 `xml:"y,attr"`
		Height float64 `xml:"height,attr"`
		Title  string  `xml:"title"`
	}
	var doc struct {
		G []struct {
			Rect []rect `xml:"rect"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var bars []rect
	for _, g := range doc.G {
		bars = append(bars, g.Rect...)
	}
	if len(bars) != 2 {
		t.Fatalf("found %d bars, want 2", len(bars))
	}
	up, down := bars[0], bars[1]
	if up.Height <= 0 || math.Abs(up.Height-down.Height) > 0.02 || math.Abs(up.Y+up.Height-down.Y) > 0.02 {
		t.Errorf("bars %+v and %+v do not meet at a common zero line with equal heights", up, down)
	}
	if up.Title != "category = up, value = 4" || down.Title != "category = down, value = -4" {
		t.Errorf("tooltips %q, %q", up.Title, down.Title)
	}
}

func TestEscaping(t *testing.T) {
	const nasty = `<b>"Tom" & 'Jerry'</b>`
	const control = "tab\there\x00nul\x1b"
	l := Line{
		Title: nasty, XLabel: nasty, YLabel: nasty, Desc: nasty + control,
		Series: []Series{{Name: nasty, X: []float64{1, 2}, Y: []float64{1, 2}}, {Name: control + "\xff", X: []float64{1}, Y: []float64{3}}},
		Marker: &Marker{X: 1.5, Label: nasty},
	}
	c := Bars{
		Title: nasty, XLabel: nasty, YLabel: nasty,
		Categories: []string{nasty, control},
		Series:     []BarSeries{{Name: nasty, Values: []float64{1, 2}}, {Name: "x", Values: []float64{3, 4}}},
	}
	for name, render := range map[string]func() ([]byte, error){"line": l.SVG, "bars": c.SVG} {
		t.Run(name, func(t *testing.T) {
			b, err := render()
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte("<b>")) || bytes.Contains(b, []byte(`"Tom"`)) || bytes.Contains(b, []byte("& ")) {
				t.Errorf("unescaped text in output:\n%s", b)
			}
			if bytes.ContainsRune(b, 0) || bytes.ContainsRune(b, 0x1b) {
				t.Error("control character in output")
			}
			d := walkSVG(t, b)
			if d.title != nasty {
				t.Errorf("title = %q, want %q", d.title, nasty)
			}
			if !slices.Contains(d.texts, nasty) {
				t.Errorf("no <text> reads %q: %q", nasty, d.texts)
			}
			tips := 0
			for _, tip := range d.tooltips {
				if strings.Contains(tip, nasty) {
					tips++
				}
			}
			if tips == 0 {
				t.Errorf("no tooltip contains %q: %q", nasty, d.tooltips)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	ok := []Series{{Name: "a", X: []float64{1, 2}, Y: []float64{1, 2}}}
	cats := []string{"a", "b"}
	tests := []struct {
		name   string
		render func() ([]byte, error)
		want   error
	}{
		{"line no series", Line{}.SVG, ErrNoData},
		{"line empty series", Line{Series: []Series{{Name: "a"}, {Name: "b"}}}.SVG, ErrNoData},
		{"line mismatched", Line{Series: []Series{{X: []float64{1, 2}, Y: []float64{1}}}}.SVG, ErrInvalid},
		{"line NaN y", Line{Series: []Series{{X: []float64{1, 2}, Y: []float64{1, nan}}}}.SVG, ErrInvalid},
		{"line Inf x", Line{Series: []Series{{X: []float64{inf}, Y: []float64{1}}}}.SVG, ErrInvalid},
		{"line NaN marker", Line{Series: ok, Marker: &Marker{X: nan}}.SVG, ErrInvalid},
		{"line span overflow", Line{Series: []Series{{X: []float64{1, 2}, Y: []float64{-math.MaxFloat64, math.MaxFloat64}}}}.SVG, ErrInvalid},
		{"line negative width", Line{Series: ok, Width: -1}.SVG, ErrInvalid},
		{"line too small", Line{Series: ok, Width: 60, Height: 60}.SVG, ErrInvalid},
		{"bars no categories", Bars{Series: []BarSeries{{Name: "a"}}}.SVG, ErrNoData},
		{"bars no series", Bars{Categories: cats}.SVG, ErrNoData},
		{"bars mismatched", Bars{Categories: cats, Series: []BarSeries{{Values: []float64{1}}}}.SVG, ErrInvalid},
		{"bars NaN", Bars{Categories: cats, Series: []BarSeries{{Values: []float64{1, nan}}}}.SVG, ErrInvalid},
		{"bars -Inf", Bars{Categories: cats, Series: []BarSeries{{Values: []float64{math.Inf(-1), 1}}}}.SVG, ErrInvalid},
		{"bars negative height", Bars{Categories: cats, Series: []BarSeries{{Values: []float64{1, 2}}}, Height: -5}.SVG, ErrInvalid},
		{"bars too small", Bars{Categories: cats, Series: []BarSeries{{Values: []float64{1, 2}}}, Width: 400, Height: 50}.SVG, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.render()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if b != nil {
				t.Errorf("got output with error: %q", b)
			}
		})
	}
}

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		lo, hi     float64
		target     int
		wantValues []float64
		wantLabels []string
	}{
		{0, 4339, 5, []float64{0, 1000, 2000, 3000, 4000, 5000}, []string{"0", "1000", "2000", "3000", "4000", "5000"}},
		{0, 1, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}, []string{"0", "0.2", "0.4", "0.6", "0.8", "1.0"}},
		{-3, 7, 5, []float64{-4, -2, 0, 2, 4, 6, 8}, []string{"-4", "-2", "0", "2", "4", "6", "8"}},
		{-250, -30, 5, []float64{-250, -200, -150, -100, -50, 0}, []string{"-250", "-200", "-150", "-100", "-50", "0"}},
		{0.3, 0.7, 5, []float64{0.3, 0.4, 0.5, 0.6, 0.7}, []string{"0.3", "0.4", "0.5", "0.6", "0.7"}},
		{0.001, 0.0043, 5, []float64{0.001, 0.002, 0.003, 0.004, 0.005}, []string{"0.001", "0.002", "0.003", "0.004", "0.005"}},
		{1e-12, 3e-12, 2, []float64{1e-12, 2e-12, 3e-12}, []string{"0.000000000001", "0.000000000002", "0.000000000003"}},
		{5, 5, 5, []float64{4, 4.5, 5, 5.5, 6}, []string{"4.0", "4.5", "5.0", "5.5", "6.0"}},
		{1, 1, 5, []float64{0, 0.5, 1, 1.5, 2}, []string{"0", "0.5", "1.0", "1.5", "2.0"}},
		{4339, 4339, 5, []float64{3000, 3500, 4000, 4500, 5000, 5500}, []string{"3000", "3500", "4000", "4500", "5000", "5500"}},
		{1e17, 1e17 + 16, 5, []float64{0, 5e16, 1e17, 1.5e17, 2e17}, []string{"0", "50000T", "100000T", "150000T", "200000T"}},
		{-2, -2, 5, []float64{-3, -2.5, -2, -1.5, -1}, []string{"-3.0", "-2.5", "-2.0", "-1.5", "-1.0"}},
		{0, 0, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}, []string{"0", "0.2", "0.4", "0.6", "0.8", "1.0"}},
		{1, 78, 6, []float64{0, 20, 40, 60, 80}, []string{"0", "20", "40", "60", "80"}},
		{0, 25000, 5, []float64{0, 5000, 10000, 15000, 20000, 25000}, []string{"0", "5k", "10k", "15k", "20k", "25k"}},
		{0, 2.2e6, 5, []float64{0, 5e5, 1e6, 1.5e6, 2e6, 2.5e6}, []string{"0", "0.5M", "1.0M", "1.5M", "2.0M", "2.5M"}},
		{-1.5e10, 0, 3, []float64{-1.5e10, -1e10, -5e9, 0}, []string{"-15G", "-10G", "-5G", "0"}},
		{1e6, 1e6 + 450, 5, []float64{1e6, 1e6 + 100, 1e6 + 200, 1e6 + 300, 1e6 + 400, 1e6 + 500}, []string{"1000.0k", "1000.1k", "1000.2k", "1000.3k", "1000.4k", "1000.5k"}},
		{-1e9, -1e9 + 7, 5, []float64{-1e9, -1e9 + 2, -1e9 + 4, -1e9 + 6, -1e9 + 8}, []string{"-1000000000", "-999999998", "-999999996", "-999999994", "-999999992"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%g..%g", tt.lo, tt.hi), func(t *testing.T) {
			got := niceTicks(tt.lo, tt.hi, tt.target)
			if !slices.Equal(got.values, tt.wantValues) {
				t.Errorf("values = %v, want %v", got.values, tt.wantValues)
			}
			if !slices.Equal(got.labels, tt.wantLabels) {
				t.Errorf("labels = %q, want %q", got.labels, tt.wantLabels)
			}
			if got.lo != got.values[0] || got.hi != got.values[len(got.values)-1] {
				t.Errorf("bounds %g..%g do not match the first and last tick", got.lo, got.hi)
			}
		})
	}
}

// TestNiceTicksProperties checks the documented guarantees over many ranges:
// the axis covers the data, the step is 1, 2 or 5 times a power of ten, the
// ticks are evenly spaced multiples of it, and there are no more than
// target+1 intervals (at most target over the data, plus the rounding out).
func TestNiceTicksProperties(t *testing.T) {
	var ranges [][2]float64
	for _, lo := range []float64{-1e9, -777, -3.3, -0.01, 0, 1e-7, 0.42, 1, 9.99, 1234, 5e12} {
		for _, span := range []float64{1e-6, 0.05, 0.9, 1, 7, 99.5, 4339, 1e6, 3.7e11} {
			ranges = append(ranges, [2]float64{lo, lo + span})
		}
	}
	for _, r := range ranges {
		for _, target := range []int{1, 2, 5, 6, 10} {
			lo, hi := r[0], r[1]
			tk := niceTicks(lo, hi, target)
			name := fmt.Sprintf("%g..%g/%d", lo, hi, target)
			if tk.lo > lo || tk.hi < hi {
				t.Errorf("%s: axis %g..%g does not cover the data", name, tk.lo, tk.hi)
			}
			mant := strconv.FormatFloat(tk.step, 'e', -1, 64)
			if m := mant[:strings.IndexByte(mant, 'e')]; m != "1" && m != "2" && m != "5" {
				t.Errorf("%s: step %g is not 1, 2 or 5 times a power of ten", name, tk.step)
			}
			n := len(tk.values) - 1
			if n < 1 || n > target+1 {
				t.Errorf("%s: %d intervals", name, n)
			}
			for i := 1; i < len(tk.values); i++ {
				d := tk.values[i] - tk.values[i-1]
				if math.Abs(d-tk.step) > tk.step*1e-6 {
					t.Errorf("%s: ticks %v are not evenly spaced", name, tk.values)
					break
				}
			}
			if len(tk.labels) != len(tk.values) || len(slices.Compact(slices.Clone(tk.labels))) != len(tk.labels) {
				t.Errorf("%s: labels %q repeat", name, tk.labels)
			}
		}
	}
}

// TestPaletteContrast checks that every series colour stands out by at least
// 3:1 (WCAG's minimum for graphics) on white, on the dark background of a
// standalone chart and on plain near-black.
func TestPaletteContrast(t *testing.T) {
	for _, c := range palette {
		for _, bg := range []string{"#ffffff", "#16181d", "#111111", "#0d1117"} {
			if r := contrast(c, bg); r < 3 {
				t.Errorf("colour %s on %s: contrast %.2f, want at least 3", c, bg, r)
			}
		}
	}
	// Text colours of a standalone chart, light and dark.
	for _, p := range [][2]string{{"#1f2328", "#ffffff"}, {"#e6edf3", "#16181d"}} {
		if r := contrast(p[0], p[1]); r < 7 {
			t.Errorf("text %s on %s: contrast %.2f, want at least 7", p[0], p[1], r)
		}
		if !strings.Contains(styleSheet, p[0]) || !strings.Contains(styleSheet, p[1]) {
			t.Errorf("style sheet does not use %s on %s", p[0], p[1])
		}
	}
}

func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

func luminance(hex string) float64 {
	v, err := strconv.ParseUint(hex[1:], 16, 32)
	if err != nil {
		panic(err)
	}
	lin := func(c uint64) float64 {
		s := float64(c) / 255
		if s <= 0.04045 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(v>>16&255) + 0.7152*lin(v>>8&255) + 0.0722*lin(v&255)
}

func TestDeterministicIDs(t *testing.T) {
	a := Line{Title: "a", Series: []Series{{X: []float64{1, 2}, Y: []float64{1, 2}}}}
	b := a
	b.Title = "b"
	a1, _ := a.SVG()
	a2, _ := a.SVG()
	b1, _ := b.SVG()
	if !bytes.Equal(a1, a2) {
		t.Error("the same chart rendered twice differs")
	}
	ida := walkSVG(t, a1).ids
	for id := range walkSVG(t, b1).ids {
		if ida[id] {
			t.Errorf("two different charts share id %q", id)
		}
	}
}

func TestWriteTo(t *testing.T) {
	l := exampleLine()
	want, err := l.SVG()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := l.WriteTo(&buf)
	if err != nil || n != int64(len(want)) || !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("Line.WriteTo = %d, %v; want %d bytes as from SVG", n, err, len(want))
	}
	c := exampleBars()
	want, _ = c.SVG()
	buf.Reset()
	n, err = c.WriteTo(&buf)
	if err != nil || n != int64(len(want)) || !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("Bars.WriteTo = %d, %v; want %d bytes as from SVG", n, err, len(want))
	}
	buf.Reset()
	if n, err := (Line{}).WriteTo(&buf); n != 0 || !errors.Is(err, ErrNoData) || buf.Len() != 0 {
		t.Errorf("WriteTo of an empty chart = %d, %v and wrote %d bytes", n, err, buf.Len())
	}
}

// exampleLine resembles the validation report's plot of cumulative repeat
// transactions, observed against a BG/NBD model's expectation.
func exampleLine() Line {
	var week, actual, model []float64
	cum := 0.0
	for w := 1; w <= 78; w++ {
		week = append(week, float64(w))
		rate := 75 * math.Exp(-float64(w)/60)
		if w%7 == 0 {
			rate *= 1.25 // weekly-ish bumps in the observed data
		}
		cum += rate
		actual = append(actual, math.Round(cum))
		model = append(model, math.Round(76*60*(1-math.Exp(-float64(w)/60))*100)/100)
	}
	return Line{
		Title:  "Cumulative repeat transactions",
		XLabel: "week",
		YLabel: "repeat transactions",
		Series: []Series{
			{Name: "actual", X: week, Y: actual},
			{Name: "BG/NBD model", X: week, Y: model, Dashed: true},
		},
		Marker: &Marker{X: 39, Label: "end of calibration"},
	}
}

// exampleBars resembles the report's frequency histogram, actual against
// model, with the tail collapsed into 7+.
func exampleBars() Bars {
	return Bars{
		Title:      "Customers by number of repeat transactions",
		XLabel:     "repeat transactions in calibration",
		YLabel:     "customers",
		Categories: []string{"0", "1", "2", "3", "4", "5", "6", "7+"},
		Series: []BarSeries{
			{Name: "actual", Values: []float64{1411, 439, 214, 100, 62, 38, 29, 64}},
			{Name: "model", Values: []float64{1431.4, 424.9, 202.3, 113.6, 68.9, 43.7, 28.6, 64.3}},
		},
	}
}

// TestExamples keeps testdata/example_line.svg and example_bars.svg in step
// with the renderer; run with -update to rewrite them.
func TestExamples(t *testing.T) {
	for name, render := range map[string]func() ([]byte, error){
		"example_line.svg": exampleLine().SVG,
		"example_bars.svg": exampleBars().SVG,
	} {
		got, err := render()
		if err != nil {
			t.Fatal(err)
		}
		walkSVG(t, got)
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date; run go test ./chart -update and review the diff", path)
		}
	}
}
