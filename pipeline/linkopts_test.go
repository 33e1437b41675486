package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/store"
)

// mailWithFiles has one small attachment per name.
func mailWithFiles(names ...string) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: b@example.net\r\nSubject: =?UTF-8?B?6KaL56mN?= Q3\r\nMessage-ID: <opts@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfiles\r\n")
	for _, n := range names {
		fmt.Fprintf(&b, "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"%s\"\r\n\r\ncontent of %s\r\n", n, n)
	}
	b.WriteString("--b--\r\n")
	return b.Bytes()
}

func intp(n int) *int { return &n }

// TestMessageOptionsFromRules: each file's link takes its own rule's
// expiry and download limit (else links.*); the message takes
// recipient-code if any rule asks, the most informative sender notice,
// the first rule language else links.language, and a manage token only
// when the sender is to be told.
func TestMessageOptionsFromRules(t *testing.T) {
	rules, err := policies.New([]policies.Rule{
		{Name: "pdf", Match: policies.Match{Extensions: []string{".pdf"}}, Action: policies.Link,
			Link: &policies.LinkOptions{Expiry: policies.Duration(2 * time.Hour), MaxDownloads: intp(3),
				Verify: policies.VerifyRecipientCode, NotifySender: policies.NotifyReceipt, Language: "ja"}},
		{Name: "zip", Match: policies.Match{Extensions: []string{".zip"}}, Action: policies.Link,
			Link: &policies.LinkOptions{Expiry: policies.Duration(30 * time.Minute), NotifySender: policies.NotifyDownloads, Language: "en"}},
		{Name: "doc", Match: policies.Match{Extensions: []string{".doc"}}, Action: policies.Link,
			Link: &policies.LinkOptions{NotifySender: policies.NotifyNone, Verify: policies.VerifyNone, MaxDownloads: intp(0)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	type fileWant struct {
		expiry       time.Duration
		maxDownloads int
	}
	tests := []struct {
		name                 string
		files                []string
		wantFiles            map[string]fileWant
		verify, notify, lang string
	}{
		{"no rule: links.* defaults", []string{"a.txt"}, map[string]fileWant{"a.txt": {time.Hour, 5}},
			store.VerifyNone, store.NotifyNone, "both"},
		{"explicit none and unlimited", []string{"a.doc"}, map[string]fileWant{"a.doc": {time.Hour, 0}},
			store.VerifyNone, store.NotifyNone, "both"},
		{"one rule", []string{"a.pdf"}, map[string]fileWant{"a.pdf": {2 * time.Hour, 3}},
			store.VerifyRecipientCode, store.NotifyReceipt, "ja"},
		{"receipt then downloads", []string{"a.pdf", "b.zip", "c.txt"},
			map[string]fileWant{"a.pdf": {2 * time.Hour, 3}, "b.zip": {30 * time.Minute, 5}, "c.txt": {time.Hour, 5}},
			store.VerifyRecipientCode, store.NotifyDownloads, "ja"},
		{"downloads then receipt: first language", []string{"b.zip", "a.pdf"},
			map[string]fileWant{"a.pdf": {2 * time.Hour, 3}, "b.zip": {30 * time.Minute, 5}},
			store.VerifyRecipientCode, store.NotifyDownloads, "en"},
		{"a rule without language leaves it to the next", []string{"a.doc", "b.zip"},
			map[string]fileWant{"a.doc": {time.Hour, 0}, "b.zip": {30 * time.Minute, 5}},
			store.VerifyNone, store.NotifyDownloads, "en"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := benchPipeline(t)
			p.MaxDownloads = 5
			p.Reload(Settings{Policies: rules})
			env := Envelope{From: "a@example.com", To: []string{"b@example.net"}, ClientAddr: "127.0.0.1", Helo: "client"}
			tx := p.Begin(context.Background(), env, &benchHop{})
			if err := tx.Body(context.Background(), bytes.NewReader(mailWithFiles(tt.files...))); err != nil {
				t.Fatal(err)
			}
			tx.Commit(context.Background())
			mv, err := p.Store.MessageByID(context.Background(), tx.ID())
			if err != nil {
				t.Fatal(err)
			}
			if len(mv.Links) != len(tt.wantFiles) {
				t.Fatalf("%d links, want %d", len(mv.Links), len(tt.wantFiles))
			}
			for _, v := range mv.Links {
				w := tt.wantFiles[v.File.Name]
				if got := v.Link.ExpiresAt.Sub(v.Link.CreatedAt.Truncate(time.Second)); got != w.expiry || !v.File.ExpiresAt.Equal(v.Link.ExpiresAt) {
					t.Errorf("%s: expires %v after creation (file %v), want %v", v.File.Name, got, v.File.ExpiresAt, w.expiry)
				}
				if v.Link.MaxDownloads != w.maxDownloads {
					t.Errorf("%s: max_downloads %d, want %d", v.File.Name, v.Link.MaxDownloads, w.maxDownloads)
				}
			}
			m := mv.Message
			if m.Verify != tt.verify || m.NotifySender != tt.notify || m.Lang != tt.lang {
				t.Errorf("message: verify %q notify %q lang %q; want %q %q %q", m.Verify, m.NotifySender, m.Lang, tt.verify, tt.notify, tt.lang)
			}
			if m.Subject != "見積 Q3" {
				t.Errorf("subject %q", m.Subject)
			}
			if m.PageTokenHash == nil {
				t.Error("no page token")
			}
			if (m.ManageTokenHash != nil) != (tt.notify != store.NotifyNone) {
				t.Errorf("manage token %x with notify %q", m.ManageTokenHash, tt.notify)
			}
			if tx.notice.Language != tt.lang || tx.notice.MessageURL == "" {
				t.Errorf("notice language %q, message URL %q", tx.notice.Language, tx.notice.MessageURL)
			}
		})
	}
}

// TestBoundSubject cuts long subjects at a character boundary.
func TestBoundSubject(t *testing.T) {
	long := bytes.Repeat([]byte("見"), 400) // 1200 bytes
	got := boundSubject(string(long))
	if len(got) > maxSubjectBytes || len(got)%3 != 0 || got != string(long[:len(got)]) {
		t.Errorf("boundSubject: %d bytes, not a whole-character prefix", len(got))
	}
	if boundSubject("short") != "short" {
		t.Error("a short subject changed")
	}
}
