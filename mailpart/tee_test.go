package mailpart

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// teeSeeds are messages whose attachment bodies span many buffer refills,
// end without a close delimiter, or use LF line endings.
func teeSeeds() [][]byte {
	payload := make([]byte, 300<<10)
	rand.NewChaCha8([32]byte{9}).Read(payload)
	b64 := base64.StdEncoding.EncodeToString(payload)
	var lines strings.Builder
	for len(b64) > 76 {
		lines.WriteString(b64[:76] + "\r\n")
		b64 = b64[76:]
	}
	lines.WriteString(b64 + "\r\n")
	att := func(name string) string {
		return "Content-Type: application/pdf; name=\"" + name + "\"\r\nContent-Disposition: attachment; filename=\"" + name +
			"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines.String()
	}
	return [][]byte{
		[]byte("Subject: two files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\n" +
			"Content-Type: text/plain\r\n\r\nHello.\r\n--b\r\n" + att("a.pdf") + "--b\r\n" + att("b.pdf") + "--b--\r\nepilogue\r\n"),
		[]byte("Subject: unclosed\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b\r\n" + att("c.pdf")),
		[]byte(strings.ReplaceAll("Subject: lf\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"+att("d.pdf")+"--b\r\nContent-Type: text/plain\r\n\r\nafter\r\n--b--\r\n", "\r\n", "\n")),
		[]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; filename=one-line.bin\r\n\r\nAAAA\r\n--b\r\nContent-Disposition: attachment; filename=empty.bin\r\n\r\n--b--\r\n"),
		[]byte(att("whole.pdf")),
	}
}

func FuzzWalkTee(f *testing.F) {
	addSeeds(f)
	for _, s := range teeSeeds() {
		f.Add(s)
	}
	f.Fuzz(checkWalkTee)
}

// TestWalkTeeSeeds runs the property on the seeds in every plain test run.
func TestWalkTeeSeeds(t *testing.T) {
	for i, s := range teeSeeds() {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkWalkTee(t, s) })
	}
}

// checkWalkTee: WalkTee sees the parts Walk sees; without elision its copy
// is the input byte for byte; with every attachment elided its copy is
// smaller by at least the attachments' bodies, and rewriting the copy
// (attachments removed) gives exactly the rewrite of the whole message.
func checkWalkTee(t *testing.T, msg []byte) {
	before, walkSum, err := leafDigests(t, msg)
	if err != nil {
		if !errors.Is(err, ErrTooComplex) {
			t.Fatalf("Walk: %v", err)
		}
		return
	}
	var whole bytes.Buffer
	var seen []string
	teeSum, _, err := WalkTee(bytes.NewReader(msg), fuzzLimits, &whole, nil, nil, func(p *Part, body io.Reader) error {
		seen = append(seen, p.Path)
		return nil
	})
	if err != nil {
		t.Fatalf("WalkTee: %v", err)
	}
	if !reflect.DeepEqual(teeSum, walkSum) {
		t.Fatalf("WalkTee's summary %+v differs from Walk's %+v", teeSum, walkSum)
	}
	if !bytes.Equal(whole.Bytes(), msg) {
		t.Fatalf("copy without elision differs from the input:\n%q\n%q", whole.Bytes(), msg)
	}
	if len(seen) != len(before) {
		t.Fatalf("WalkTee saw %d parts, Walk %d", len(seen), len(before))
	}

	remove := map[string]bool{}
	n := Notice{Language: "en"}
	var bodies int64
	var skeleton, side bytes.Buffer
	_, cuts, err := WalkTee(bytes.NewReader(msg), fuzzLimits, &skeleton, &side, func(p *Part) bool { return true }, func(p *Part, body io.Reader) error {
		if p.Attachment {
			remove[p.Path] = true
			n.Files = append(n.Files, NoticeFile{Name: "f", URL: "https://x.example/d/" + p.Path})
			nb, err := io.Copy(io.Discard, body)
			bodies += nb
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WalkTee with elision: %v", err)
	}
	// The cut bodies put back give the message byte for byte (for mail
	// that must pass through untouched).
	back, err := io.ReadAll(Spliced(bytes.NewReader(skeleton.Bytes()), bytes.NewReader(side.Bytes()), cuts))
	if err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("spliced copy differs from the input (%v):\n%q\n%q", err, back, msg)
	}
	var fromWhole, fromSkeleton bytes.Buffer
	errWhole := Rewrite(bytes.NewReader(msg), &fromWhole, fuzzLimits, remove, n)
	errSkel := Rewrite(bytes.NewReader(skeleton.Bytes()), &fromSkeleton, fuzzLimits, remove, n)
	if (errWhole == nil) != (errSkel == nil) {
		t.Fatalf("Rewrite of the message: %v; of the copy: %v", errWhole, errSkel)
	}
	if !bytes.Equal(fromWhole.Bytes(), fromSkeleton.Bytes()) {
		t.Fatalf("rewrite of the copy differs:\nwhole    %q\nskeleton %q\ncopy     %q", fromWhole.String(), fromSkeleton.String(), skeleton.String())
	}
	if bodies > 1000 && int64(skeleton.Len()) > int64(len(msg))-bodies/2 {
		t.Fatalf("copy of %d bytes keeps the attachments (%d decoded bytes) of a %d-byte message", skeleton.Len(), bodies, len(msg))
	}
}
