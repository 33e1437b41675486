package linkserver

import (
	"archive/zip"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attachgate/attachgate/store"
)

// zip64Size is past 4 GiB (the classic ZIP limit) by one MiB.
const zip64Size = 4<<30 + 1<<20

// zeroReader reads zeros forever.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// sparseFile stores a stream in a file but seeks over blocks of zeros, so
// a ZIP of 4 GiB of zeros takes a few KiB of disk; reading it back gives
// every byte written.
type sparseFile struct {
	f *os.File
	n int64
}

var zeroBlock = make([]byte, 64<<10)

func (s *sparseFile) Write(p []byte) (int, error) {
	for off := 0; off < len(p); {
		chunk := p[off:min(off+len(zeroBlock), len(p))]
		if bytes.Equal(chunk, zeroBlock[:len(chunk)]) {
			if _, err := s.f.Seek(int64(len(chunk)), io.SeekCurrent); err != nil {
				return off, err
			}
		} else if _, err := s.f.Write(chunk); err != nil {
			return off, err
		}
		off += len(chunk)
		s.n += int64(len(chunk))
	}
	return len(p), nil
}

func (s *sparseFile) Close() error {
	if err := s.f.Truncate(s.n); err != nil {
		return err
	}
	return s.f.Close()
}

func newSparseFile(t *testing.T, path string) *sparseFile {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	return &sparseFile{f: f}
}

// checkZip64 reads a ZIP whose first entry is zip64Size zeros and whose
// second is small, with archive/zip (every byte and the CRC-32 of each
// entry) and with unzip -t, and checks the ZIP64 records are there.
func checkZip64(t *testing.T, path, bigName, smallName string, small []byte) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("archive/zip cannot open the ZIP: %v", err)
	}
	defer zr.Close()
	if len(zr.File) != 2 || zr.File[0].Name != bigName || zr.File[1].Name != smallName {
		t.Fatalf("entries %v", zr.File)
	}
	big := zr.File[0]
	if big.UncompressedSize64 != zip64Size || big.UncompressedSize != ^uint32(0) || big.Method != zip.Store {
		t.Errorf("big entry: size %d (32-bit field %#x), method %d", big.UncompressedSize64, big.UncompressedSize, big.Method)
	}
	rc, err := big.Open()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		m, err := rc.Read(buf)
		if bytes.Count(buf[:m], []byte{0}) != m {
			t.Fatalf("non-zero byte in the big entry near offset %d", n)
		}
		n += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("big entry after %d bytes: %v", n, err) // a CRC-32 mismatch lands here
		}
	}
	rc.Close()
	if n != zip64Size {
		t.Errorf("big entry read %d bytes, want %d", n, zip64Size)
	}
	rc, err = zr.File[1].Open()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, small) {
		t.Errorf("small entry after the big one: %v, equal %v", err, bytes.Equal(got, small))
	}
	// The ZIP64 end of central directory record and its locator.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	tail := make([]byte, 4096)
	m, _ := f.ReadAt(tail, st.Size()-int64(len(tail)))
	if !bytes.Contains(tail[:m], []byte("PK\x06\x06")) || !bytes.Contains(tail[:m], []byte("PK\x06\x07")) {
		t.Error("no ZIP64 end of central directory record")
	}
	if unzip, err := exec.LookPath("unzip"); err == nil {
		out, err := exec.Command(unzip, "-t", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "No errors detected") {
			t.Errorf("unzip -t: %v\n%s", err, out)
		}
	}
}

// The ZIP64 path at the writer level, with the very headers Download all
// writes: an entry of 4 GiB + 1 MiB, then a small one at an offset past
// 4 GiB, streamed to a sparse file; archive/zip and unzip read both back.
// It takes a minute or two on a busy machine: opt in with
// ATTACHGATE_TEST_ZIP64=1.
func TestZip64Writer(t *testing.T) {
	if os.Getenv("ATTACHGATE_TEST_ZIP64") == "" {
		t.Skip("set ATTACHGATE_TEST_ZIP64=1 to stream 4 GiB through archive/zip")
	}
	path := filepath.Join(t.TempDir(), "big.zip")
	sf := newSparseFile(t, path)
	zw := zip.NewWriter(sf)
	names := &entryNames{used: map[string]bool{}}
	modified := testStart.In(testZone)
	small := []byte("小さいファイル after 4 GiB")
	bigName, smallName := names.take("ゼロ.bin"), names.take("小.txt")
	fw, err := zw.CreateHeader(entryHeader(bigName, modified))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(fw, io.LimitReader(zeroReader{}, zip64Size)); err != nil {
		t.Fatal(err)
	}
	fw, err = zw.CreateHeader(entryHeader(smallName, modified))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(small); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sf.Close(); err != nil {
		t.Fatal(err)
	}
	checkZip64(t, path, bigName, smallName, small)
}

// Download all of a message with a file past 4 GiB, end to end: the file
// goes through the vault (encrypted on disk), the server streams the ZIP
// over HTTP without a temp file, and the client keeps it as a sparse
// file. The heap of the whole test process (server and client) is
// sampled during the transfer and must stay far below the file's size.
// It takes minutes (4 GiB encrypted, then decrypted): opt in with
// ATTACHGATE_TEST_ZIP64=1.
func TestMessageDownloadAllZip64(t *testing.T) {
	if os.Getenv("ATTACHGATE_TEST_ZIP64") == "" {
		t.Skip("set ATTACHGATE_TEST_ZIP64=1 to stream a 4 GiB ZIP through the vault")
	}
	h := newHarness(t)
	small := []byte("小さいファイル after 4 GiB")
	m := h.addPageMessage(store.Message{},
		msgFile{name: "ゼロ.bin", body: io.LimitReader(zeroReader{}, zip64Size)},
		msgFile{name: "小.txt", content: small})

	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	req, err := http.NewRequest(http.MethodPost, h.http.URL+p.allAction, strings.NewReader(url.Values{csrfField: {p.csrf}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c.Timeout = 0
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, resp, http.StatusOK)
	path := filepath.Join(t.TempDir(), "all.zip")
	sf := newSparseFile(t, path)
	n, err := io.Copy(sf, resp.Body)
	resp.Body.Close()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	if err := sf.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("ZIP of %d bytes in %s; peak heap in use %d MiB", n, time.Since(start).Round(time.Second), peak.Load()>>20)
	if peak.Load() > 256<<20 {
		t.Errorf("peak heap %d MiB: the ZIP is not streamed", peak.Load()>>20)
	}
	checkZip64(t, path, "ゼロ.bin", "小.txt", small)
	for _, l := range m.links {
		if d := h.downloads(l.id); d != 1 {
			t.Errorf("%s: downloads %d", l.file.Name, d)
		}
	}
}
