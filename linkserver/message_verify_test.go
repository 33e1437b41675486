package linkserver

import (
	"archive/zip"
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/attachgate/attachgate/audit"
)

// A recipient-code message's page: without a session the address form
// (403, nothing listed or counted); with the code from the mail, the page,
// a file and Download all, every event naming the verified recipient.
func TestMessagePageVerifiedRecipient(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	c := v.browser(false)
	base := v.http.URL
	resp, body := v.do(c, http.MethodGet, "/m/"+m.pageToken, nil, nil)
	if resp.StatusCode != http.StatusForbidden || bytes.Contains(body, []byte("report.pdf")) {
		t.Fatalf("page without a session: %d", resp.StatusCode)
	}
	send := verifyForms(t, body)["send"]
	resp, body = sendCode(t, c, base, send, "bob@example.net")
	mustStatus(t, resp, http.StatusOK)
	code := v.waitCode("bob@example.net", 1)
	resp, _ = enterCode(t, c, base, verifyForms(t, body)["code"], "bob@example.net", code)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/m/"+m.pageToken {
		t.Fatalf("after the code: %d to %q, want 303 back to the page", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, p := v.openMessage(c, m.pageToken, nil)
	mustStatus(t, resp, http.StatusOK)
	if len(p.files) != 1 {
		t.Fatalf("verified page: %d forms", len(p.files))
	}
	resp, _ = v.postMessage(c, p.files[m.link.id], url.Values{csrfField: {p.csrf}, fileField: {m.link.id}})
	mustStatus(t, resp, http.StatusSeeOther)
	// The signed URL names the recipient: it works without the session
	// cookie (a download manager), and download.ok still names bob.
	loc := resp.Header.Get("Location")
	if u, err := url.Parse(loc); err != nil || u.Query().Get("r") != "0" {
		t.Errorf("signed URL %q does not name the recipient", loc)
	}
	resp, got := v.do(http.DefaultClient, http.MethodGet, loc, nil, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, m.content) {
		t.Fatalf("file: %d", resp.StatusCode)
	}
	resp, zipBody := v.postMessage(c, p.allAction, url.Values{csrfField: {p.csrf}})
	mustStatus(t, resp, http.StatusOK)
	if _, err := zip.NewReader(bytes.NewReader(zipBody), int64(len(zipBody))); err != nil {
		t.Fatal(err)
	}
	ok := v.events.ofType(audit.TypeDownloadOK)
	if len(ok) != 2 {
		t.Fatalf("download.ok: %d", len(ok))
	}
	for _, e := range append(ok, v.events.ofType(audit.TypeLinkViewed)...) {
		if !slices.Equal(e.Recipients, []string{"bob@example.net"}) {
			t.Errorf("%s without the recipient: %+v", e.Type, e)
		}
	}
}
