package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	postfixconf "github.com/attachgate/attachgate/testsupport/postfix"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// postfix is a private Postfix instance used as a plain relay hop beside
// attachgate: its own configuration directory, queue and log in the work
// directory (postfix -c DIR), listening on a free loopback port and
// relaying everything to the same smtp-sink (relayhost). It needs root, as
// any Postfix does.
type postfix struct {
	dir     string // config directory (main.cf, master.cf)
	queue   string
	maillog string
	addr    string
	bin     string
}

func startPostfix(bin, work, sinkAddr string) (*postfix, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("a Postfix instance needs root")
	}
	if _, err := user.Lookup("postfix"); err != nil {
		return nil, fmt.Errorf("user postfix: %w (install Postfix: bench/deps.sh)", err)
	}
	sinkHost, sinkPort, err := net.SplitHostPort(sinkAddr)
	if err != nil {
		return nil, fmt.Errorf("sink address %q: %w", sinkAddr, err)
	}
	base := filepath.Join(work, "postfix")
	pf := &postfix{dir: filepath.Join(base, "conf"), queue: filepath.Join(base, "queue"),
		maillog: filepath.Join(base, "maillog"), addr: mustFreeAddr(), bin: bin}
	data := filepath.Join(base, "data")
	for _, d := range []string{pf.dir, pf.queue, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// Postfix's own checks want the data directory owned by mail_owner.
	if out, err := exec.Command("chown", "postfix", data).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chown postfix %s: %v: %s", data, err, out)
	}
	mainCF := fmt.Sprintf(`# written by bench/cmd/agbench: a plain relay hop
compatibility_level = 3.6
queue_directory = %s
data_directory = %s
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.localhost
mydomain = bench.localhost
mydestination =
local_recipient_maps =
local_transport = error:local delivery disabled
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
relayhost = [%s]:%s
message_size_limit = %d
smtputf8_enable = no
biff = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
default_process_limit = 100
maillog_file_prefixes = %s
maillog_file = %s
`, pf.queue, data, sinkHost, sinkPort, int64(2)<<30, base, pf.maillog)
	masterCF := pf.addr + " inet n - n - - smtpd\n" + postfixconf.MasterServices
	if err := os.WriteFile(filepath.Join(pf.dir, "main.cf"), []byte(mainCF), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(pf.dir, "master.cf"), []byte(masterCF), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, "-c", pf.dir, "start").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postfix -c %s start: %v: %s\n%s", pf.dir, err, out, pf.tail())
	}
	if err := waitListening(pf.addr, 20*time.Second); err != nil {
		pf.stop()
		return nil, fmt.Errorf("%w; maillog:\n%s", err, pf.tail())
	}
	return pf, nil
}

func (pf *postfix) stop() {
	if pf == nil {
		return
	}
	master := pf.masterPID()
	exec.Command(pf.bin, "-c", pf.dir, "stop").Run()
	deadline := time.Now().Add(15 * time.Second)
	for master > 0 && syscall.Kill(master, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if master > 0 && syscall.Kill(master, 0) == nil {
		exec.Command(pf.bin, "-c", pf.dir, "abort").Run()
	}
}

func (pf *postfix) tail() string {
	b, _ := os.ReadFile(pf.maillog)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// masterPID reads the master daemon's pid file (0 when not running).
func (pf *postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(pf.queue, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// pids lists the instance's processes: the master runs its own session.
func (pf *postfix) pids() []int {
	master := pf.masterPID()
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStatFields(pid); len(f) > 3 {
			if sid, _ := strconv.Atoi(f[3]); sid == master {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// cpuSeconds is the CPU time of the whole instance: its live processes and
// those the master already reaped.
func (pf *postfix) cpuSeconds() float64 {
	var total float64
	for _, pid := range pf.pids() {
		total += cpuSeconds(pid)
	}
	if f := procStatFields(pf.masterPID()); len(f) > 14 {
		cut, _ := strconv.ParseFloat(f[13], 64)
		cst, _ := strconv.ParseFloat(f[14], 64)
		total += (cut + cst) / clockTicks
	}
	return total
}

// procStatFields returns the fields of /proc/<pid>/stat after the command
// name: [0] is field 3 (state).
func procStatFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// queued counts the messages in Postfix's queue.
func (pf *postfix) queued() int {
	n := 0
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		filepath.WalkDir(filepath.Join(pf.queue, q), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n
}

// drain waits until Postfix delivered everything it accepted.
func (pf *postfix) drain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for pf.queued() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("postfix queue not empty after %s; maillog:\n%s", timeout, pf.tail())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// fsyncCounter counts fsync and fdatasync calls of running processes (and
// their new children) with strace -c, between start and stop.
type fsyncCounter struct {
	cmd *exec.Cmd
	out string
	err bytes.Buffer
}

func startFsyncCounter(strace, out string, pids []int) (*fsyncCounter, error) {
	args := []string{"-f", "-c", "-e", "trace=fsync,fdatasync", "-o", out}
	for _, p := range pids {
		args = append(args, "-p", strconv.Itoa(p))
	}
	c := &fsyncCounter{cmd: exec.Command(strace, args...), out: out}
	c.cmd.Stderr = &c.err
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	// strace says "Process N attached" once per thread; wait for the
	// first of each process, then a little for the threads.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(c.err.String(), "attached") < len(pids) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return c, nil
}

// stop detaches and returns the number of fsync and fdatasync calls.
func (c *fsyncCounter) stop() (int, error) {
	c.cmd.Process.Signal(syscall.SIGINT)
	c.cmd.Wait()
	f, err := os.Open(c.out)
	if err != nil {
		return 0, fmt.Errorf("strace summary: %w (%s)", err, lastLines(c.err.String(), 5))
	}
	defer f.Close()
	total := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// % time, seconds, usecs/call, calls, [errors,] syscall
		if len(fields) >= 5 && (fields[len(fields)-1] == "fsync" || fields[len(fields)-1] == "fdatasync") {
			n, _ := strconv.Atoi(fields[3])
			total += n
		}
	}
	return total, nil
}
