package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat; 100
// on every Linux architecture Go supports.
const clockTicks = 100

// freePort returns a loopback TCP port nobody listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func mustFreeAddr() string {
	p, err := freePort()
	if err != nil {
		fatalf("free port: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// waitListening waits until addr accepts TCP connections.
func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proc is a server process the benchmark started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(name, logPath string, argv ...string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Own process group, so a stop reaches children (nginx workers).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group and waits, then SIGKILL.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// cpuSeconds returns utime+stime of pid and its reaped children.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// groupCPUSeconds sums cpuSeconds over the processes of a process group
// (nginx master and workers).
func groupCPUSeconds(pgid int) float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total float64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 3 {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			total += cpuSeconds(pid)
		}
	}
	return total
}

// procStatusKiB reads a "VmXXX:  123 kB" field of /proc/<pid>/status.
func procStatusKiB(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	return -1
}

// resetPeakRSS resets VmHWM to the current RSS (Linux 4.0+, "5" to
// clear_refs); false if the kernel refuses.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// gateway is one attachgate daemon with its own data directory.
type gateway struct {
	*proc
	smtpAddr  string
	linkURL   string
	adminAddr string
	adminTok  string
	dir       string
}

type gatewayConfig struct {
	name    string
	dir     string // data and config live here
	nextHop string
	profile bool // enable the admin API (pprof) with a random token
}

func startGateway(bin string, gc gatewayConfig) (*gateway, error) {
	if err := os.MkdirAll(gc.dir, 0o700); err != nil {
		return nil, err
	}
	g := &gateway{smtpAddr: mustFreeAddr(), dir: gc.dir}
	linkAddr := mustFreeAddr()
	g.linkURL = "http://" + linkAddr
	admin := `  listen: ""`
	if gc.profile {
		g.adminAddr = mustFreeAddr()
		tok := make([]byte, 24)
		rand.Read(tok)
		g.adminTok = hex.EncodeToString(tok)
		sum := sha256.Sum256([]byte(g.adminTok))
		admin = fmt.Sprintf(`  listen: %q
  tokens:
    - name: bench
      sha256: %q
      role: admin
      networks: ["127.0.0.0/8"]`, g.adminAddr, hex.EncodeToString(sum[:]))
	}
	cfg := fmt.Sprintf(`# written by bench/cmd/agbench
smtp:
  listen: %q
  hostname: "gw.bench.localhost"
  max_message_bytes: %d
  trusted_networks: ["127.0.0.0/8", "::1/128"]
next_hop:
  address: %q
  tls: none
links:
  listen: %q
  base_url: %q
  default_expiry: "24h"
  language: en
storage:
  dir: %q
admin:
%s
log:
  level: info
`, g.smtpAddr, int64(2)<<30, gc.nextHop, linkAddr, g.linkURL, filepath.Join(gc.dir, "data"), admin)
	cfgPath := filepath.Join(gc.dir, "attachgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("attachgate "+gc.name, filepath.Join(gc.dir, "attachgate.log"), bin, "serve", "-config", cfgPath)
	if err != nil {
		return nil, err
	}
	g.proc = p
	if err := waitListening(g.smtpAddr, 20*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w; log:\n%s", err, p.tail())
	}
	if err := waitHTTP(g.linkURL+"/healthz", 20*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w; log:\n%s", err, p.tail())
	}
	return g, nil
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sink is a Postfix smtp-sink: discarding, or dumping every transaction
// into a directory (to read the links the gateway wrote).
type sink struct {
	*proc
	addr    string
	dumpDir string
}

func startSink(bin, dir string, dump bool) (*sink, error) {
	s := &sink{addr: mustFreeAddr()}
	args := []string{bin}
	if os.Geteuid() == 0 {
		// smtp-sink refuses to run as root without -u.
		args = append(args, "-u", "nobody")
	}
	if dump {
		s.dumpDir = filepath.Join(dir, "captured")
		if err := os.MkdirAll(s.dumpDir, 0o777); err != nil {
			return nil, err
		}
		os.Chmod(s.dumpDir, 0o777)
		args = append(args, "-d", s.dumpDir+"/%H%M%S.")
	}
	// -h names it in replies; backlog 256.
	args = append(args, "-h", "sink.bench.localhost", s.addr, "256")
	name := "smtp-sink"
	if dump {
		name = "smtp-sink (capture)"
	}
	p, err := startProc(name, filepath.Join(dir, filepath.Base(bin)+map[bool]string{true: "-capture", false: ""}[dump]+".log"), args...)
	if err != nil {
		return nil, err
	}
	s.proc = p
	if err := waitListening(s.addr, 10*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w; log:\n%s", err, p.tail())
	}
	return s, nil
}

// captured returns the dump files, oldest first by name.
func (s *sink) captured() []string {
	m, _ := filepath.Glob(filepath.Join(s.dumpDir, "*"))
	return m
}

// nginx serves dir on a loopback port.
type nginx struct {
	*proc
	addr string
}

func startNginx(bin, dir, root string) (*nginx, error) {
	n := &nginx{addr: mustFreeAddr()}
	ndir := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(ndir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`# written by bench/cmd/agbench
worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	client_body_temp_path %[1]s/tmp;
	default_type application/octet-stream;
	server {
		listen %[2]s;
		root %[3]s;
	}
}
`, ndir, n.addr, root)
	confPath := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("nginx", filepath.Join(ndir, "stderr.log"), bin, "-e", filepath.Join(ndir, "error.log"), "-p", ndir, "-c", confPath)
	if err != nil {
		return nil, err
	}
	n.proc = p
	if err := waitListening(n.addr, 10*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w; log:\n%s", err, p.tail())
	}
	return n, nil
}

// runTimed runs a load generator to completion and returns its wall time
// and CPU seconds (user+sys, from wait4).
func runTimed(argv ...string) (wall time.Duration, cpu float64, out []byte, err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if cmd.ProcessState != nil {
		cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	if err != nil {
		err = fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, lastLines(buf.String(), 10))
	}
	return wall, cpu, buf.Bytes(), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lookPath(candidates ...string) (string, error) {
	for _, c := range candidates {
		if strings.Contains(c, "/") {
			if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
				return c, nil
			}
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", errors.New("none of " + strings.Join(candidates, ", ") + " found (run make bench-deps)")
}
