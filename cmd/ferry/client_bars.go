package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"ferry/store"
)

// barView shows one progress bar per host (its status and step, bytes uploaded) with the live
// log scrolling above them, for a terminal.
type barView struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[string]*mpb.Bar
	last map[string]*store.HostStep
}

func newBarView(out io.Writer, steps []*store.HostStep) *barView {
	v := &barView{
		p:    mpb.New(mpb.WithOutput(out), mpb.WithWidth(40)),
		bars: map[string]*mpb.Bar{},
		last: map[string]*store.HostStep{},
	}
	width := 0
	for _, h := range steps {
		width = max(width, len(h.Host))
	}
	for _, h := range steps {
		host := h.Host
		v.last[host] = h
		// Total 0: the size is set once the upload starts (a kept release uploads nothing).
		v.bars[host] = v.p.AddBar(0,
			mpb.PrependDecorators(
				decor.Name(host, decor.WC{W: width + 1, C: decor.DindentRight}),
				decor.Any(func(decor.Statistics) string { return v.state(host) }, decor.WC{W: 20, C: decor.DindentRight}),
			),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return v.bytes(host) })),
		)
	}
	return v
}

func (v *barView) state(host string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	h := v.last[host]
	if h == nil {
		return ""
	}
	if h.Status == store.HostRunning && h.Step != "" {
		return h.Step
	}
	return h.Status
}

// bytes reads "1.2 MiB / 3.4 MiB" while uploading, "kept" for a release already on the host.
func (v *barView) bytes(host string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	h := v.last[host]
	switch {
	case h == nil:
		return ""
	case h.BytesTotal > 0:
		return byteCount(h.BytesSent) + " / " + byteCount(h.BytesTotal)
	case h.Status == store.HostSucceeded:
		return "nothing to upload"
	}
	return ""
}

func (v *barView) lines(lines []store.LogLine) {
	for _, l := range lines {
		if l.Host != "" {
			fmt.Fprintf(v.p, "%s | %s\n", l.Host, l.Text)
		} else {
			fmt.Fprintln(v.p, l.Text)
		}
	}
}

// hosts records the host steps for the decorators and moves the bars. The lock guards only
// last: bar methods wait for the bar's goroutine, which may be drawing with the decorators.
func (v *barView) hosts(steps []*store.HostStep) {
	v.mu.Lock()
	for _, h := range steps {
		if v.bars[h.Host] != nil {
			v.last[h.Host] = h
		}
	}
	v.mu.Unlock()
	for _, h := range steps {
		bar := v.bars[h.Host]
		if bar == nil {
			continue
		}
		if h.BytesTotal > 0 && !bar.Completed() && !bar.Aborted() {
			bar.SetTotal(h.BytesTotal, false)
			bar.SetCurrent(h.BytesSent)
		}
		switch h.Status {
		case store.HostSucceeded:
			bar.SetTotal(-1, true)
		case store.HostFailed, store.HostCanceled, store.HostSkipped:
			bar.Abort(false)
		}
	}
}

func (v *barView) close(final []*store.HostStep) {
	v.hosts(final)
	for _, bar := range v.bars {
		if !bar.Completed() {
			bar.Abort(false)
		}
	}
	v.p.Wait()
}
