package linkserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// newNotifier builds the gateway's notifier the way serve does, sending
// through a capturing go-smtp next hop, and runs its sender until the test
// ends.
func newNotifier(t *testing.T, hop *smtptest.Server) (*notify.Service, *notify.Sender) {
	t.Helper()
	dir := t.TempDir()
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := mailtmpl.Load("", testZone)
	if err != nil {
		t.Fatal(err)
	}
	composer, err := notify.NewComposer(notify.ComposerOptions{Templates: set, Hostname: "gw.corp.example",
		From: "attachgate@corp.example", Language: "en", MarkerKey: ring.MACKey()})
	if err != nil {
		t.Fatal(err)
	}
	sender, err := notify.NewSender(notify.SenderOptions{
		Hop:   relay.New(hop.Addr, "gw.corp.example", 10*time.Second, relay.TLSNone, nil),
		Audit: &eventLog{keep: true}, Ring: ring, Dir: filepath.Join(dir, "notify"),
		RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, Poll: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sender.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &notify.Service{Composer: composer, Sender: sender}, sender
}

// waitDelivered waits until the queue is empty and the hop holds at least
// want mails, and returns them.
func waitDelivered(t *testing.T, hop *smtptest.Server, sender *notify.Sender, want int) []smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, err := sender.Pending()
		if err != nil {
			t.Fatal(err)
		}
		got := hop.Messages()
		if pending == 0 && len(got) >= want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %d mails delivered, %d pending; want %d delivered", len(got), pending, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDownloadNotices: with notify_sender: downloads, the envelope sender
// gets one notice per file and recipient at the first download: a second
// download of the same file by the same visitor, or an unverified one
// after anybody's, sends nothing. The notice names the file, the
// recipient (or "not verified") and the client, carries no manage link,
// and goes to the stored envelope sender only.
func TestDownloadNotices(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	svc, sender := newNotifier(t, hop)
	h := newHarness(t, func(o *Options) { o.Notify = svc })
	m := h.addMessage(msgSpec{notify: store.NotifyDownloads, subject: "Figures",
		files: []string{"first-file.pdf", "second-file.pdf"}})
	quiet := h.addMessage(msgSpec{notify: store.NotifyReceipt, sender: "dave@example.com", files: []string{"quiet.pdf"}})

	h.download(m.tokens[0])
	h.download(m.tokens[0]) // the same (unverified) visitor again
	h.download(m.tokens[1])
	h.download(quiet.tokens[0]) // receipt only: no download notices

	got := waitDelivered(t, hop, sender, 2)
	if len(got) != 2 {
		t.Fatalf("%d notices after three downloads of two files, want 2", len(got))
	}
	for i, name := range []string{"first-file.pdf", "second-file.pdf"} {
		msg := got[i]
		data := string(msg.Data)
		if len(msg.To) != 1 || msg.To[0] != "alice@example.com" || msg.From != "" {
			t.Errorf("notice %d: envelope from %q to %v; want <> to the message's sender", i, msg.From, msg.To)
		}
		for _, want := range []string{"Subject: Downloaded: " + name, "Auto-Submitted: auto-generated",
			"a recipient (not verified)", "127.0.0.1", `message "Figures"`} {
			if !strings.Contains(data, want) {
				t.Errorf("notice %d lacks %q:\n%s", i, want, data)
			}
		}
		if strings.Contains(data, "/s/") || strings.Contains(data, m.manage) {
			t.Errorf("notice %d carries the manage link", i)
		}
	}

	// Verified recipients (the code gate passes them): bob's first
	// download of each file is told once, carol's too.
	view, err := h.store.LinkByID(context.Background(), m.linkIDs[0])
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/f/x/y", nil)
	req.RemoteAddr = "198.51.100.9:4711"
	for _, rcpt := range []string{"bob@example.net", "bob@example.net", "carol@example.org"} {
		h.server.recordAccess(req, view, store.AccessDownload, rcpt)
	}
	got = waitDelivered(t, hop, sender, 4)
	if len(got) != 4 {
		t.Fatalf("%d notices, want 4", len(got))
	}
	for i, rcpt := range []string{"bob@example.net", "carol@example.org"} {
		data := string(got[2+i].Data)
		if !strings.Contains(data, "Subject: Downloaded: first-file.pdf by "+rcpt) || !strings.Contains(data, "198.51.100.9") {
			t.Errorf("notice for %s:\n%s", rcpt, data)
		}
	}
	// The manage page shows all of it.
	_, body, _ := h.managePage(h.browser(false), m.manage, nil)
	if !strings.Contains(body, "carol@example.org</td>") || strings.Count(body, "<td>downloaded</td>") != 6 {
		t.Errorf("manage page does not list the six downloads with the verified recipients")
	}
}
