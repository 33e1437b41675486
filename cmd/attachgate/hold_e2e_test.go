package main

// Held mail under sender control (action hold) and supervisor approval
// (action approve), end to end: the real binary, a capturing go-smtp next
// hop, mail over SMTP, the links read from the notices the next hop
// captured and followed over HTTP as a browser does.

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/smtptest"
)

func heldPolicy(rule string) string {
	return "policies:\n" + rule
}

// plainMail is a text mail with the given subject and body.
func plainMail(subject, body string) []byte {
	return []byte(fmt.Sprintf("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: %s\r\n"+
		"Message-ID: <held-%d@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		subject, time.Now().UnixNano(), body))
}

// waitMail waits for a message the next hop accepted for rcpt.
func waitMail(t *testing.T, hop *smtptest.Server, rcpt string) smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(150 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range hop.Messages() {
			if slices.Contains(m.To, rcpt) {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no mail for %s reached the next hop", rcpt)
	return smtptest.Message{}
}

func mailsFor(hop *smtptest.Server, rcpt string) int {
	n := 0
	for _, m := range hop.Messages() {
		if slices.Contains(m.To, rcpt) {
			n++
		}
	}
	return n
}

// heldLinks returns the /h/ links of a notice's text part, in order, each
// once (a notice in both languages names each twice).
func heldLinks(t *testing.T, d *daemon, raw []byte, want int) []string {
	t.Helper()
	plain := decodedText(t, raw, "text/plain")
	var out []string
	for _, l := range regexp.MustCompile(regexp.QuoteMeta(d.linkURL)+`/h/[A-Za-z0-9_-]+`).FindAllString(plain, -1) {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	if len(out) != want {
		t.Fatalf("notice has %d /h/ links, want %d:\n%s", len(out), want, plain)
	}
	return out
}

// browser is a client with a cookie jar that never follows redirects.
type heldClient struct {
	t *testing.T
	c *http.Client
}

func newHeldClient(t *testing.T) *heldClient {
	jar, _ := cookiejar.New(nil)
	return &heldClient{t: t, c: &http.Client{Jar: jar, Timeout: 150 * time.Second}}
}

func (b *heldClient) get(link string) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(link)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// formOf returns the hidden fields of a page's one POST form.
func formOf(t *testing.T, page string) url.Values {
	t.Helper()
	if n := strings.Count(page, `<form method="post"`); n != 1 {
		t.Fatalf("page has %d post forms, want 1:\n%s", n, page)
	}
	form := url.Values{}
	for _, m := range hiddenInputRE.FindAllString(page, -1) {
		name, value := nameAttrRE.FindStringSubmatch(m), valueAttrRE.FindStringSubmatch(m)
		if name != nil && value != nil {
			form.Set(name[1], value[1])
		}
	}
	return form
}

func (b *heldClient) post(link string, form url.Values, header http.Header) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, link, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// press opens link and submits its form with extra fields.
func (b *heldClient) press(link string, extra url.Values) (int, string) {
	b.t.Helper()
	code, page := b.get(link)
	if code != http.StatusOK {
		b.t.Fatalf("GET %s: %d\n%s", link, code, page)
	}
	form := formOf(b.t, page)
	for k, v := range extra {
		form[k] = v
	}
	return b.post(link, form, nil)
}

func eventTypes(t *testing.T, d *daemon) []string {
	var types []string
	for _, e := range exportEvents(t, d) {
		types = append(types, fmt.Sprint(e["type"]))
	}
	return types
}

func wantEvents(t *testing.T, d *daemon, want ...string) {
	t.Helper()
	got := eventTypes(t, d)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("audit has no %s event; got %v", w, got)
		}
	}
}

const holdRule = `  - name: hold-all
    match: {senders: ["alice@example.com"]}
    action: hold
    hold_for: 1h
`

// Cancel: the sender's notice arrives at once, opening its links changes
// nothing, Cancel deletes the message (nothing is ever delivered), the
// link works once, and the other link then says what happened.
func TestHoldCancelNeverDelivers(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(holdRule))
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("plan.pdf", []byte("secret plan"))); err != nil {
		t.Fatal(err)
	}
	notice := waitMail(t, hop, "alice@example.com")
	text := decodedText(t, notice.Data, "text/plain")
	for _, want := range []string{"bob@example.net", "files", "plan.pdf"} {
		if !strings.Contains(text, want) {
			t.Errorf("hold notice lacks %q:\n%s", want, text)
		}
	}
	links := heldLinks(t, d, notice.Data, 2)
	cancel, sendNow := links[0], links[1]

	b := newHeldClient(t)
	// Mail scanners open every link: GET and HEAD act never.
	for i := 0; i < 3; i++ {
		if code, page := b.get(cancel); code != http.StatusOK || !strings.Contains(page, "Cancel") {
			t.Fatalf("GET cancel: %d\n%s", code, page)
		}
		if resp, err := http.Head(sendNow); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD send now: %v %v", resp, err)
		}
	}
	code, page := b.get(cancel)
	if code != http.StatusOK {
		t.Fatal(code)
	}
	form := formOf(t, page)
	// Cross-site POST (a page elsewhere submitting the form): refused.
	if code, _ := b.post(cancel, form, http.Header{"Sec-Fetch-Site": {"cross-site"}}); code != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d, want 403", code)
	}
	// Without the form's token: refused.
	if code, _ := b.post(cancel, url.Values{}, nil); code != http.StatusForbidden {
		t.Fatalf("POST without form token: %d, want 403", code)
	}
	// The form token of the cancel page does not work on the send-now link.
	if code, _ := b.post(sendNow, form, nil); code != http.StatusForbidden {
		t.Fatalf("cancel's form token on send now: %d, want 403", code)
	}
	if code, page := b.post(cancel, form, nil); code != http.StatusOK || !strings.Contains(page, "cancelled") {
		t.Fatalf("POST cancel: %d\n%s", code, page)
	}
	// Replay: used.
	if code, page := b.post(cancel, form, nil); code != http.StatusGone || !strings.Contains(page, "already been used") {
		t.Fatalf("replayed cancel: %d\n%s", code, page)
	}
	if code, page := b.get(sendNow); code != http.StatusGone || !strings.Contains(page, "cancelled") {
		t.Fatalf("send now after cancel: %d\n%s", code, page)
	}
	// A forged token of the right shape: unknown.
	if code, _ := b.get(d.linkURL + "/h/" + strings.Repeat("A", 43)); code != http.StatusNotFound {
		t.Fatalf("forged token: %d, want 404", code)
	}
	wantEvents(t, d, "mail.held", "mail.deleted", "hold.cancelled")
	if n := mailsFor(hop, "bob@example.net"); n != 0 {
		t.Fatalf("a cancelled message reached the recipient (%d)", n)
	}
	// Every refused POST above is on record: the three forged forms and
	// the replay (naming the message and what its link was); the GET of a
	// forged token is a plain 404, as on /d/.
	var reasons []string
	for _, e := range exportEvents(t, d) {
		if e["type"] != "hold.refused" {
			continue
		}
		reasons = append(reasons, fmt.Sprint(e["reason"]))
		if e["reason"] == "used" && (e["message_id"] == nil ||
			!strings.Contains(fmt.Sprint(e["detail"]), "cancel link mailed to alice@example.com")) {
			t.Errorf("hold.refused (used) does not say which message and link: %v", e)
		}
		if e["actor"] != "web" || e["client_addr"] == nil {
			t.Errorf("hold.refused without the web client: %v", e)
		}
	}
	if want := []string{"csrf", "csrf", "csrf", "used"}; !slices.Equal(reasons, want) {
		t.Errorf("hold.refused reasons %v, want %v", reasons, want)
	}
}

func TestHoldSendNowDelivers(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(holdRule))
	if err := d.send("alice@example.com", []string{"bob@example.net"}, plainMail("Status", "All fine.")); err != nil {
		t.Fatal(err)
	}
	notice := waitMail(t, hop, "alice@example.com")
	links := heldLinks(t, d, notice.Data, 2)
	if mailsFor(hop, "bob@example.net") != 0 {
		t.Fatal("held message delivered before Send now")
	}
	// The page speaks the browser's language.
	req, _ := http.NewRequest(http.MethodGet, links[0], nil)
	req.Header.Set("Accept-Language", "ja")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(ja), "送信を取り消す") || resp.Header.Get("Content-Language") != "ja" {
		t.Fatalf("Japanese cancel page: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Language"), ja)
	}
	b := newHeldClient(t)
	if code, page := b.press(links[1], nil); code != http.StatusOK || !strings.Contains(page, "sent") {
		t.Fatalf("POST send now: %d\n%s", code, page)
	}
	got := waitMail(t, hop, "bob@example.net")
	if !strings.Contains(string(got.Data), "All fine.") {
		t.Fatalf("delivered message:\n%s", got.Data)
	}
	if code, _ := b.get(links[0]); code != http.StatusGone {
		t.Fatalf("cancel after send now: %d, want 410", code)
	}
	wantEvents(t, d, "mail.released", "hold.sent_now")
}

// The hold's timer is in the database: a message held before a restart
// goes out after it, at its time.
func TestHoldTimerSurvivesRestart(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(strings.Replace(holdRule, "1h", "4s", 1)))
	if err := d.send("alice@example.com", []string{"bob@example.net"}, plainMail("Timer", "Goes out later.")); err != nil {
		t.Fatal(err)
	}
	waitMail(t, hop, "alice@example.com")
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	if mailsFor(hop, "bob@example.net") != 0 {
		t.Fatal("delivered before its time")
	}
	time.Sleep(5 * time.Second) // the release time passes while it is down
	d.start()
	got := waitMail(t, hop, "bob@example.net")
	if !strings.Contains(string(got.Data), "Goes out later.") {
		t.Fatalf("delivered message:\n%s", got.Data)
	}
}

const approveRule = `  - name: boss-approves
    match: {senders: ["alice@example.com"]}
    action: approve
    approvers: ["boss@example.com", "deputy@example.com"]
    approval_timeout: %s
`

// Approve: both approvers are asked; the view page shows the text,
// escaped; one approves, the message goes out and the sender is told; the
// other approver's links say it is decided.
func TestApprovalApprovedDelivers(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(fmt.Sprintf(approveRule, "24h")))
	subject := `<script>alert("s")</script> Offer`
	body := `Dear Bob, <img src=x onerror=alert(1)> the offer stands.`
	if err := d.send("alice@example.com", []string{"bob@example.net"}, plainMail(subject, body)); err != nil {
		t.Fatal(err)
	}
	boss := heldLinks(t, d, waitMail(t, hop, "boss@example.com").Data, 3)
	deputy := heldLinks(t, d, waitMail(t, hop, "deputy@example.com").Data, 3)
	b := newHeldClient(t)
	code, page := b.get(boss[0])
	if code != http.StatusOK {
		t.Fatalf("view: %d\n%s", code, page)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "<img") {
		t.Fatalf("view page shows the message's markup unescaped:\n%s", page)
	}
	if !strings.Contains(page, "&lt;script&gt;") || !strings.Contains(page, "the offer stands.") {
		t.Fatalf("view page lacks the subject or the text:\n%s", page)
	}
	if strings.Contains(page, "<form") {
		t.Fatal("view page has a form")
	}
	if code, _ := b.post(boss[0], url.Values{}, nil); code == http.StatusOK {
		t.Fatal("POST to a view link acted")
	}
	if mailsFor(hop, "bob@example.net") != 0 {
		t.Fatal("delivered before approval")
	}
	if code, page := b.press(boss[1], nil); code != http.StatusOK || !strings.Contains(page, "approved") {
		t.Fatalf("approve: %d\n%s", code, page)
	}
	got := waitMail(t, hop, "bob@example.net")
	if !strings.Contains(string(got.Data), "the offer stands.") {
		t.Fatalf("delivered:\n%s", got.Data)
	}
	result := waitMail(t, hop, "alice@example.com")
	if txt := decodedText(t, result.Data, "text/plain"); !strings.Contains(txt, "approved by") || !strings.Contains(txt, "boss@example.com") {
		t.Fatalf("approval result:\n%s", txt)
	}
	// The deputy comes too late: every link says it is decided.
	for _, l := range deputy {
		code, page := b.get(l)
		if code != http.StatusGone || !strings.Contains(page, "boss@example.com approved") {
			t.Fatalf("deputy link %s after approval: %d\n%s", l, code, page)
		}
	}
	wantEvents(t, d, "approval.requested", "approval.approved", "mail.released")
}

// Reject: the sender gets a DSN (multipart/report) with the reason; the
// message never goes out.
func TestApprovalRejectedSendsDSN(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(fmt.Sprintf(approveRule, "24h")))
	if err := d.send("alice@example.com", []string{"bob@example.net"}, plainMail("Prices", "Our prices.")); err != nil {
		t.Fatal(err)
	}
	boss := heldLinks(t, d, waitMail(t, hop, "boss@example.com").Data, 3)
	deputy := heldLinks(t, d, waitMail(t, hop, "deputy@example.com").Data, 3)
	b := newHeldClient(t)
	reason := "Wrong recipient\r\nBcc: evil@example.org"
	if code, page := b.press(boss[2], url.Values{"reason": {reason}}); code != http.StatusOK || !strings.Contains(page, "rejected") {
		t.Fatalf("reject: %d\n%s", code, page)
	}
	dsn := waitMail(t, hop, "alice@example.com")
	raw := string(dsn.Data)
	if !strings.Contains(raw, "multipart/report") || !strings.Contains(raw, "report-type=delivery-status") {
		t.Fatalf("not a DSN:\n%s", raw)
	}
	if dsn.From != "" {
		t.Fatalf("DSN sent with MAIL FROM:<%s>, want <>", dsn.From)
	}
	txt := decodedText(t, dsn.Data, "text/plain")
	if !strings.Contains(txt, "Wrong recipient") || !strings.Contains(txt, "boss@example.com") {
		t.Fatalf("DSN lacks the reason:\n%s", txt)
	}
	if strings.Contains(raw, "\r\nBcc: evil@example.org") || slices.Contains(dsn.To, "evil@example.org") {
		t.Fatal("the reason injected a header")
	}
	// The deputy's Approve after the rejection: refused, nothing sent.
	code, page := b.get(deputy[1])
	if code != http.StatusGone || !strings.Contains(page, "rejected") {
		t.Fatalf("deputy approve after reject: %d\n%s", code, page)
	}
	wantEvents(t, d, "approval.rejected", "mail.rejected")
	if mailsFor(hop, "bob@example.net") != 0 || mailsFor(hop, "evil@example.org") != 0 {
		t.Fatal("a rejected message went out")
	}
}

// Nobody decides: at the timeout the message is rejected with a DSN.
func TestApprovalTimeoutSendsDSN(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(fmt.Sprintf(approveRule, "1m")))
	if err := d.send("alice@example.com", []string{"bob@example.net"}, plainMail("Late", "Nobody looks.")); err != nil {
		t.Fatal(err)
	}
	boss := heldLinks(t, d, waitMail(t, hop, "boss@example.com").Data, 3)
	dsn := waitMail(t, hop, "alice@example.com")
	if !strings.Contains(string(dsn.Data), "multipart/report") {
		t.Fatalf("not a DSN:\n%s", dsn.Data)
	}
	if txt := decodedText(t, dsn.Data, "text/plain"); !strings.Contains(txt, "not approved within") {
		t.Fatalf("DSN lacks why:\n%s", txt)
	}
	b := newHeldClient(t)
	if code, _ := b.get(boss[1]); code != http.StatusGone {
		t.Fatalf("approve link after the timeout: %d, want 410", code)
	}
	wantEvents(t, d, "approval.expired", "mail.rejected")
	if mailsFor(hop, "bob@example.net") != 0 {
		t.Fatal("an expired message went out")
	}
}

// Two approvers decide at the same moment, one approving and one
// rejecting, each from the form they had open: exactly one decision
// counts, and what happens to the message is that one. A subject that
// decodes to a line break cannot add a header to the gateway's mail.
func TestApprovalRaceOneDecides(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(fmt.Sprintf(approveRule, "24h")))
	subject := "=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte("Hi\r\nBcc: evil@example.org")) + "?="
	if err := d.send("alice@example.com", []string{"bob@example.net"}, plainMail(subject, "Race.")); err != nil {
		t.Fatal(err)
	}
	bossMail := waitMail(t, hop, "boss@example.com")
	for _, raw := range [][]byte{bossMail.Data, waitMail(t, hop, "deputy@example.com").Data} {
		if strings.Contains(string(raw), "\r\nBcc:") {
			t.Fatalf("subject injected a header into the approval request:\n%s", raw)
		}
	}
	boss := heldLinks(t, d, bossMail.Data, 3)
	deputy := heldLinks(t, d, waitMail(t, hop, "deputy@example.com").Data, 3)
	b1, b2 := newHeldClient(t), newHeldClient(t)
	_, p1 := b1.get(boss[1])
	_, p2 := b2.get(deputy[2])
	f1, f2 := formOf(t, p1), formOf(t, p2)
	type result struct {
		code int
		who  string
	}
	results := make(chan result, 2)
	go func() { c, _ := b1.post(boss[1], f1, nil); results <- result{c, "approve"} }()
	go func() { c, _ := b2.post(deputy[2], f2, nil); results <- result{c, "reject"} }()
	r1, r2 := <-results, <-results
	var winner string
	switch {
	case r1.code == http.StatusOK && r2.code == http.StatusGone:
		winner = r1.who
	case r2.code == http.StatusOK && r1.code == http.StatusGone:
		winner = r2.who
	default:
		t.Fatalf("two decisions at once: %s %d, %s %d (want one 200 and one 410)", r1.who, r1.code, r2.who, r2.code)
	}
	if winner == "approve" {
		waitMail(t, hop, "bob@example.net")
	} else {
		dsn := waitMail(t, hop, "alice@example.com")
		if !strings.Contains(string(dsn.Data), "multipart/report") {
			t.Fatalf("rejected, but the sender got no DSN:\n%s", dsn.Data)
		}
		if mailsFor(hop, "bob@example.net") != 0 {
			t.Fatal("rejected, but delivered")
		}
	}
}

// Two instances on one Redis: the approval request mailed by one is
// decided on the other, approvers pressing at once on different
// instances give exactly one decision, and a used link is used on both.
func TestApprovalTwoInstancesOneDecides(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	shared := filepath.Join(t.TempDir(), "shared")
	policy := heldPolicy(fmt.Sprintf(approveRule, "24h"))
	a, _ := startRedisInstanceExtra(t, hop.Addr, shared, srv.URL(), policy)
	b, _ := startRedisInstanceExtra(t, hop.Addr, shared, srv.URL(), policy)
	if err := a.send("alice@example.com", []string{"bob@example.net"}, plainMail("Two instances", "Race.")); err != nil {
		t.Fatal(err)
	}
	boss := heldLinks(t, a, waitMail(t, hop, "boss@example.com").Data, 3)
	deputy := heldLinks(t, a, waitMail(t, hop, "deputy@example.com").Data, 3)
	approveOnA, rejectOnB := boss[1], onInstance(deputy[2], a, b)
	c1, c2 := newHeldClient(t), newHeldClient(t)
	code, p1 := c1.get(approveOnA)
	if code != http.StatusOK {
		t.Fatalf("approve page on a: %d\n%s", code, p1)
	}
	code, p2 := c2.get(rejectOnB)
	if code != http.StatusOK {
		t.Fatalf("reject page on b (the link mailed by a): %d\n%s", code, p2)
	}
	f1, f2 := formOf(t, p1), formOf(t, p2)
	type result struct {
		code int
		who  string
	}
	results := make(chan result, 2)
	go func() { c, _ := c1.post(approveOnA, f1, nil); results <- result{c, "approve"} }()
	go func() { c, _ := c2.post(rejectOnB, f2, nil); results <- result{c, "reject"} }()
	r1, r2 := <-results, <-results
	var winner result
	switch {
	case r1.code == http.StatusOK && r2.code == http.StatusGone:
		winner = r1
	case r2.code == http.StatusOK && r1.code == http.StatusGone:
		winner = r2
	default:
		t.Fatalf("two instances decided: %s %d, %s %d (want one 200 and one 410)", r1.who, r1.code, r2.who, r2.code)
	}
	// The winning link, replayed on the other instance: used.
	form, other := f1, onInstance(approveOnA, a, b)
	if winner.who == "reject" {
		form, other = f2, deputy[2]
	}
	if code, page := newHeldClient(t).post(other, form, nil); code != http.StatusGone && code != http.StatusForbidden {
		t.Fatalf("winning link replayed on the other instance: %d\n%s", code, page)
	}
	if code, page := newHeldClient(t).get(other); code != http.StatusGone {
		t.Fatalf("winning link on the other instance after the decision: %d\n%s", code, page)
	}
	if winner.who == "approve" {
		waitMail(t, hop, "bob@example.net")
	} else {
		dsn := waitMail(t, hop, "alice@example.com")
		if !strings.Contains(string(dsn.Data), "multipart/report") {
			t.Fatalf("rejected, but the sender got no DSN:\n%s", dsn.Data)
		}
		if mailsFor(hop, "bob@example.net") != 0 {
			t.Fatal("rejected, but delivered")
		}
	}
	decided := 0
	for _, typ := range eventTypes(t, b) {
		if typ == "approval.approved" || typ == "approval.rejected" {
			decided++
		}
	}
	if decided != 1 {
		t.Fatalf("%d approval decisions audited, want 1", decided)
	}
}

// TestHeldGuessingIsLimited: forged POSTs on /h/ are throttled like those
// on /d/. Each is a hold.refused (reason unknown for an invented token) and
// counts towards the client's denials: after 60 in a minute the client gets
// 429 on every link route. GETs of invented tokens are plain 404s that
// count nothing (a page's images must not lock a client out). Before, /h/
// refusals were neither counted nor audited.
func TestHeldGuessingIsLimited(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(holdRule))
	waitLog(t, d, "attachgate serving")
	b := newHeldClient(t)
	invented := func(i int) string { return fmt.Sprintf("%s/h/%s%02d", d.linkURL, strings.Repeat("G", 41), i) }
	for i := range 70 {
		if code, _ := b.get(invented(i)); code != http.StatusNotFound {
			t.Fatalf("GET of invented token %d: %d, want 404 (GETs count nothing)", i, code)
		}
	}
	codes := map[int]int{}
	for i := range 70 {
		code, _ := b.post(invented(i), url.Values{"csrf": {"x"}}, nil)
		codes[code]++
	}
	if codes[http.StatusForbidden] != 60 || codes[http.StatusTooManyRequests] != 10 {
		t.Fatalf("70 forged POSTs on invented /h/ tokens: %v, want 60 × 403 then 10 × 429", codes)
	}
	if code, _ := b.get(d.linkURL + "/d/" + strings.Repeat("G", 43)); code != http.StatusTooManyRequests {
		t.Fatalf("a /d/ link after the /h/ POSTs: %d, want 429 (one limit per client)", code)
	}
	single := 0
	for _, e := range exportEvents(t, d) {
		if e["type"] == "hold.refused" && e["reason"] == "unknown" &&
			!strings.HasPrefix(fmt.Sprint(e["detail"]), "aggregated:") {
			single++
		}
	}
	if single != 10 {
		t.Fatalf("%d hold.refused (unknown) events recorded one by one, want the first 10 (the rest are aggregated when the minute ends)", single)
	}
}
