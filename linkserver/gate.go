package linkserver

import (
	"net/http"
	"strings"

	"github.com/attachgate/attachgate/store"
)

// requireRecipient is the gate of every page that gives out a message's
// files. For a message without verification it returns ("", true). For
// link.verify: recipient-code it returns the recipient the visitor proved
// to be (the message's verification session cookie), or, when the
// session is missing, expired or forged, writes the address form with
// status 403 (the body is the form a browser shows; the status tells
// scripts that nothing was given out) and returns false.
//
// The form posts to /v/{kind}/{token}, kind d or m taken from the path of
// r (/d/{token} or /m/{token}), and a right code brings the visitor back
// to that path with 303.
//
// The session cookie is SameSite=Strict: a browser does not send it on a
// navigation from another site (a click in webmail). Call the gate where
// the request is same-site — the POST of a page's own form — and show
// the page itself on GET, as /d/ does; a GET opened from webmail would
// otherwise always see the address form (which, when submitted from a
// browser that holds a session, goes straight back without a new code).
func (s *Server) requireRecipient(w http.ResponseWriter, r *http.Request, m store.Message) (recipient string, ok bool) {
	if m.Verify == store.VerifyNone {
		return "", true
	}
	if rcpt, ok := s.verifiedRecipient(r, m); ok {
		return rcpt, true
	}
	kind := "d"
	if strings.HasPrefix(r.URL.Path, "/m/") {
		kind = "m"
	}
	token := r.PathValue("token")
	s.renderVerify(w, r, http.StatusForbidden, "verify-address", s.verifyPageFor(r, kind, token, m, ""), "")
	return "", false
}
