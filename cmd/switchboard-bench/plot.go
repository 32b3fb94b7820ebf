package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
)

// runPlot redraws the latency plot from the last broadcast line of a JSON
// lines file: plot IN.jsonl OUT.svg.
func runPlot(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: switchboard-bench plot RESULTS.jsonl OUT.svg")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	type wire struct {
		Scenario string         `json:"scenario"`
		Params   map[string]any `json:"params"`
		Results  []struct {
			Target string `json:"target"`
			Steps  []struct {
				Name string              `json:"name"`
				M    map[string]*float64 `json:"m"`
			} `json:"steps"`
		} `json:"results"`
	}
	var last *wire
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var w wire
		if json.Unmarshal(sc.Bytes(), &w) == nil && w.Scenario == "broadcast" {
			last = &w
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if last == nil {
		return fmt.Errorf("%s holds no broadcast result", args[0])
	}
	var results []targetResult
	for _, r := range last.Results {
		tr := targetResult{Target: r.Target}
		for _, st := range r.Steps {
			s := step{Name: st.Name}
			for _, k := range []string{"delivered_per_s", "p50_ms", "p99_ms"} {
				if v := st.M[k]; v != nil {
					s.M.add(k, *v, "", "")
				}
			}
			tr.Steps = append(tr.Steps, s)
		}
		results = append(results, tr)
	}
	bound, _ := last.Params["max_p99_ms"].(float64)
	conns, _ := last.Params["conns"].(float64)
	title := fmt.Sprintf("broadcast to %.0f subscribers: latency against delivery rate", conns)
	return writeLatencyPlot(args[1], title, bound, results)
}

// plotSeries is one line of the latency plot.
type plotSeries struct {
	Label string
	Color string
	Dash  bool
	X, Y  []float64
}

// writeLatencyPlot writes an SVG chart of publish-to-receive latency (log
// scale, ms) against delivered messages per second, one line per target and
// percentile, from the steps of broadcast runs.
// bound, when positive, is drawn as a horizontal line (the p99 bound in ms).
// Steps that were retried are left out.
func writeLatencyPlot(path, title string, bound float64, results []targetResult) error {
	colors := map[string]string{kindSwitchboard: "#1f6feb", kindBaseline: "#d1242f"}
	var series []plotSeries
	for _, r := range results {
		for _, q := range []struct {
			key  string
			dash bool
		}{{"p99_ms", false}, {"p50_ms", true}} {
			s := plotSeries{Label: r.Target + " " + strings.TrimSuffix(q.key, "_ms"), Color: colors[r.Target], Dash: q.dash}
			for _, st := range r.Steps {
				if strings.HasSuffix(st.Name, "(failed)") {
					continue
				}
				x, ok1 := st.M.get("delivered_per_s")
				y, ok2 := st.M.get(q.key)
				if ok1 && ok2 && !math.IsNaN(x.Value) && !math.IsNaN(y.Value) && x.Value > 0 {
					s.X = append(s.X, x.Value)
					s.Y = append(s.Y, max(y.Value, 0.01))
				}
			}
			if len(s.X) > 0 {
				series = append(series, s)
			}
		}
	}
	if len(series) == 0 {
		return fmt.Errorf("plot: no steps to draw")
	}
	return os.WriteFile(path, []byte(renderPlot(title, bound, series)), 0o644)
}

// renderPlot draws series on a linear x axis and a logarithmic y axis.
func renderPlot(title string, bound float64, series []plotSeries) string {
	const (
		w, h                 = 760, 460
		left, right, top, bo = 80, 200, 50, 60
	)
	pw, ph := float64(w-left-right), float64(h-top-bo)
	xmax, ymin, ymax := 0.0, math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for i := range s.X {
			xmax = max(xmax, s.X[i])
			ymin = min(ymin, s.Y[i])
			ymax = max(ymax, s.Y[i])
		}
	}
	xmax = niceCeil(xmax * 1.05)
	if bound > 0 {
		ymin, ymax = min(ymin, bound), max(ymax, bound)
	}
	lo := math.Floor(math.Log10(ymin))
	hi := math.Ceil(math.Log10(ymax))
	if hi <= lo {
		hi = lo + 1
	}
	px := func(x float64) float64 { return float64(left) + x/xmax*pw }
	py := func(y float64) float64 { return float64(top) + ph - (math.Log10(y)-lo)/(hi-lo)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", left, escapeXML(title))
	// Grid and y labels: one line per decade.
	for d := lo; d <= hi; d++ {
		y := py(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, float64(left)+pw, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, trimFloat(math.Pow(10, d)))
	}
	for i := 0; i <= 5; i++ {
		xv := xmax * float64(i) / 5
		x := px(xv)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x, top, x, float64(top)+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, float64(top)+ph+18, humanCount(xv))
	}
	if bound > 0 {
		y := py(bound)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="2 3"/>`+"\n", left, y, float64(left)+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#666">p99 bound %s ms</text>`+"\n", float64(left)+pw-4, y-4, trimFloat(bound))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">messages delivered per second</text>`+"\n", float64(left)+pw/2, h-14)
	fmt.Fprintf(&b, `<text transform="translate(20 %.1f) rotate(-90)" text-anchor="middle">publish-to-receive latency (ms, log scale)</text>`+"\n", float64(top)+ph/2)
	for i, s := range series {
		var pts []string
		for j := range s.X {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[j]), py(s.Y[j])))
		}
		dash := ""
		if s.Dash {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", s.Color, dash, strings.Join(pts, " "))
		for j := range s.X {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(s.X[j]), py(s.Y[j]), s.Color)
		}
		ly := float64(top + 10 + 22*i)
		lx := float64(left) + pw + 16
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, ly, lx+28, ly, s.Color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+34, ly+4, escapeXML(s.Label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return trimFloat(v/1e6) + "M"
	case v >= 1e3:
		return trimFloat(v/1e3) + "k"
	default:
		return trimFloat(v)
	}
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func escapeXML(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
