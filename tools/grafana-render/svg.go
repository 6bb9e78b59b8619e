package main

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Grafana's grid and dark theme.
const (
	gridColumns  = 24
	cellHeight   = 30 // px per grid row
	gridMargin   = 8  // px between panels
	pagePadding  = 16
	headerHeight = 64 // dashboard title and time range, above the grid

	canvasColor = "#111217"
	panelColor  = "#181B1F"
	borderColor = "#2B2E35"
	gridColor   = "#26292F"
	textColor   = "#CCCCDC"
	mutedColor  = "#9DA5B8"
	errorColor  = "#F2495C"

	fontFamily = "Inter, Helvetica, Arial, sans-serif"
	// charWidth estimates the advance of an average character, in ems, to fit text without a
	// font engine: generous, so that labels rather leave space than overlap.
	charWidth = 0.6
)

// page is everything the renderer draws: the dashboard, what each panel's queries returned,
// and the time window.
type page struct {
	title, subtitle string
	start, end      time.Time
	step            time.Duration
	width           int
	panels          []panel
	data            []panelData // by index of panels
}

// panelData is what a panel's queries returned: series in query order, or the first error.
type panelData struct {
	series []series
	err    error
}

// box is a panel placed on the page, in pixels.
type box struct {
	x, y, w, h float64
}

// layout places panels as Grafana's grid does at the page width: 24 columns with gutters,
// rows of cellHeight; a row panel is a full-width section header. It also returns the page's
// height.
func layout(panels []panel, width int) ([]box, float64) {
	colWidth := (float64(width) - 2*pagePadding - gridMargin*(gridColumns-1)) / gridColumns
	boxes := make([]box, len(panels))
	height := float64(headerHeight)
	for i, p := range panels {
		g := p.GridPos
		boxes[i] = box{
			x: pagePadding + float64(g.X)*(colWidth+gridMargin),
			y: headerHeight + float64(g.Y)*(cellHeight+gridMargin),
			w: float64(g.W)*colWidth + float64(max(g.W-1, 0))*gridMargin,
			h: float64(g.H)*cellHeight + float64(max(g.H-1, 0))*gridMargin,
		}
		height = max(height, boxes[i].y+boxes[i].h)
	}
	return boxes, height + pagePadding
}

// renderSVG draws the page as one SVG document.
func renderSVG(pg page) []byte {
	boxes, height := layout(pg.panels, pg.width)
	s := &svg{}
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" font-family="%s">`+"\n",
		pg.width, height, pg.width, height, fontFamily)
	s.printf(`<rect width="100%%" height="100%%" fill="%s"/>`+"\n", canvasColor)
	s.text(pagePadding, 30, 20, textColor, "start", "600", pg.title)
	s.text(pagePadding, 50, 13, mutedColor, "start", "", pg.subtitle)
	for i, p := range pg.panels {
		b := boxes[i]
		switch p.Type {
		case "row":
			s.text(b.x, b.y+b.h/2+6, 16, textColor, "start", "600", p.Title)
			continue
		case "timeseries":
			s.timeSeries(i, p, pg.data[i], b, pg)
		case "stat", "gauge":
			s.values(p, pg.data[i], b)
		default:
			s.message(s.frame(p, b), mutedColor, "panel type "+p.Type+" is not drawn")
		}
	}
	s.printf("</svg>\n")
	return []byte(s.String())
}

// svg accumulates the document.
type svg struct {
	strings.Builder
}

func (s *svg) printf(format string, args ...any) {
	fmt.Fprintf(&s.Builder, format, args...)
}

var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

func (s *svg) text(x, y, size float64, color, anchor, weight, text string) {
	w := ""
	if weight != "" {
		w = ` font-weight="` + weight + `"`
	}
	s.printf(`<text x="%.1f" y="%.1f" font-size="%.0f" fill="%s" text-anchor="%s"%s>%s</text>`+"\n",
		x, y, size, color, anchor, w, xmlEscaper.Replace(text))
}

func textWidth(text string, size float64) float64 {
	return float64(utf8.RuneCountInString(text)) * size * charWidth
}

// fit shortens text with an ellipsis to at most width pixels.
func fit(text string, size, width float64) string {
	if textWidth(text, size) <= width {
		return text
	}
	r := []rune(text)
	n := max(int(width/(size*charWidth))-1, 0)
	return string(r[:min(n, len(r))]) + "…"
}

// frame draws a panel's background and title and returns the box left for its content.
// body draws the panel's frame and returns the area inside it, or false once it has said why
// there is nothing to draw (a failed query, no data).
func (s *svg) body(p panel, d panelData, b box) (box, bool) {
	c := s.frame(p, b)
	switch {
	case d.err != nil:
		s.message(c, errorColor, d.err.Error())
		return c, false
	case noData(d.series):
		s.message(c, mutedColor, "No data")
		return c, false
	}
	return c, true
}

func (s *svg) frame(p panel, b box) box {
	s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="3" fill="%s" stroke="%s"/>`+"\n",
		b.x, b.y, b.w, b.h, panelColor, borderColor)
	s.text(b.x+10, b.y+21, 14, textColor, "start", "500", fit(p.Title, 14, b.w-20))
	return box{x: b.x + 10, y: b.y + 34, w: b.w - 20, h: b.h - 42}
}

// message writes a line in the middle of a content box: "No data", or an error.
func (s *svg) message(c box, color, text string) {
	s.text(c.x+c.w/2, c.y+c.h/2, 13, color, "middle", "", fit(text, 13, c.w))
}

// noData reports whether no series has a value to draw.
func noData(series []series) bool {
	for _, sr := range series {
		if _, ok := reduce(sr.Points, "lastNotNull"); ok {
			return false
		}
	}
	return true
}

const (
	legendFont = 12
	legendRow  = 16
	// legendShare is the most of a panel's content the legend takes. Grafana scrolls a longer
	// legend; legendRows chooses what a picture lists.
	legendShare = 0.45
	axisFont    = 11
)

// timeSeries draws lines (or bars) with a y axis in the panel's unit, a time axis and a table
// legend of the panel's calcs.
func (s *svg) timeSeries(index int, p panel, d panelData, b box, pg page) {
	c, ok := s.body(p, d, b)
	if !ok {
		return
	}
	defaults := p.FieldConfig.Defaults
	colors := seriesColors(p, d.series)

	// Legend rows at the bottom, as many as fit in its share.
	var rows []int
	var more string
	legendH := 0.0
	if p.Options.Legend.ShowLegend {
		header := min(len(p.Options.Legend.Calcs), 1)
		rows, more = legendRows(d.series, int(c.h*legendShare/legendRow)-header)
		legendH = float64(header+len(rows)+min(len(more), 1)) * legendRow
	}
	plot := box{x: c.x, y: c.y + 4, w: c.w, h: c.h - legendH - 4 - 20}

	// Y axis: from the data (and the soft minimum) out to ticks at 1, 2 or 5 × 10^n of the
	// unit's label step.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, sr := range d.series {
		for _, pt := range sr.Points {
			if !math.IsNaN(pt.V) && !math.IsInf(pt.V, 0) {
				lo, hi = math.Min(lo, pt.V), math.Max(hi, pt.V)
			}
		}
	}
	if softMin := defaults.Custom.AxisSoftMin; softMin != nil {
		lo = math.Min(lo, *softMin)
	}
	if defaults.Custom.DrawStyle == "bars" {
		lo = math.Min(lo, 0)
	}
	if hi <= lo {
		hi = lo + 1
	}
	scale := labelScale(defaults.Unit, math.Max(math.Abs(lo), math.Abs(hi)))
	tick := niceStep((hi-lo)/scale/math.Max(2, math.Floor(plot.h/40))) * scale
	lo, hi = math.Floor(lo/tick)*tick, math.Ceil(hi/tick)*tick
	var labels []string
	var ticks []float64
	labelW := 0.0
	for k := 0; ; k++ {
		v := lo + float64(k)*tick
		if v > hi+tick/2 {
			break
		}
		ticks = append(ticks, v)
		labels = append(labels, formatValue(v, defaults.Unit, nil))
		labelW = max(labelW, textWidth(labels[k], axisFont))
	}
	plot.x += labelW + 8
	plot.w -= labelW + 8
	y := func(v float64) float64 { return plot.y + plot.h - (v-lo)/(hi-lo)*plot.h }
	for k, v := range ticks {
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", plot.x, y(v), plot.x+plot.w, y(v), gridColor)
		s.text(plot.x-6, y(v)+4, axisFont, mutedColor, "end", "", labels[k])
	}

	// Time axis.
	t0, t1 := float64(pg.start.Unix()), float64(pg.end.Unix())
	x := func(t float64) float64 { return plot.x + (t-t0)/(t1-t0)*plot.w }
	every := timeStep(pg.end.Sub(pg.start), plot.w)
	format := "15:04"
	if every < time.Minute {
		format = "15:04:05"
	}
	for t := pg.start.Truncate(every).Add(every); !t.After(pg.end); t = t.Add(every) {
		xt := x(float64(t.Unix()))
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", xt, plot.y, xt, plot.y+plot.h, gridColor)
		// Only labels that clear the y axis's labels and the panel's edge.
		if label := t.UTC().Format(format); xt-textWidth(label, axisFont)/2 >= plot.x-4 && xt+textWidth(label, axisFont)/2 <= c.x+c.w {
			s.text(xt, plot.y+plot.h+15, axisFont, mutedColor, "middle", "", label)
		}
	}

	// Series, clipped to the plot.
	s.printf(`<clipPath id="plot%d"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"/></clipPath>`+"\n", index, plot.x, plot.y, plot.w, plot.h)
	s.printf(`<g clip-path="url(#plot%d)">`+"\n", index)
	base := y(math.Max(lo, math.Min(0, hi)))
	width := cmp.Or(defaults.Custom.LineWidth, 1)
	fill := defaults.Custom.FillOpacity / 100
	for i, sr := range d.series {
		if defaults.Custom.DrawStyle == "bars" {
			barW := math.Max(1, pg.step.Seconds()/(t1-t0)*plot.w*0.6)
			for _, pt := range sr.Points {
				if !math.IsNaN(pt.V) && !math.IsInf(pt.V, 0) && pt.V != 0 {
					top, bottom := math.Min(y(pt.V), base), math.Max(y(pt.V), base)
					s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.2f" stroke="%s" stroke-width="%.1f"/>`+"\n",
						x(pt.T)-barW/2, top, barW, bottom-top, colors[i], fill, colors[i], width)
				}
			}
			continue
		}
		for _, seg := range segments(sr.Points, pg.step.Seconds()) {
			var line strings.Builder
			for k, pt := range seg {
				if k > 0 {
					line.WriteString(" L")
				} else {
					line.WriteString("M")
				}
				fmt.Fprintf(&line, "%.1f %.1f", x(pt.T), y(pt.V))
			}
			if fill > 0 && len(seg) > 1 {
				s.printf(`<path d="%s L%.1f %.1f L%.1f %.1f Z" fill="%s" fill-opacity="%.2f"/>`+"\n",
					line.String(), x(seg[len(seg)-1].T), base, x(seg[0].T), base, colors[i], fill)
			}
			s.printf(`<path d="%s" fill="none" stroke="%s" stroke-width="%.1f" stroke-linejoin="round"/>`+"\n", line.String(), colors[i], width)
		}
	}
	s.printf("</g>\n")

	if p.Options.Legend.ShowLegend {
		s.legend(p, d.series, colors, rows, more, box{x: c.x, y: c.y + c.h - legendH, w: c.w, h: legendH})
	}
}

// seriesColors gives each series the next colour of the classic palette, unless an override
// of the panel fixes its colour.
func seriesColors(p panel, series []series) []string {
	colors := make([]string, len(series))
	for i, sr := range series {
		colors[i] = classicPalette[i%len(classicPalette)]
		for _, o := range p.FieldConfig.Overrides {
			matches := false
			switch o.Matcher.ID {
			case "byName":
				matches = sr.Name == o.Matcher.Options
			case "byRegexp":
				re, err := regexp.Compile(o.Matcher.Options)
				matches = err == nil && re.MatchString(sr.Name)
			}
			for _, prop := range o.Properties {
				if matches && prop.ID == "color" && prop.Value.FixedColor != "" {
					colors[i] = colorOf(prop.Value.FixedColor)
				}
			}
		}
	}
	return colors
}

// segments splits a series where it has no value: a non-finite sample, or a missing step.
func segments(points []point, step float64) [][]point {
	var out [][]point
	var cur []point
	for _, pt := range points {
		gap := len(cur) > 0 && pt.T-cur[len(cur)-1].T > 1.5*step
		if math.IsNaN(pt.V) || math.IsInf(pt.V, 0) || gap {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			if math.IsNaN(pt.V) || math.IsInf(pt.V, 0) {
				continue
			}
		}
		cur = append(cur, pt)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// legendRows picks the series the legend lists in at most fit rows, and says what it leaves
// out. Grafana scrolls a legend that does not fit; a picture cannot, so series without a value
// other than 0 give way to those with one. The rows keep the series' order.
func legendRows(series []series, fit int) (rows []int, more string) {
	var withValues, rest []int
	for i, sr := range series {
		if hasNonZero(sr.Points) {
			withValues = append(withValues, i)
		} else {
			rest = append(rest, i)
		}
	}
	order := slices.Concat(withValues, rest)
	if len(series) <= fit {
		return slices.Sorted(slices.Values(order)), ""
	}
	listed := max(fit-1, 0) // the last row says what is left out
	rows = slices.Sorted(slices.Values(order[:listed]))
	more = fmt.Sprintf("+ %d more series", len(series)-listed)
	allZero := true
	for _, i := range order[listed:] {
		if _, ok := reduce(series[i].Points, "max"); !ok || hasNonZero(series[i].Points) {
			allZero = false
		}
	}
	if allZero {
		more += ", all 0"
	}
	return rows, more
}

// hasNonZero reports whether a series has a finite value other than 0.
func hasNonZero(points []point) bool {
	for _, p := range points {
		if p.V != 0 && !math.IsNaN(p.V) && !math.IsInf(p.V, 0) {
			return true
		}
	}
	return false
}

// legend draws Grafana's table legend: a colour mark and name per listed series, then its
// calcs, and a last line for what is not listed.
func (s *svg) legend(p panel, series []series, colors []string, rows []int, more string, l box) {
	calcs := p.Options.Legend.Calcs
	unit, decimals := p.FieldConfig.Defaults.Unit, p.FieldConfig.Defaults.Decimals
	cells := make([][]string, len(rows))
	colW := make([]float64, len(calcs))
	for k, calc := range calcs {
		colW[k] = textWidth(cmp.Or(calcTitles[calc], calc), legendFont)
	}
	for r, i := range rows {
		for k, calc := range calcs {
			text := "-"
			if v, ok := reduce(series[i].Points, calc); ok {
				text = formatValue(v, unit, decimals)
			}
			cells[r] = append(cells[r], text)
			colW[k] = max(colW[k], textWidth(text, legendFont))
		}
	}
	right := l.x + l.w
	colRight := make([]float64, len(calcs))
	for k := len(calcs) - 1; k >= 0; k-- {
		colRight[k] = right
		right -= colW[k] + 14
	}
	nameW := right - l.x - 22
	header := min(len(calcs), 1)
	line := func(n int) float64 { return l.y + float64(n)*legendRow + 13 }
	for k, calc := range calcs {
		s.text(colRight[k], line(0), legendFont, mutedColor, "end", "", cmp.Or(calcTitles[calc], calc))
	}
	for r, i := range rows {
		y := line(header + r)
		s.printf(`<rect x="%.1f" y="%.1f" width="14" height="4" rx="1" fill="%s"/>`+"\n", l.x, y-5, colors[i])
		s.text(l.x+20, y, legendFont, textColor, "start", "", fit(series[i].Name, legendFont, nameW))
		for k := range calcs {
			s.text(colRight[k], y, legendFont, textColor, "end", "", cells[r][k])
		}
	}
	if more != "" {
		s.text(l.x+20, line(header+len(rows)), legendFont, mutedColor, "start", "", more)
	}
}

// values draws a stat or gauge panel: one cell per series with its reduced value, side by
// side in a wide panel and stacked in a tall one.
func (s *svg) values(p panel, d panelData, b box) {
	c, ok := s.body(p, d, b)
	if !ok {
		return
	}
	defaults := p.FieldConfig.Defaults
	calc := "lastNotNull"
	if len(p.Options.ReduceOptions.Calcs) > 0 {
		calc = p.Options.ReduceOptions.Calcs[0]
	}
	n := float64(len(d.series))
	for i, sr := range d.series {
		cell := box{x: c.x, y: c.y, w: c.w, h: c.h}
		if c.w >= c.h {
			cell.w = (c.w - 8*(n-1)) / n
			cell.x += float64(i) * (cell.w + 8)
		} else {
			cell.h = (c.h - 8*(n-1)) / n
			cell.y += float64(i) * (cell.h + 8)
		}
		v, ok := reduce(sr.Points, calc)
		text, color := "No data", mutedColor
		if ok {
			text, color = formatValue(v, defaults.Unit, defaults.Decimals), thresholdColor(defaults.Thresholds.Steps, v)
			if mt, mc, mapped := mapValue(defaults.Mappings, v); mapped {
				text = cmp.Or(mt, text)
				color = colorOf(cmp.Or(mc, color))
			}
		}
		if p.Type == "gauge" {
			s.gauge(p, cell, v, ok, text, color, sr.Name, len(d.series) > 1)
			continue
		}
		s.stat(p, cell, text, color, sr.Name)
	}
}

// stat draws one value of a stat panel (textMode value_and_name: the series name above it).
func (s *svg) stat(p panel, cell box, text, color, name string) {
	valueColor := textColor
	switch p.Options.ColorMode {
	case "background":
		s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="3" fill="%s"/>`+"\n", cell.x, cell.y, cell.w, cell.h, color)
		valueColor = "#FFFFFF"
	case "value":
		valueColor = color
	}
	size := math.Min(math.Min(cell.h*0.45, 56), (cell.w-16)/(charWidth*float64(max(utf8.RuneCountInString(text), 1))))
	nameSize := math.Max(12, math.Min(size*0.45, 18))
	mid := cell.y + cell.h/2
	s.text(cell.x+cell.w/2, mid-size*0.35, nameSize, valueColor, "middle", "", fit(name, nameSize, cell.w-16))
	s.text(cell.x+cell.w/2, mid+size*0.65, size, valueColor, "middle", "500", text)
}

// gauge draws Grafana's gauge: a 240° arc filled to the value in its threshold colour, the
// thresholds as a thin outer ring, the value in the middle.
func (s *svg) gauge(p panel, cell box, v float64, ok bool, text, color, name string, named bool) {
	defaults := p.FieldConfig.Defaults
	lo, hi := 0.0, 100.0
	if defaults.Min != nil {
		lo = *defaults.Min
	}
	if defaults.Max != nil {
		hi = *defaults.Max
	}
	nameH := 0.0
	if named {
		nameH = 20
	}
	r := math.Min(cell.w/2, (cell.h-nameH)/1.6) - 14
	cx, cy := cell.x+cell.w/2, cell.y+nameH+r+14
	thick := r * 0.2
	const start, sweep = 150.0, 240.0
	angle := func(v float64) float64 { return start + sweep*math.Max(0, math.Min(1, (v-lo)/(hi-lo))) }
	s.arc(cx, cy, r, start, start+sweep, thick, "#2B2E35")
	if ok {
		s.arc(cx, cy, r, start, angle(v), thick, color)
	}
	if p.Options.ShowThresholdMarkers {
		steps := defaults.Thresholds.Steps
		for k, st := range steps {
			from, to := lo, hi
			if st.Value != nil {
				from = *st.Value
			}
			if k+1 < len(steps) && steps[k+1].Value != nil {
				to = *steps[k+1].Value
			}
			s.arc(cx, cy, r+thick*0.5+5, angle(from), angle(to), 4, colorOf(st.Color))
		}
	}
	size := math.Min(r*0.5, (r*1.5)/(charWidth*float64(max(utf8.RuneCountInString(text), 1))))
	s.text(cx, cy+size*0.35, size, color, "middle", "500", text)
	if named {
		s.text(cx, cell.y+14, 13, textColor, "middle", "", fit(name, 13, cell.w))
	}
}

// arc strokes a circular arc between two angles (degrees, clockwise from 3 o'clock).
func (s *svg) arc(cx, cy, r, from, to, width float64, color string) {
	if to <= from {
		return
	}
	point := func(deg float64) (float64, float64) {
		rad := deg * math.Pi / 180
		return cx + r*math.Cos(rad), cy + r*math.Sin(rad)
	}
	x1, y1 := point(from)
	x2, y2 := point(to)
	large := 0
	if to-from > 180 {
		large = 1
	}
	s.printf(`<path d="M%.1f %.1f A%.1f %.1f 0 %d 1 %.1f %.1f" fill="none" stroke="%s" stroke-width="%.1f"/>`+"\n",
		x1, y1, r, r, large, x2, y2, color, width)
}

// niceStep rounds a raw tick distance up to 1, 2 or 5 × 10^n.
func niceStep(raw float64) float64 {
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// timeStep is the distance between time labels: a round interval, about 110 px apart.
func timeStep(span time.Duration, width float64) time.Duration {
	want := time.Duration(float64(span) * 110 / width)
	for _, d := range []time.Duration{
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	} {
		if d >= want {
			return d
		}
	}
	return 24 * time.Hour
}
