package mailpart

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// corpusDir holds real-world messages (read-only, shared between packages).
const corpusDir = "/work/shared/corpus/mail-gem"

func corpusFiles(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("mail corpus %s not available: %v", corpusDir, err)
	}
	var files []string
	err := filepath.WalkDir(corpusDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".eml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("no .eml files in %s", corpusDir)
	}
	return files
}

// corpusPart is what the corpus test compares of a leaf.
type corpusPart struct {
	path, mediaType string
	attachment      bool
	body            bool // body text that takes the notice
	name            string
	size            int64
	sum             [32]byte // of the decoded body, line endings normalised
}

func walkCorpus(t *testing.T, raw []byte) ([]corpusPart, error) {
	var parts []corpusPart
	_, err := Walk(bytes.NewReader(raw), Limits{}, func(p *Part, body io.Reader) error {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		isBody := !p.Attachment && (p.MediaType == "text/plain" || p.MediaType == "text/html")
		parts = append(parts, corpusPart{
			path: p.Path, mediaType: p.MediaType, attachment: p.Attachment, body: isBody,
			name: p.Filename, size: int64(len(b)),
			sum: sha256.Sum256(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))),
		})
		return nil
	})
	return parts, err
}

// withoutSizes drops the raw sizes, which change when LF becomes CRLF.
func withoutSizes(parts []corpusPart) []corpusPart {
	out := make([]corpusPart, len(parts))
	for i, p := range parts {
		p.size = 0
		out[i] = p
	}
	return out
}

func TestCorpus(t *testing.T) {
	for _, file := range corpusFiles(t) {
		name, _ := filepath.Rel(corpusDir, file)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			before, err := walkCorpus(t, raw)
			if errors.Is(err, ErrTooComplex) {
				t.Skipf("too complex: %v", err)
			}
			if err != nil {
				t.Fatalf("Walk: %v", err)
			}

			// Nothing removed, no notice: every part decodes as before.
			var same bytes.Buffer
			if err := Rewrite(bytes.NewReader(raw), &same, Limits{}, nil, Notice{}); err != nil {
				t.Fatalf("Rewrite without changes: %v", err)
			}
			if !noBareLF(same.String()) {
				t.Error("output has bare LF")
			}
			after, err := walkCorpus(t, same.Bytes())
			if err != nil {
				t.Fatalf("Walk of unchanged rewrite: %v", err)
			}
			if fmt.Sprint(withoutSizes(before)) != fmt.Sprint(withoutSizes(after)) {
				t.Errorf("parts changed by a rewrite without changes:\nbefore %v\nafter  %v", before, after)
			}

			// All attachments removed, notice added.
			remove := map[string]bool{}
			notice := Notice{Language: "both"}
			for _, p := range before {
				if p.attachment {
					remove[p.path] = true
					notice.Files = append(notice.Files, NoticeFile{
						Name: p.name, Size: p.size, SHA256: fmt.Sprintf("%x", p.sum),
						Expires: time.Date(2026, 12, 2, 19, 10, 0, 0, time.UTC),
						URL:     "https://files.example.com/d/" + strings.ReplaceAll(p.path, ".", "-"),
					})
				}
			}
			if len(notice.Files) == 0 {
				return
			}
			var out bytes.Buffer
			if err := Rewrite(bytes.NewReader(raw), &out, Limits{}, remove, notice); err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			gm := parseWithGoMessage(t, out.String())
			rewritten, err := walkCorpus(t, out.Bytes())
			if err != nil {
				t.Fatalf("Walk of rewrite: %v", err)
			}
			noticed := 0
			for _, p := range rewritten {
				if p.attachment {
					t.Errorf("attachment %s (%s %q) left after rewrite", p.path, p.mediaType, p.name)
				}
			}
			for _, p := range gm {
				if p.MediaType != "text/plain" && p.MediaType != "text/html" {
					continue
				}
				if p.Params["charset"] != "utf-8" {
					continue // untouched body in a charset that cannot be converted
				}
				if !strings.Contains(p.Text, introEN) {
					continue
				}
				noticed++
				for _, f := range notice.Files {
					if c := strings.Count(p.Text, f.URL); c != 1 {
						t.Errorf("%s part has URL %s %d times", p.MediaType, f.URL, c)
					}
				}
			}
			if noticed == 0 {
				t.Errorf("no text part carries the notice:\n%s", out.String())
			}
		})
	}
}
