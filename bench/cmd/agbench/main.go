// Command agbench is `make bench`: it measures attachgate side by side with
// the baselines of issue 6 on this machine, in one run, and writes BENCH.md.
//
// It starts Postfix's smtp-sink on a free loopback port and, for every
// throughput row, sends the same generated message with Postfix's
// smtp-source straight into the sink (direct) and through a running
// attachgate daemon whose next hop is that sink (gateway), alternating the
// two paths round by round so that load from other work on the machine
// falls on both. The download row does the same with wrk against nginx
// serving the plaintext file and against attachgate's signed download URL.
// The memory rows start a fresh daemon each and read its VmHWM from
// /proc/<pid>/status after relaying and downloading a large attachment.
//
// Usage (from the repository root; `make bench` does this):
//
//	go run ./bench/cmd/agbench -bin bin/attachgate -out BENCH.md
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "agbench: "+format+"\n", args...)
	cleanup()
	os.Exit(1)
}

var (
	cleanupMu    sync.Mutex
	cleanupFuncs []func()
)

func atCleanup(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanupFuncs = append(cleanupFuncs, f)
}

func cleanup() {
	cleanupMu.Lock()
	fs := cleanupFuncs
	cleanupFuncs = nil
	cleanupMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

type options struct {
	bin        string
	bin2       string
	out        string
	profileDir string
	rounds     int
	bigSize    int64
	quick      bool
	keep       bool
	goBench    string
	benchtime  string
	wrkSeconds int
	rows       string
}

// env is everything the rows share.
type env struct {
	opt     options
	work    string
	sinkBin string
	srcBin  string
	nginx   string
	wrk     string

	sink    *sink // discarding, the next hop of both paths
	capture *sink // dumping, to read links out of relayed mail
	gw      *gateway
	gw2     *gateway // -compare
	compare []string

	msg1m, msg10m, msg5k    testMessage // LF, for smtp-source -F
	crlf1m, crlf10m, crlf5k testMessage // CRLF, for our client

	// pf is a private Postfix instance as a plain relay hop to the same
	// sink (nil when it cannot run: not root, or Postfix missing).
	pf                    *postfix
	strace                string // "" when strace is missing: no fsync counts
	hops                  []hopRow
	rows                  []result
	notes                 []string
	profiles              []profileResult
	goBenchOut            string
	loadBefore, loadAfter string
	start, end            time.Time
	commands              []string
	issue2                string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/attachgate", "attachgate binary")
	flag.StringVar(&o.bin2, "compare", "", "a second attachgate binary to run beside -bin in the relay rows (to measure a change side by side)")
	flag.StringVar(&o.out, "out", "BENCH.md", "report to write (empty: none)")
	flag.StringVar(&o.profileDir, "profiles", "bench/out", "where pprof profiles are saved (empty: no profiling)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per path and row")
	flag.Int64Var(&o.bigSize, "big", 1<<30, "attachment size of the peak-RSS relay/download row")
	flag.BoolVar(&o.quick, "quick", false, "smoke test: 1 round, fewer messages, 64 MiB big file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.goBench, "gobench", "./vault ./mailpart ./linkserver ./pipeline", "packages whose Go benchmarks go into the report (empty: skip)")
	flag.StringVar(&o.benchtime, "benchtime", "10x", "go test -benchtime")
	flag.IntVar(&o.wrkSeconds, "wrk-seconds", 8, "duration of one wrk round")
	flag.StringVar(&o.rows, "rows", "all", "comma list of rows: relay1m,relay10m,relay5k,download,latency,rss1g,issue2,rss16")
	flag.Parse()
	if o.quick {
		o.rounds = 1
		o.bigSize = 64 << 20
		o.wrkSeconds = 3
		o.benchtime = "2x"
	}
	// An interrupted run still stops what it started (daemons, Postfix).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fatalf("interrupted")
	}()
	e := &env{opt: o, start: time.Now()}
	e.loadBefore = loadavg()
	defer cleanup()
	e.setup()
	e.run()
	e.end = time.Now()
	e.loadAfter = loadavg()
	cleanup()
	report := e.report()
	fmt.Println(report.console)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report.markdown), 0o644); err != nil {
			fatalf("write %s: %v", o.out, err)
		}
		logf("wrote %s", o.out)
	}
}

func (e *env) want(row string) bool {
	if e.opt.rows == "all" {
		return true
	}
	return slices.Contains(strings.Split(e.opt.rows, ","), row)
}

func (e *env) setup() {
	var err error
	if e.sinkBin, err = lookPath("/usr/sbin/smtp-sink", "smtp-sink"); err != nil {
		fatalf("%v", err)
	}
	if e.srcBin, err = lookPath("/usr/sbin/smtp-source", "smtp-source"); err != nil {
		fatalf("%v", err)
	}
	if e.nginx, err = lookPath("/usr/sbin/nginx", "nginx"); err != nil {
		fatalf("%v", err)
	}
	if e.wrk, err = lookPath("wrk"); err != nil {
		fatalf("%v", err)
	}
	if e.opt.bin, err = filepath.Abs(e.opt.bin); err != nil {
		fatalf("%v", err)
	}
	if _, err := os.Stat(e.opt.bin); err != nil {
		fatalf("attachgate binary: %v (run make build)", err)
	}
	e.work, err = os.MkdirTemp("", "agbench-")
	if err != nil {
		fatalf("%v", err)
	}
	// nginx workers and smtp-sink run as nobody and must reach their files.
	os.Chmod(e.work, 0o755)
	if !e.opt.keep {
		atCleanup(func() { os.RemoveAll(e.work) })
	} else {
		logf("work directory %s (kept)", e.work)
	}
	if e.sink, err = startSink(e.sinkBin, e.work, false); err != nil {
		fatalf("%v", err)
	}
	atCleanup(e.sink.stop)
	if e.capture, err = startSink(e.sinkBin, e.work, true); err != nil {
		fatalf("%v", err)
	}
	atCleanup(e.capture.stop)
	logf("smtp-sink on %s (discard) and %s (capture)", e.sink.addr, e.capture.addr)
	e.commands = append(e.commands,
		fmt.Sprintf("%s -u nobody -h sink.bench.localhost 127.0.0.1:PORT 256", e.sinkBin),
		fmt.Sprintf("%s -u nobody -d DIR/%%H%%M%%S. -h sink.bench.localhost 127.0.0.1:PORT 256   (capture sink: next hop of the download and memory daemons, to read links)", e.sinkBin))

	msgs := filepath.Join(e.work, "msgs")
	os.MkdirAll(msgs, 0o755)
	gen := func(name string, payload int64, seed byte, eol string) testMessage {
		m, err := writeAttachmentMessage(filepath.Join(msgs, name), payload, seed, strings.TrimSuffix(name, filepath.Ext(name))+".pdf", eol)
		if err != nil {
			fatalf("generate %s: %v", name, err)
		}
		return m
	}
	e.msg1m = gen("1m.eml", 1<<20, 1, "\n")
	e.msg10m = gen("10m.eml", 10<<20, 2, "\n")
	e.crlf1m = gen("1m-crlf.eml", 1<<20, 1, "\r\n")
	e.crlf10m = gen("10m-crlf.eml", 10<<20, 2, "\r\n")
	if e.msg5k, err = writePlainMessage(filepath.Join(msgs, "5k.eml"), 5<<10, "\n"); err != nil {
		fatalf("%v", err)
	}
	if e.crlf5k, err = writePlainMessage(filepath.Join(msgs, "5k-crlf.eml"), 5<<10, "\r\n"); err != nil {
		fatalf("%v", err)
	}
	e.strace, _ = lookPath("/usr/bin/strace", "strace")
	if e.strace == "" {
		e.notes = append(e.notes, "strace not found: no fsync counts (bench/deps.sh installs it)")
	}
	if pfBin, err := lookPath("/usr/sbin/postfix", "postfix"); err != nil {
		e.notes = append(e.notes, "Postfix relay hop left out: "+err.Error())
	} else if e.pf, err = startPostfix(pfBin, e.work, e.sink.addr); err != nil {
		e.notes = append(e.notes, "Postfix relay hop left out: "+err.Error())
		e.pf = nil
	} else {
		atCleanup(e.pf.stop)
		logf("postfix (private instance, postfix -c %s) on %s, relayhost the sink", e.pf.dir, e.pf.addr)
		e.commands = append(e.commands, fmt.Sprintf("postfix -c %s start   (main.cf: relayhost = [smtp-sink], own queue_directory, mynetworks 127.0.0.0/8, no TLS; master.cf: smtpd on 127.0.0.1:PORT)", e.pf.dir))
	}
	logf("generated messages: 1 MiB attachment (%d bytes), 10 MiB (%d bytes), 5 KiB plain (%d bytes)",
		e.msg1m.Size, e.msg10m.Size, e.msg5k.Size)
}

func (e *env) startGW(name, nextHop string, profile bool) *gateway {
	g, err := startGateway(e.opt.bin, gatewayConfig{name: name, dir: filepath.Join(e.work, "gw-"+name),
		nextHop: nextHop, profile: profile && e.opt.profileDir != ""})
	if err != nil {
		fatalf("start gateway %s: %v", name, err)
	}
	atCleanup(g.stop)
	return g
}

func (e *env) run() {
	e.gw = e.startGW("relay", e.sink.addr, true)
	logf("attachgate (throughput daemon) smtp %s, links %s", e.gw.smtpAddr, e.gw.linkURL)
	if e.opt.bin2 != "" {
		bin2, err := filepath.Abs(e.opt.bin2)
		if err != nil {
			fatalf("%v", err)
		}
		g, err := startGateway(bin2, gatewayConfig{name: "relay-compare", dir: filepath.Join(e.work, "gw-relay-compare"), nextHop: e.sink.addr})
		if err != nil {
			fatalf("start -compare gateway: %v", err)
		}
		atCleanup(g.stop)
		e.gw2 = g
		logf("attachgate -compare %s: smtp %s", bin2, g.smtpAddr)
	}

	scale := func(n int) int {
		if e.opt.quick {
			return max(8, n/4)
		}
		return n
	}
	if e.want("relay1m") {
		e.rows = append(e.rows, e.throughputRow("relay throughput, 1 MiB attachment, 8 sessions", e.msg1m, e.crlf1m, 8, scale(400), scale(200), 0.6))
	}
	if e.want("relay10m") {
		e.rows = append(e.rows, e.throughputRow("relay throughput, 10 MiB attachment, 4 sessions", e.msg10m, e.crlf10m, 4, scale(48), scale(24), 0.6))
	}
	if e.want("relay5k") {
		e.rows = append(e.rows, e.throughputRow("relay throughput, 5 KiB mail, nothing to link, 8 sessions", e.msg5k, e.crlf5k, 8, scale(16000), scale(2000), 0.8))
	}
	if e.want("latency") {
		e.rows = append(e.rows, e.latencyRow(100))
	}
	if e.opt.profileDir != "" {
		if e.want("relay1m") {
			e.profileRelay("cpu-relay-1m", "relaying 1 MiB attachments (smtp-source -s 8)", e.msg1m, 8, 32)
		}
		if e.want("relay5k") {
			e.profileRelay("cpu-relay-5k", "relaying 5 KiB plain mails (smtp-source -s 8)", e.msg5k, 8, 400)
		}
		e.profileAllocs()
	}
	e.gw.stop()
	if e.gw2 != nil {
		e.gw2.stop()
	}

	if e.want("download") {
		e.rows = append(e.rows, e.downloadRow())
	}
	if e.want("rss1g") {
		e.rows = append(e.rows, e.rssRelayDownloadRow())
	}
	if e.want("issue2") || e.want("rss16") {
		e.issue2AndConcurrentRows()
	}
	if e.opt.goBench != "" {
		e.runGoBench()
	}
}

// ---- throughput rows ----

type result struct {
	name    string
	direct  string
	gateway string
	ratio   string
	target  string
	met     bool
	verdict string
	detail  []string
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	// Nearest rank.
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (e *env) smtpSource(addr string, m testMessage, sessions, count int) []string {
	return []string{e.srcBin, "-s", fmt.Sprint(sessions), "-m", fmt.Sprint(count), "-d",
		"-f", benchFrom, "-t", benchTo, "-M", "client.bench.localhost", "-F", m.Path, addr}
}

type roundStat struct {
	path            string
	count           int
	wall            time.Duration
	rate            float64 // messages/s
	srcCPU, sinkCPU float64 // seconds
	gwCPU           float64 // of the path's server: attachgate or Postfix
}

func (e *env) throughputRound(path string, m testMessage, sessions, count int) roundStat {
	addr, gw := e.sink.addr, e.gw
	switch path {
	case "gateway":
		addr = e.gw.smtpAddr
	case "compare":
		addr, gw = e.gw2.smtpAddr, e.gw2
	case "postfix":
		addr = e.pf.addr
	}
	serverCPU := func() float64 {
		if path == "postfix" {
			return e.pf.cpuSeconds()
		}
		return cpuSeconds(gw.pid())
	}
	sink0, gw0 := cpuSeconds(e.sink.pid()), serverCPU()
	start := time.Now()
	_, cpu, _, err := runTimed(e.smtpSource(addr, m, sessions, count)...)
	if err != nil {
		if path == "postfix" {
			fatalf("postfix path: %v\nmaillog:\n%s", err, e.pf.tail())
		}
		fatalf("%s path: %v\ngateway log:\n%s", path, err, gw.tail())
	}
	if path == "postfix" {
		// Postfix answers 250 once the message is queued; attachgate once
		// the next hop has it. A round ends when Postfix delivered too.
		if err := e.pf.drain(10 * time.Minute); err != nil {
			fatalf("%v", err)
		}
	}
	wall := time.Since(start)
	st := roundStat{path: path, count: count, wall: wall, rate: float64(count) / wall.Seconds(), srcCPU: cpu,
		sinkCPU: cpuSeconds(e.sink.pid()) - sink0}
	if path != "direct" {
		st.gwCPU = serverCPU() - gw0
	}
	return st
}

// throughputRow measures one row; each path gets its own message count
// (about the same time per round: the direct path is much faster).
func (e *env) throughputRow(name string, m, crlf testMessage, sessions, directCount, gwCount int, want float64) result {
	logf("%s: %d (direct) / %d (gateway) messages of %d bytes per round, %d rounds per path", name, directCount, gwCount, m.Size, e.opt.rounds)
	e.commands = append(e.commands, strings.Join(e.smtpSource("127.0.0.1:PORT", m, sessions, gwCount), " ")+
		fmt.Sprintf("   (PORT: attachgate; direct path: smtp-sink's port and -m %d)", directCount))
	// Warm up both paths (page cache, connections, SQLite).
	e.throughputRound("direct", m, sessions, sessions*2)
	e.throughputRound("gateway", m, sessions, sessions*2)
	if e.pf != nil {
		e.throughputRound("postfix", m, sessions, sessions*2)
	}

	var direct, gw, gw2 []float64
	var rounds []roundStat
	for r := 0; r < e.opt.rounds; r++ {
		order := []string{"direct", "gateway"}
		if e.pf != nil {
			order = append(order, "postfix")
		}
		if e.gw2 != nil {
			order = append(order, "compare")
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, path := range order {
			count := directCount
			if path != "direct" {
				count = gwCount
			}
			st := e.throughputRound(path, m, sessions, count)
			rounds = append(rounds, st)
			switch path {
			case "direct":
				direct = append(direct, st.rate)
			case "gateway":
				gw = append(gw, st.rate)
			case "compare":
				gw2 = append(gw2, st.rate)
			}
			logf("  round %d %-7s %7.1f msg/s  (%.2fs; CPU: smtp-source %.0f%%, smtp-sink %.0f%%, server %.0f%%)",
				r+1, path, st.rate, st.wall.Seconds(), pct(st.srcCPU, st.wall), pct(st.sinkCPU, st.wall), pct(st.gwCPU, st.wall))
		}
	}
	md, mg := median(direct), median(gw)
	ratio := mg / md
	if e.gw2 != nil {
		mc := median(gw2)
		e.compare = append(e.compare, fmt.Sprintf("%s: direct %.1f msg/s, -bin %.1f msg/s (%.2f), -compare %.1f msg/s (%.2f); compare/bin = %.2f",
			name, md, mg, ratio, mc, mc/md, mc/mg))
	}
	mib := float64(m.Size) / (1 << 20)
	res := result{
		name:    name,
		direct:  fmt.Sprintf("%.1f msg/s (%.0f MiB/s)", md, md*mib),
		gateway: fmt.Sprintf("%.1f msg/s (%.0f MiB/s)", mg, mg*mib),
		ratio:   fmt.Sprintf("%.2f", ratio),
		target:  fmt.Sprintf("≥ %.1f", want),
		met:     ratio >= want,
	}
	for _, st := range rounds {
		line := fmt.Sprintf("%s: %d messages, %.1f msg/s in %.2fs; CPU %% of one core: smtp-source %.0f, smtp-sink %.0f",
			st.path, st.count, st.rate, st.wall.Seconds(), pct(st.srcCPU, st.wall), pct(st.sinkCPU, st.wall))
		switch st.path {
		case "direct":
		case "postfix":
			line += fmt.Sprintf(", Postfix (all its processes) %.0f (%.2f ms CPU per message)", pct(st.gwCPU, st.wall), st.gwCPU/float64(st.count)*1000)
		default:
			line += fmt.Sprintf(", attachgate %.0f (%.2f ms CPU per message)", pct(st.gwCPU, st.wall), st.gwCPU/float64(st.count)*1000)
		}
		res.detail = append(res.detail, line)
	}
	e.hops = append(e.hops, e.hopRow(name, m, crlf, sessions, gwCount, rounds))
	res.verdict = verdict(res.met, fmt.Sprintf("%.2f vs %.1f", ratio, want))
	return res
}

func pct(cpu float64, wall time.Duration) float64 { return cpu / wall.Seconds() * 100 }

func verdict(met bool, s string) string {
	if met {
		return "met"
	}
	return "MISSED (" + s + ")"
}

// ---- latency row ----

func (e *env) latencyRow(n int) result {
	logf("latency: %d sequential 1 MiB mails per path, alternating direct and gateway", n)
	e.commands = append(e.commands, "agbench's own SMTP client (bench/cmd/agbench/smtpclient.go): one connection per path, MAIL..final reply timed, message sent with sendfile")
	dc, err := dialSMTP(e.sink.addr)
	if err != nil {
		fatalf("latency: %v", err)
	}
	defer dc.close()
	gc, err := dialSMTP(e.gw.smtpAddr)
	if err != nil {
		fatalf("latency: %v", err)
	}
	defer gc.close()
	var cc *smtpClient
	if e.gw2 != nil {
		if cc, err = dialSMTP(e.gw2.smtpAddr); err != nil {
			fatalf("latency: %v", err)
		}
		defer cc.close()
	}
	var d, g, c []float64
	for i := -3; i < n; i++ { // 3 warm-up transactions each
		td, err := dc.send(benchFrom, benchTo, e.crlf1m.Path)
		if err != nil {
			fatalf("latency direct: %v", err)
		}
		tg, err := gc.send(benchFrom, benchTo, e.crlf1m.Path)
		if err != nil {
			fatalf("latency gateway: %v\n%s", err, e.gw.tail())
		}
		var tc time.Duration
		if cc != nil {
			if tc, err = cc.send(benchFrom, benchTo, e.crlf1m.Path); err != nil {
				fatalf("latency -compare gateway: %v\n%s", err, e.gw2.tail())
			}
		}
		if i >= 0 {
			d = append(d, ms(td))
			g = append(g, ms(tg))
			c = append(c, ms(tc))
		}
	}
	if cc != nil {
		e.compare = append(e.compare, fmt.Sprintf("latency, 1 MiB: direct p50 %.1f / p99 %.1f ms, -bin p50 %.1f / p99 %.1f ms, -compare p50 %.1f / p99 %.1f ms",
			percentile(d, 50), percentile(d, 99), percentile(g, 50), percentile(g, 99), percentile(c, 50), percentile(c, 99)))
	}
	added := make([]float64, n)
	for i := range added {
		added[i] = g[i] - d[i]
	}
	p50, p99 := percentile(g, 50)-percentile(d, 50), percentile(g, 99)-percentile(d, 99)
	res := result{
		name:    fmt.Sprintf("latency added to one 1 MiB mail (p50 / p99 over %d)", n),
		direct:  fmt.Sprintf("p50 %.1f ms / p99 %.1f ms", percentile(d, 50), percentile(d, 99)),
		gateway: fmt.Sprintf("p50 %.1f ms / p99 %.1f ms", percentile(g, 50), percentile(g, 99)),
		ratio:   fmt.Sprintf("+%.1f / +%.1f ms", p50, p99),
		target:  "p50 ≤ 15 ms",
		met:     p50 <= 15,
	}
	res.verdict = verdict(res.met, fmt.Sprintf("+%.1f ms", p50))
	res.detail = append(res.detail,
		fmt.Sprintf("added latency = gateway percentile − direct percentile; pairwise (gateway_i − direct_i): p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			percentile(added, 50), percentile(added, 99), slices.Max(added)))
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ---- download row ----

func (e *env) downloadRow() result {
	const size = 10 << 20
	logf("download: 10 MiB file, wrk -c16, nginx (plaintext, sendfile) vs attachgate signed URL")
	g := e.startGW("download", e.capture.addr, true)
	_, link, err := relayAndFindLink(g, e.capture, e.crlf10m.Path)
	if err != nil {
		fatalf("download setup: %v\n%s", err, g.tail())
	}
	u, err := signedURL(link)
	if err != nil {
		fatalf("download setup: %v", err)
	}
	if _, err := download(u, size, e.crlf10m.SHA256); err != nil {
		fatalf("download check: %v", err)
	}
	www := filepath.Join(e.work, "www")
	os.MkdirAll(www, 0o755)
	if err := writePlainFile(filepath.Join(www, "file.bin"), size, 2); err != nil {
		fatalf("%v", err)
	}
	ng, err := startNginx(e.nginx, e.work, www)
	if err != nil {
		fatalf("%v", err)
	}
	atCleanup(ng.stop)
	nginxURL := "http://" + ng.addr + "/file.bin"
	if _, err := download(nginxURL, size, e.crlf10m.SHA256); err != nil {
		fatalf("nginx check: %v", err)
	}
	wrkArgs := func(u string) []string {
		return []string{e.wrk, "-t2", "-c16", fmt.Sprintf("-d%ds", e.opt.wrkSeconds), u}
	}
	e.commands = append(e.commands, strings.Join(wrkArgs("URL"), " ")+
		"   (URL: nginx http://127.0.0.1:PORT/file.bin, or attachgate's signed /f/… URL from GET landing page + POST form, fetched afresh each round)")

	var rn, ra []float64
	var res result
	for r := 0; r < e.opt.rounds; r++ {
		order := []string{"nginx", "attachgate"}
		if r%2 == 1 {
			order = []string{"attachgate", "nginx"}
		}
		for _, who := range order {
			target := nginxURL
			server0 := groupCPUSeconds(ng.pid())
			if who == "attachgate" {
				u, err := signedURL(link)
				if err != nil {
					fatalf("download: %v", err)
				}
				target = u
				server0 = cpuSeconds(g.pid())
			}
			wall, cpu, out, err := runTimed(wrkArgs(target)...)
			if err != nil {
				fatalf("wrk: %v", err)
			}
			server1 := groupCPUSeconds(ng.pid())
			if who == "attachgate" {
				server1 = cpuSeconds(g.pid())
			}
			w, err := parseWrk(string(out))
			if err != nil {
				fatalf("wrk %s: %v\n%s", who, err, out)
			}
			rate := w.rps * size / (1 << 30)
			if who == "nginx" {
				rn = append(rn, rate)
			} else {
				ra = append(ra, rate)
			}
			line := fmt.Sprintf("%s: %.2f GiB/s (%.1f req/s, %d non-2xx, %d socket errors); CPU %% of one core: wrk %.0f, server %.0f",
				who, rate, w.rps, w.non2xx, w.sockErrs, pct(cpu, wall), pct(server1-server0, wall))
			res.detail = append(res.detail, line)
			logf("  round %d %s", r+1, line)
			if w.non2xx > 0 || w.sockErrs > 0 {
				e.notes = append(e.notes, "download row: errors during "+who+" round: "+line)
			}
		}
	}
	if e.opt.profileDir != "" {
		e.profileDownload(g, link)
	}
	ng.stop()
	g.stop()
	mn, ma := median(rn), median(ra)
	ratio := ma / mn
	res.name = "download, 10 MiB file, 16 connections"
	res.direct = fmt.Sprintf("nginx %.2f GiB/s", mn)
	res.gateway = fmt.Sprintf("%.2f GiB/s", ma)
	res.ratio = fmt.Sprintf("%.2f", ratio)
	res.target = "≥ 0.7"
	res.met = ratio >= 0.7
	res.verdict = verdict(res.met, fmt.Sprintf("%.2f vs 0.7", ratio))
	return res
}

type wrkResult struct {
	rps              float64
	non2xx, sockErrs int
}

func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	found := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:"):
			fmt.Sscanf(strings.TrimPrefix(line, "Requests/sec:"), "%f", &w.rps)
			found = true
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			fmt.Sscanf(strings.TrimPrefix(line, "Non-2xx or 3xx responses:"), "%d", &w.non2xx)
		case strings.HasPrefix(line, "Socket errors:"):
			var a, b, c, d int
			fmt.Sscanf(line, "Socket errors: connect %d, read %d, write %d, timeout %d", &a, &b, &c, &d)
			w.sockErrs = a + b + c + d
		}
	}
	if !found {
		return w, fmt.Errorf("no Requests/sec in wrk output")
	}
	return w, nil
}

// ---- memory rows ----

func mib(kib int64) float64 { return float64(kib) / 1024 }

func (e *env) rssRelayDownloadRow() result {
	size := e.opt.bigSize
	label := humanBytes(size)
	logf("peak RSS: relay, then download, a %s attachment (fresh daemon)", label)
	path := filepath.Join(e.work, "msgs", "big-crlf.eml")
	t0 := time.Now()
	m, err := writeAttachmentMessage(path, size, 7, "big.bin", "\r\n")
	if err != nil {
		fatalf("generate big message: %v", err)
	}
	logf("  generated %s message (%d bytes) in %.1fs", label, m.Size, time.Since(t0).Seconds())
	defer os.Remove(path)
	g := e.startGW("rss-big", e.capture.addr, false)
	startRSS := procStatusKiB(g.pid(), "VmRSS")
	took, link, err := relayAndFindLink(g, e.capture, path)
	if err != nil {
		fatalf("relay big: %v\n%s", err, g.tail())
	}
	relayHWM := procStatusKiB(g.pid(), "VmHWM")
	reset := resetPeakRSS(g.pid())
	u, err := signedURL(link)
	if err != nil {
		fatalf("big: %v", err)
	}
	dl, err := download(u, size, m.SHA256)
	if err != nil {
		fatalf("big: %v\n%s", err, g.tail())
	}
	dlHWM := procStatusKiB(g.pid(), "VmHWM")
	g.stop()
	peak := max(relayHWM, dlHWM)
	res := result{
		name:    fmt.Sprintf("peak RSS relaying, then downloading, a %s attachment", label),
		direct:  "—",
		gateway: fmt.Sprintf("%.1f MiB", mib(peak)),
		ratio:   "—",
		target:  "≤ 64 MiB",
		met:     mib(peak) <= 64,
	}
	res.verdict = verdict(res.met, fmt.Sprintf("%.1f MiB", mib(peak)))
	d := fmt.Sprintf("RSS after start %.1f MiB; relay of the %d-byte message took %.1fs (%.0f MiB/s), VmHWM after relay %.1f MiB; ",
		mib(startRSS), m.Size, took.Seconds(), float64(m.Size)/(1<<20)/took.Seconds(), mib(relayHWM))
	if reset {
		d += fmt.Sprintf("VmHWM reset, download (SHA-256 checked) took %.1fs (%.0f MiB/s), VmHWM during download %.1f MiB", dl.Seconds(), float64(size)/(1<<20)/dl.Seconds(), mib(dlHWM))
	} else {
		d += fmt.Sprintf("download (SHA-256 checked) took %.1fs, VmHWM over both %.1f MiB", dl.Seconds(), mib(dlHWM))
	}
	res.detail = append(res.detail, d)
	return res
}

func (e *env) issue2AndConcurrentRows() {
	const size = 100 << 20
	logf("issue 2 figure: relay, then download, a 100 MiB attachment (fresh daemon)")
	path := filepath.Join(e.work, "msgs", "100m-crlf.eml")
	m, err := writeAttachmentMessage(path, size, 9, "hundred.bin", "\r\n")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.Remove(path)
	g := e.startGW("issue2", e.capture.addr, false)
	t0 := time.Now()
	took, link, err := relayAndFindLink(g, e.capture, path)
	if err != nil {
		fatalf("issue2 relay: %v\n%s", err, g.tail())
	}
	u, err := signedURL(link)
	if err != nil {
		fatalf("issue2: %v", err)
	}
	dl, err := download(u, size, m.SHA256)
	if err != nil {
		fatalf("issue2: %v", err)
	}
	total := time.Since(t0)
	hwm := procStatusKiB(g.pid(), "VmHWM")
	g.stop()
	e.issue2 = fmt.Sprintf("relaying a 100 MiB attachment (%d-byte message) took %.2fs, downloading it (landing page, POST, GET; SHA-256 checked) %.2fs; %.2fs in all; the daemon's peak RSS (VmHWM) %.1f MiB",
		m.Size, took.Seconds(), dl.Seconds(), total.Seconds(), mib(hwm))
	logf("  %s", e.issue2)
	if e.want("issue2") {
		r := result{name: "issue 2: relay, then download, a 100 MiB attachment (wall time, peak RSS)",
			direct: "—", gateway: fmt.Sprintf("%.2fs + %.2fs, %.1f MiB", took.Seconds(), dl.Seconds(), mib(hwm)),
			ratio: "—", target: "≤ 64 MiB (design bar)", met: mib(hwm) <= 64}
		r.verdict = verdict(r.met, fmt.Sprintf("%.1f MiB", mib(hwm)))
		r.detail = []string{e.issue2}
		e.rows = append(e.rows, r)
	}
	if !e.want("rss16") {
		return
	}

	// A fresh daemon on the same data directory: its peak comes from the
	// downloads alone.
	logf("peak RSS: 16 concurrent 100 MiB downloads (fresh daemon)")
	g = restartGateway(e, g)
	urls := make([]string, 16)
	for i := range urls {
		u, err := signedURL(link)
		if err != nil {
			fatalf("rss16: %v", err)
		}
		urls[i] = u
	}
	startRSS := procStatusKiB(g.pid(), "VmRSS")
	var wg sync.WaitGroup
	errs := make([]error, len(urls))
	t0 = time.Now()
	for i, u := range urls {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = download(u, size, m.SHA256) }()
	}
	wg.Wait()
	wall := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			fatalf("rss16: %v\n%s", err, g.tail())
		}
	}
	hwm = procStatusKiB(g.pid(), "VmHWM")
	g.stop()
	r := result{name: "peak RSS, 16 concurrent 100 MiB downloads", direct: "—",
		gateway: fmt.Sprintf("%.1f MiB", mib(hwm)), ratio: "—", target: "≤ 128 MiB", met: mib(hwm) <= 128}
	r.verdict = verdict(r.met, fmt.Sprintf("%.1f MiB", mib(hwm)))
	r.detail = []string{fmt.Sprintf("RSS after start %.1f MiB; 16 × 100 MiB (SHA-256 checked) in %.1fs, %.0f MiB/s aggregate",
		mib(startRSS), wall.Seconds(), 16*100/wall.Seconds())}
	e.rows = append(e.rows, r)
}

// restartGateway starts a new daemon process on g's configuration.
func restartGateway(e *env, g *gateway) *gateway {
	cfg := filepath.Join(g.dir, "attachgate.yaml")
	p, err := startProc("attachgate restart", filepath.Join(g.dir, "attachgate-2.log"), e.opt.bin, "serve", "-config", cfg)
	if err != nil {
		fatalf("%v", err)
	}
	ng := *g
	ng.proc = p
	atCleanup(p.stop)
	if err := waitListening(ng.smtpAddr, 20*time.Second); err != nil {
		fatalf("%v\n%s", err, p.tail())
	}
	if err := waitHTTP(ng.linkURL+"/healthz", 20*time.Second); err != nil {
		fatalf("%v\n%s", err, p.tail())
	}
	return &ng
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ---- Go benchmarks ----

func (e *env) runGoBench() {
	pkgs := strings.Fields(e.opt.goBench)
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", e.opt.benchtime}, pkgs...)
	logf("go %s", strings.Join(args, " "))
	e.commands = append(e.commands, "go "+strings.Join(args, " "))
	// The Makefile puts /usr/local/go/bin on PATH.
	goBin := "go"
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	}
	_, _, out, err := runTimed(append([]string{goBin}, args...)...)
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "ok") || strings.HasPrefix(line, "pkg:") ||
			strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "---") || strings.HasPrefix(line, "cpu:") {
			keep = append(keep, line)
		}
	}
	e.goBenchOut = strings.Join(keep, "\n")
	if err != nil {
		e.notes = append(e.notes, "go test -bench failed: "+err.Error())
	}
}
