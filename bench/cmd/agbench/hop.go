package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// hopRow is one message size measured on every relay hop of the run:
// attachgate (and -compare), a plain Postfix relay hop and, for latency,
// the direct path to the sink.
type hopRow struct {
	name     string
	sessions int
	paths    []hopPath
}

type hopPath struct {
	path       string // gateway, compare, postfix, direct
	rate       float64
	cpuMs      float64 // server CPU per message, ms (median over rounds)
	fsyncs     float64 // fsync+fdatasync per message; <0: not counted
	p50, p99   float64 // ms, MAIL to final reply, row's session count
	hasRate    bool
	fsyncCount int
	fsyncMsgs  int
}

var pathLabel = map[string]string{
	"gateway": "attachgate",
	"compare": "attachgate -compare",
	"postfix": "Postfix relay hop",
	"direct":  "direct to smtp-sink",
}

// hopRow adds fsync counts and latency under load to a throughput row's
// rounds.
func (e *env) hopRow(name string, m, crlf testMessage, sessions, count int, rounds []roundStat) hopRow {
	row := hopRow{name: name, sessions: sessions}
	paths := []string{"gateway"}
	if e.gw2 != nil {
		paths = append(paths, "compare")
	}
	if e.pf != nil {
		paths = append(paths, "postfix")
	}
	paths = append(paths, "direct")
	for _, path := range paths {
		hp := hopPath{path: path, fsyncs: -1}
		var rates, cpus []float64
		for _, st := range rounds {
			if st.path == path {
				rates = append(rates, st.rate)
				cpus = append(cpus, st.gwCPU/float64(st.count)*1000)
			}
		}
		if len(rates) > 0 {
			hp.rate, hp.cpuMs, hp.hasRate = median(rates), median(cpus), true
		}
		if path != "direct" && e.strace != "" {
			hp.fsyncCount, hp.fsyncMsgs = e.countFsyncs(path, m, sessions, count)
			if hp.fsyncMsgs > 0 {
				hp.fsyncs = float64(hp.fsyncCount) / float64(hp.fsyncMsgs)
			}
		}
		lat := e.latencyUnderLoad(path, crlf, sessions, max(2, count/sessions))
		hp.p50, hp.p99 = percentile(lat, 50), percentile(lat, 99)
		logf("  %-20s %7.1f msg/s, %.2f ms CPU/msg, %.2f fsync/msg, latency p50 %.1f ms p99 %.1f ms",
			pathLabel[path], hp.rate, hp.cpuMs, hp.fsyncs, hp.p50, hp.p99)
		row.paths = append(row.paths, hp)
	}
	return row
}

func (e *env) serverAddr(path string) string {
	switch path {
	case "gateway":
		return e.gw.smtpAddr
	case "compare":
		return e.gw2.smtpAddr
	case "postfix":
		return e.pf.addr
	}
	return e.sink.addr
}

// fsyncQuiet is longer than attachgate's bound on an unsynced relaxed
// commit (audit's relaxedSyncDelay, 1 s) and Postfix's queue manager's
// wake-up after a delivery.
const fsyncQuiet = 1500 * time.Millisecond

// countFsyncs runs one untimed round of count messages with strace -c
// attached to the path's server and returns the fsync+fdatasync calls
// and the messages. strace stops the traced threads at every system call,
// which is why this round is not one of the timed ones.
func (e *env) countFsyncs(path string, m testMessage, sessions, count int) (int, int) {
	var pids []int
	switch path {
	case "postfix":
		pids = e.pf.pids()
	case "compare":
		pids = []int{e.gw2.pid()}
	default:
		pids = []int{e.gw.pid()}
	}
	out := filepath.Join(e.work, fmt.Sprintf("strace-%s-%d.txt", path, time.Now().UnixNano()))
	// The window holds exactly the fsyncs of this round's messages: it
	// opens after the server was quiet for fsyncQuiet (so the deferred
	// sync of the previous round's last commit falls before it) and
	// closes fsyncQuiet after the last reply (so this round's does not
	// fall after it).
	time.Sleep(fsyncQuiet)
	c, err := startFsyncCounter(e.strace, out, pids)
	if err != nil {
		e.notes = append(e.notes, "fsync count: "+err.Error())
		return 0, 0
	}
	if _, _, _, err := runTimed(e.smtpSource(e.serverAddr(path), m, sessions, count)...); err != nil {
		c.stop()
		fatalf("fsync round %s: %v", path, err)
	}
	if path == "postfix" {
		if err := e.pf.drain(10 * time.Minute); err != nil {
			c.stop()
			fatalf("%v", err)
		}
	}
	time.Sleep(fsyncQuiet)
	n, err := c.stop()
	if err != nil {
		e.notes = append(e.notes, "fsync count: "+err.Error())
		return 0, 0
	}
	return n, count
}

// latencyUnderLoad sends perSession messages on each of sessions
// connections at once with agbench's own client and returns each
// transaction's time from MAIL to the final reply, in ms.
func (e *env) latencyUnderLoad(path string, m testMessage, sessions, perSession int) []float64 {
	addr := e.serverAddr(path)
	var mu sync.Mutex
	var lat []float64
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for range sessions {
		wg.Go(func() {
			c, err := dialSMTP(addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.close()
			for i := 0; i < perSession; i++ {
				d, err := c.send(benchFrom, benchTo, m.Path)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				lat = append(lat, ms(d))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		fatalf("latency %s: %v", path, err)
	}
	if path == "postfix" {
		if err := e.pf.drain(10 * time.Minute); err != nil {
			fatalf("%v", err)
		}
	}
	return lat
}

// hopTable is the side-by-side table of the relay hops with the targets of
// issue 10.
func (e *env) hopTable() string {
	if len(e.hops) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| row | path | msg/s | CPU ms/msg | fsync/msg | latency p50 / p99 (ms) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range e.hops {
		for _, p := range r.paths {
			rate, cpu, fs := "–", "–", "–"
			if p.hasRate {
				rate = fmt.Sprintf("%.1f", p.rate)
				if p.path != "direct" {
					cpu = fmt.Sprintf("%.2f", p.cpuMs)
				}
			}
			if p.fsyncs >= 0 {
				fs = fmt.Sprintf("%.2f (%d / %d)", p.fsyncs, p.fsyncCount, p.fsyncMsgs)
			} else if p.path == "direct" {
				fs = "0"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.1f / %.1f |\n", r.name, pathLabel[p.path], rate, cpu, fs, p.p50, p.p99)
		}
	}
	return b.String()
}

// hopTargets checks issue 10's targets against Postfix in this run.
func (e *env) hopTargets() []string {
	var out []string
	for _, r := range e.hops {
		var gw, pf *hopPath
		for i := range r.paths {
			switch r.paths[i].path {
			case "gateway":
				gw = &r.paths[i]
			case "postfix":
				pf = &r.paths[i]
			}
		}
		if gw == nil {
			continue
		}
		maxFsync := 2.0
		if strings.Contains(r.name, "nothing to link") {
			maxFsync = 1
		}
		if pf != nil && pf.hasRate && pf.rate > 0 {
			ratio := gw.rate / pf.rate
			out = append(out, fmt.Sprintf("%s: attachgate/Postfix msg/s = %.2f (target ≥ 1.0: %s)", r.name, ratio, verdict(ratio >= 1, fmt.Sprintf("%.2f", ratio))))
			if !strings.Contains(r.name, "nothing to link") {
				out = append(out, fmt.Sprintf("%s: CPU per message %.2f ms vs Postfix %.2f ms (target ≤ Postfix: %s)", r.name, gw.cpuMs, pf.cpuMs,
					verdict(gw.cpuMs <= pf.cpuMs, fmt.Sprintf("%.2f > %.2f", gw.cpuMs, pf.cpuMs))))
			}
		}
		if gw.fsyncs >= 0 {
			out = append(out, fmt.Sprintf("%s: %.2f fsyncs per message (target ≤ %.0f: %s)", r.name, gw.fsyncs, maxFsync,
				verdict(gw.fsyncs <= maxFsync, fmt.Sprintf("%.2f", gw.fsyncs))))
		}
	}
	return out
}
