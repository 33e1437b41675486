package main

// Attacks on the hold.refused audit of the /h/ pages, from a review.

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/smtptest"
	"github.com/emersion/go-smtp"
)

// heldCancelForm holds a message from alice by the hold rule and opens the
// Cancel link of her notice: the daemon, the browser, the link and the
// page's form.
func heldCancelForm(t *testing.T, subject string) (*daemon, *heldClient, string, url.Values) {
	t.Helper()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(holdRule))
	if err := d.send("alice@example.com", []string{"bob@example.net"}, plainMail(subject, "hello")); err != nil {
		t.Fatal(err)
	}
	cancel := heldLinks(t, d, waitMail(t, hop, "alice@example.com").Data, 2)[0]
	b := newHeldClient(t)
	code, page := b.get(cancel)
	if code != http.StatusOK {
		t.Fatalf("GET cancel: %d", code)
	}
	return d, b, cancel, formOf(t, page)
}

// TestHeldReplayedPostsAreAggregated: whoever kept a Cancel page's form
// (valid 24 h) can replay its POST after the link was used. README's audit
// table says hold.refused events beyond 10 a minute per client are
// aggregated, like download.denied (where a POST on an expired /d/ link is
// aggregated and counted). Every replay must not be a durable audit write.
func TestHeldReplayedPostsAreAggregated(t *testing.T) {
	t.Parallel()
	d, b, cancel, form := heldCancelForm(t, "replay")
	if code, _ := b.post(cancel, form, nil); code != http.StatusOK {
		t.Fatalf("POST cancel: %d", code)
	}
	const replays = 40
	for i := range replays {
		if code, _ := b.post(cancel, form, nil); code != http.StatusGone {
			t.Fatalf("replay %d: %d, want 410", i, code)
		}
	}
	single := 0
	for _, e := range exportEvents(t, d) {
		if e["type"] == "hold.refused" && e["reason"] == "used" &&
			!strings.HasPrefix(fmt.Sprint(e["detail"]), "aggregated:") {
			single++
		}
	}
	if single > 10 {
		t.Fatalf("%d replays of a used link wrote %d hold.refused events one by one; README: beyond 10 a minute per client they are aggregated", replays, single)
	}
}

// TestHeldCSRFRefusalNamesTheMessage: a forged (cross-site) POST on a live
// Cancel link is the attack the CSRF check exists for. audit/SCHEMA.md says
// hold.refused names, for a link that exists, the message, the sender while
// it is held and the link (detail "<kind> link mailed to <address>"); the
// csrf refusal is recorded before any lookup and names none of them.
func TestHeldCSRFRefusalNamesTheMessage(t *testing.T) {
	t.Parallel()
	d, b, cancel, form := heldCancelForm(t, "forged")
	if code, _ := b.post(cancel, form, http.Header{"Sec-Fetch-Site": {"cross-site"}}); code != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d, want 403", code)
	}
	found := false
	for _, e := range exportEvents(t, d) {
		if e["type"] != "hold.refused" || e["reason"] != "csrf" {
			continue
		}
		found = true
		if e["message_id"] == nil || e["sender"] != "alice@example.com" ||
			!strings.Contains(fmt.Sprint(e["detail"]), "cancel link mailed to alice@example.com") {
			t.Errorf("hold.refused (csrf) on a live link of a held message does not name the message, sender and link: %v", e)
		}
	}
	if !found {
		t.Fatal("no hold.refused (csrf) recorded")
	}
}

// TestHeldCrossSiteImagesDoNotLockOut: GET and HEAD must not change state
// (REVIEW.md), and on /d/ a GET of an unknown token is not counted. On /h/
// it now counts towards the client's 429 limit, so any web page (or an HTML
// mail with remote images) the sender opens can make their own browser
// fetch 61 invented /h/ links as images and lock the sender, and everyone
// behind the same NAT, out of every link route, their Cancel link included,
// again each minute while the page stays open.
func TestHeldCrossSiteImagesDoNotLockOut(t *testing.T) {
	t.Parallel()
	d, b, cancel, _ := heldCancelForm(t, "lockout")
	// What a browser sends for <img src="https://gateway/h/…"> on
	// another site.
	img := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"},
		"Sec-Fetch-Dest": {"image"}, "Accept": {"image/avif,image/webp,*/*"}}
	for i := range 61 {
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/h/%s%02d", d.linkURL, strings.Repeat("I", 41), i), nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range img {
			req.Header[k] = v
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if code, _ := b.get(cancel); code != http.StatusOK {
		t.Fatalf("the sender's own Cancel link after a page's cross-site images: %d, want 200", code)
	}
}

// TestHeldLateDecisionIsRefusedOnRecord: an approved message the next hop
// refused for now stays held (retried); the deputy's late Reject is
// refused as decided and on record with the message and the link it came
// from (the sender is named only for a link still open: the message's
// mail.held names it).
func TestHeldLateDecisionIsRefusedOnRecord(t *testing.T) {
	t.Parallel()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, heldPolicy(fmt.Sprintf(approveRule, "24h")))
	if err := d.send("alice@example.com", []string{"bob@example.net"}, plainMail("Later", "Text.")); err != nil {
		t.Fatal(err)
	}
	boss := heldLinks(t, d, waitMail(t, hop, "boss@example.com").Data, 3)
	deputy := heldLinks(t, d, waitMail(t, hop, "deputy@example.com").Data, 3)
	hop.SetBehaviour(smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}})
	b := newHeldClient(t)
	code, page := b.get(deputy[2])
	if code != http.StatusOK {
		t.Fatalf("deputy reject page: %d", code)
	}
	deputyForm := formOf(t, page)
	if code, page := b.press(boss[1], nil); code != http.StatusAccepted {
		t.Fatalf("approve with the next hop refusing for now: %d, want 202\n%s", code, page)
	}
	if code, _ := b.post(deputy[2], deputyForm, nil); code != http.StatusGone {
		t.Fatalf("deputy's late reject: %d, want 410", code)
	}
	if code, page := b.get(boss[0]); code != http.StatusGone || !strings.Contains(page, "approved") {
		t.Fatalf("view after approval: %d\n%s", code, page)
	}
	found := false
	for _, e := range exportEvents(t, d) {
		if e["type"] == "hold.refused" && e["reason"] == "decided" {
			found = true
			if e["message_id"] == nil || !strings.Contains(fmt.Sprint(e["detail"]), "reject link mailed to deputy@example.com") {
				t.Errorf("hold.refused (decided) does not name the message and the link: %v", e)
			}
		}
	}
	if !found {
		t.Fatal("no hold.refused (decided) recorded")
	}
}
