package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// metric is one named figure of a result.
type metric struct {
	Key   string
	Value float64 // NaN: not measured
	Unit  string
	// Better is "+" when higher is better, "-" when lower is better, ""
	// when the figure is context (no ratio is shown for it).
	Better string
}

// metrics is an ordered list of figures; it marshals to a JSON object in
// order, with null for figures not measured.
type metrics []metric

func (ms *metrics) add(key string, v float64, unit, better string) {
	*ms = append(*ms, metric{Key: key, Value: v, Unit: unit, Better: better})
}

func (ms metrics) get(key string) (metric, bool) {
	for _, m := range ms {
		if m.Key == key {
			return m, true
		}
	}
	return metric{}, false
}

// MarshalJSON implements json.Marshaler.
func (ms metrics) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.Key)
		b.Write(k)
		b.WriteByte(':')
		b.WriteString(jsonNumber(m.Value))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func jsonNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "null"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// targetResult is what one scenario measured against one target.
type targetResult struct {
	Target  string   `json:"target"`
	Summary metrics  `json:"summary"`
	Steps   []step   `json:"steps,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// step is one load level of a scenario.
type step struct {
	Name string  `json:"name"`
	M    metrics `json:"m"`
}

// report is the outcome of one invocation: a scenario against one or both
// targets.
type report struct {
	Scenario string            `json:"scenario"`
	Time     string            `json:"time"`
	Machine  map[string]string `json:"machine"`
	Params   map[string]any    `json:"params"`
	Results  []targetResult    `json:"results"`
	// Ratios are Switchboard's summary figures divided by the baseline's.
	Ratios metrics `json:"ratios_switchboard_over_baseline,omitempty"`
}

// machineInfo describes the machine the figures come from.
func machineInfo(node string) map[string]string {
	m := map[string]string{
		"nproc": strconv.Itoa(runtime.NumCPU()),
		"go":    runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/net/core/netdev_max_backlog"); err == nil {
		m["netdev_max_backlog"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/net/core/somaxconn"); err == nil {
		m["somaxconn"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if node != "" {
		if out, err := exec.Command(node, "--version").Output(); err == nil {
			m["node"] = strings.TrimSpace(string(out))
		}
	}
	return m
}

// computeRatios divides Switchboard's summary by the baseline's, for the
// figures that have a direction.
func (r *report) computeRatios() {
	var sb, bl *targetResult
	for i := range r.Results {
		switch r.Results[i].Target {
		case kindSwitchboard:
			sb = &r.Results[i]
		case kindBaseline:
			bl = &r.Results[i]
		}
	}
	if sb == nil || bl == nil || len(sb.Summary) == 0 || len(bl.Summary) == 0 {
		return
	}
	for _, m := range sb.Summary {
		if m.Better == "" {
			continue
		}
		o, ok := bl.Summary.get(m.Key)
		v := math.NaN()
		if ok && o.Value != 0 && !math.IsNaN(o.Value) && !math.IsNaN(m.Value) {
			v = m.Value / o.Value
		}
		r.Ratios.add(m.Key, v, "x", m.Better)
	}
}

// printTables writes the readable form of r.
func (r *report) printTables(w io.Writer) {
	fmt.Fprintf(w, "\n== %s  (%s; %s cores, kernel %s, %s", r.Scenario, r.Time, r.Machine["nproc"], r.Machine["kernel"], r.Machine["go"])
	if n := r.Machine["node"]; n != "" {
		fmt.Fprintf(w, ", node %s", n)
	}
	fmt.Fprintln(w, ")")
	for _, res := range r.Results {
		if len(res.Steps) > 0 {
			fmt.Fprintf(w, "\n%s steps:\n", res.Target)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprint(tw, "step\t")
			for _, m := range res.Steps[0].M {
				fmt.Fprintf(tw, "%s\t", shortKey(m.Key, m.Unit))
			}
			fmt.Fprintln(tw)
			for _, s := range res.Steps {
				fmt.Fprintf(tw, "%s\t", s.Name)
				for _, m := range s.M {
					fmt.Fprintf(tw, "%s\t", formatValue(m.Value))
				}
				fmt.Fprintln(tw)
			}
			tw.Flush()
		}
		for _, n := range res.Notes {
			fmt.Fprintf(w, "note (%s): %s\n", res.Target, n)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "figure\tunit\t")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t", res.Target)
	}
	if len(r.Ratios) > 0 {
		fmt.Fprint(tw, "switchboard/baseline\t")
	}
	fmt.Fprintln(tw)
	seen := map[string]bool{}
	for _, res := range r.Results {
		for _, m := range res.Summary {
			if seen[m.Key] {
				continue
			}
			seen[m.Key] = true
			fmt.Fprintf(tw, "%s\t%s\t", m.Key, m.Unit)
			for _, o := range r.Results {
				if v, ok := o.Summary.get(m.Key); ok {
					fmt.Fprintf(tw, "%s\t", formatValue(v.Value))
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
			if len(r.Ratios) > 0 {
				if v, ok := r.Ratios.get(m.Key); ok {
					s := formatValue(v.Value)
					if !math.IsNaN(v.Value) {
						s += map[string]string{"+": " (higher is better)", "-": " (lower is better)"}[v.Better]
					}
					fmt.Fprintf(tw, "%s\t", s)
				} else {
					fmt.Fprint(tw, "\t")
				}
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
}

func shortKey(k, unit string) string {
	if unit == "" || unit == "count" {
		return k
	}
	return k + "(" + unit + ")"
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatInt(int64(v), 10)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// jsonLine returns r as one line of JSON.
func (r *report) jsonLine() string {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	return string(b)
}

func nowString() string { return time.Now().UTC().Format(time.RFC3339) }
