package linkserver

import (
	"net/http"

	"github.com/attachgate/attachgate/store"
)

// requireRecipient is the verification gate of a message's pages and
// downloads. It returns the verified recipient ("" when the message needs
// no verification) and ok; when !ok it has already written the answer.
//
// This is the minimal gate the message page builds on: a message without
// verification is open to whoever holds its token; a message with
// verify: recipient-code is refused with 403 until a visitor can prove
// to be a recipient (the one-time code flow replaces this file).
func (s *Server) requireRecipient(w http.ResponseWriter, r *http.Request, m store.Message) (recipient string, ok bool) {
	if m.Verify == store.VerifyNone {
		return "", true
	}
	t := catalogFor(r)
	text := gateTexts[t.Lang]
	s.renderPage(w, r, http.StatusForbidden, "error", pageData{T: t, Title: text.Title, Message: text.Message})
	return "", false
}

var gateTexts = map[string]errorText{
	"en": {Title: "Verification required", Message: "The sender asked that recipients confirm their address before downloading these files."},
	"ja": {Title: "確認が必要です", Message: "送信者の設定により、ダウンロードの前に受信者のメールアドレスの確認が必要です。"},
}
