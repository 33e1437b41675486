package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// profileResult is one pprof profile taken from a daemon under load, with
// its top entries.
type profileResult struct {
	title  string
	file   string
	stages string // cumulative share of the pipeline's stages
	top    string
}

// stages names the functions whose cumulative share of a CPU profile tells
// where a message or a download spends its time (a function missing from
// the profile is left out).
var stages = []struct{ label, fn string }{
	{"go-smtp: reading DATA (dot-unstuffing, line limit)", "github.com/emersion/go-smtp.(*dataReader).Read"},
	{"spool: encrypting the incoming message to disk", "github.com/attachgate/attachgate/vault.(*Spool).Write"},
	{"walk: parse the spooled message, store attachments", "github.com/attachgate/attachgate/pipeline.(*Transaction).store"},
	{"  of which base64 decoding", "github.com/attachgate/attachgate/mailpart.(*base64Decoder).Read"},
	{"  of which vault Put (hash, encrypt, write, fsync)", "github.com/attachgate/attachgate/vault.(*BlobStore).Put"},
	{"relay: rewrite the spooled message to the next hop", "github.com/attachgate/attachgate/pipeline.(*Transaction).deliver"},
	{"audit log appends (SQLite)", "github.com/attachgate/attachgate/audit.(*SQLiteLog).Record"},
	{"metadata: CreateMessage (SQLite)", "github.com/attachgate/attachgate/store.(*SQLite).CreateMessage"},
	{"X25519 (age key wrap/unwrap)", "crypto/ecdh.x25519ScalarMult"},
	{"age decryption (ChaCha20-Poly1305 open)", "golang.org/x/crypto/chacha20poly1305.chacha20Poly1305Open"},
	{"age encryption (ChaCha20-Poly1305 seal)", "golang.org/x/crypto/chacha20poly1305.chacha20Poly1305Seal"},
	{"age DecryptReaderAt.ReadAt (allocates a chunk per call)", "filippo.io/age/internal/stream.(*DecryptReaderAt).ReadAt"},
	{"SHA-256", "crypto/internal/fips140/sha256.block"},
	{"download handler (linkserver)", "github.com/attachgate/attachgate/linkserver.(*Server).handleFile"},
	{"  of which writing to the socket", "net/http.(*response).Write"},
	{"system calls", "syscall.RawSyscall6"},
	{"garbage collector (background marking)", "runtime.gcBgMarkWorker"},
	{"memory clearing (fresh large allocations)", "runtime.memclrNoHeapPointers"},
}

// pprofStages returns the cumulative share of each stage in a CPU profile.
func (e *env) pprofStages(file string) string {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=100000", e.opt.bin, file).CombinedOutput()
	if err != nil {
		return ""
	}
	cum := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[4], "%") {
			continue
		}
		name := strings.Join(f[5:], " ")
		name = strings.TrimSuffix(name, " (inline)")
		if _, seen := cum[name]; !seen {
			cum[name] = f[4]
		}
	}
	var b strings.Builder
	b.WriteString("| stage (cumulative) | share of CPU samples |\n| --- | --- |\n")
	n := 0
	for _, st := range stages {
		if v, ok := cum[st.fn]; ok && v != "0%" {
			fmt.Fprintf(&b, "| %s | %s |\n", strings.Replace(st.label, "  ", "&nbsp;&nbsp;", 1), v)
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return b.String()
}

const profileSeconds = 6

// fetchProfile GETs a /debug/pprof path from g's admin listener into file.
func fetchProfile(g *gateway, path, file string) error {
	req, _ := http.NewRequest(http.MethodGet, "http://"+g.adminAddr+path, nil)
	req.Header.Set("Authorization", "Bearer "+g.adminTok)
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: status %d: %s", path, resp.StatusCode, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// underLoad runs load repeatedly while a CPU profile of g is taken.
func (e *env) cpuProfileUnderLoad(g *gateway, name, title string, load func()) {
	if g.adminAddr == "" {
		return
	}
	os.MkdirAll(e.opt.profileDir, 0o755)
	file := filepath.Join(e.opt.profileDir, name+".pprof")
	done := make(chan error, 1)
	go func() {
		done <- fetchProfile(g, fmt.Sprintf("/debug/pprof/profile?seconds=%d", profileSeconds), file)
	}()
	for {
		load()
		select {
		case err := <-done:
			if err != nil {
				e.notes = append(e.notes, fmt.Sprintf("profile %s: %v", name, err))
				return
			}
			e.profiles = append(e.profiles, profileResult{title: title, file: file, stages: e.pprofStages(file), top: e.pprofTop(file, "")})
			return
		default:
		}
	}
}

func (e *env) pprofTop(file, sampleIndex string) string {
	args := []string{"tool", "pprof", "-top", "-nodecount=25"}
	if sampleIndex != "" {
		args = append(args, "-sample_index="+sampleIndex)
	}
	args = append(args, e.opt.bin, file)
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof failed: %v\n%s", err, out)
	}
	// Drop pprof's file/build banner lines.
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.TrimSpace(strings.Join(keep, "\n"))
}

// profileRelay takes a CPU profile of the throughput daemon while
// smtp-source relays m through it (not a measured round).
func (e *env) profileRelay(name, title string, m testMessage, sessions, count int) {
	if e.gw.adminAddr == "" {
		return
	}
	logf("profiling the relay path (%s, %ds)", title, profileSeconds)
	e.cpuProfileUnderLoad(e.gw, name, "CPU, "+title, func() {
		if _, _, _, err := runTimed(e.smtpSource(e.gw.smtpAddr, m, sessions, count)...); err != nil {
			fatalf("profile relay: %v", err)
		}
	})
}

// profileAllocs saves the allocation profile of the throughput daemon's
// whole life.
func (e *env) profileAllocs() {
	if e.gw.adminAddr == "" {
		return
	}
	file := filepath.Join(e.opt.profileDir, "allocs-relay.pprof")
	if err := fetchProfile(e.gw, "/debug/pprof/allocs", file); err != nil {
		e.notes = append(e.notes, "allocs profile: "+err.Error())
		return
	}
	e.profiles = append(e.profiles, profileResult{title: "allocated bytes over the throughput daemon's life (all relay rows and profiles)",
		file: file, top: e.pprofTop(file, "alloc_space")})
}

func (e *env) profileDownload(g *gateway, link string) {
	logf("profiling the download path (10 MiB, wrk -c16, %ds)", profileSeconds)
	u, err := signedURL(link)
	if err != nil {
		fatalf("profile download: %v", err)
	}
	e.cpuProfileUnderLoad(g, "cpu-download-10m", "CPU, serving 10 MiB downloads (wrk -c16)", func() {
		if _, _, _, err := runTimed(e.wrk, "-t2", "-c16", fmt.Sprintf("-d%ds", profileSeconds+1), u); err != nil {
			fatalf("profile download: %v", err)
		}
	})
}
