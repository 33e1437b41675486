package linkserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/store"
)

// Recipient verification (link.verify: recipient-code). A visitor proves
// to be one of a message's envelope recipients by a one-time code mailed
// to that address, and gets a session for that message:
//
//	POST /v/{kind}/{token}  op=send email=…       mail a code (if a recipient)
//	POST /v/{kind}/{token}  op=code email=… code=… check it; 303 back to /{kind}/{token}
//
// kind is d (a file's landing page) or m (the message page); token is
// that page's token. Both forms carry a form token (an HMAC of the kind,
// the page's token hash and the time, as the landing page's) and are
// refused cross-site by http.CrossOriginProtection.
//
// Nothing a stranger sees depends on whether an address is a recipient:
// op=send answers the same page after the same work (the per-client
// limit, then a background job that looks the address up, applies the
// per-recipient limit and queues the mail), and op=code runs the same
// store check (counting, lockout) for any address, a stranger's address
// simply having no codes.
const (
	codeDigits  = 8
	codeTTL     = 10 * time.Minute
	maxCodeMiss = 5
	codeLockFor = 15 * time.Minute
	// sendPerRecipient codes per recipient of a message and sendWindow.
	sendPerRecipient = 3
	// sendPerClient code requests per client (address or IPv6 /64).
	sendPerClient = 10
	sendWindow    = 10 * time.Minute
	// triesPerClient code attempts per client and triesWindow, whatever
	// address they name: brute force across recipients and messages.
	triesPerClient = 30
	triesWindow    = 15 * time.Minute
	// sessionTTL is how long a verified session lasts.
	sessionTTL = 12 * time.Hour
	// maxAddressLen is RFC 5321's path limit.
	maxAddressLen = 254
	// maxPendingSends bounds the background code jobs; more requests
	// wait for a slot (whatever the address).
	maxPendingSends  = 32
	verifyJobTimeout = 30 * time.Second
	sessionMACLen    = 16
	sessionCookiePfx = "ag_v_"
)

// verifier is the Server's state for recipient verification.
type verifier struct {
	codeKey    []byte // HMAC key of stored code hashes
	sessionKey []byte // HMAC key of session cookies and their names
	formKey    []byte // HMAC key of the verification forms' tokens
	jobs       sync.WaitGroup
	slots      chan struct{}
}

func newVerifier(macKey []byte) *verifier {
	return &verifier{
		codeKey:    subkey(macKey, "attachgate verify code v1"),
		sessionKey: subkey(macKey, "attachgate verify session v1"),
		formKey:    subkey(macKey, "attachgate verify form v1"),
		slots:      make(chan struct{}, maxPendingSends),
	}
}

func subkey(key []byte, label string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// wait lets the running code jobs finish (Server.Close).
func (v *verifier) wait() { v.jobs.Wait() }

// ---- addresses ----

// normalizeAddress is the form addresses are compared in: the local part
// as given, the domain lowercased and in its ASCII (IDNA) form, so
// Bob@EXAMPLE.net, bob@example.net and a Unicode domain typed either way
// match. ok is false for what cannot be an address.
func normalizeAddress(a string) (string, bool) {
	a = strings.TrimSpace(a)
	if a == "" || len(a) > maxAddressLen || !utf8.ValidString(a) {
		return "", false
	}
	for _, r := range a {
		if unicode.IsControl(r) || r == '<' || r == '>' || r == '\u2028' || r == '\u2029' {
			return "", false
		}
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", false
	}
	local, domain := a[:at], a[at+1:]
	if d, err := idna.Lookup.ToASCII(domain); err == nil {
		domain = d
	}
	return local + "@" + strings.ToLower(domain), true
}

// matchRecipient returns the envelope recipient of recipients that typed
// names (and its index), as stored: codes go to that address, never to
// what was typed.
func matchRecipient(recipients []string, typed string) (string, int, bool) {
	want, ok := normalizeAddress(typed)
	if !ok {
		return "", -1, false
	}
	for i, r := range recipients {
		if n, ok := normalizeAddress(r); ok && n == want {
			return r, i, true
		}
	}
	return "", -1, false
}

// ---- codes ----

// newCode returns codeDigits decimal digits from crypto/rand.
func newCode() (string, error) {
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(codeDigits), nil)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return "", fmt.Errorf("new code: %w", err)
	}
	return fmt.Sprintf("%0*d", codeDigits, n), nil
}

// cleanCode takes what a visitor typed: spaces and hyphens are dropped
// (codes are shown in groups), full-width digits become ASCII.
func cleanCode(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r >= '０' && r <= '９':
			b.WriteRune('0' + (r - '０'))
		case r == ' ' || r == '-' || r == '\u3000':
		default:
			b.WriteRune(r)
		}
		if b.Len() > 4*codeDigits {
			break
		}
	}
	return b.String()
}

// codeHash is what the store keeps of a code: an HMAC binding it to the
// message and the address it was sent to.
func (s *Server) codeHash(messageID, address, code string) []byte {
	m := hmac.New(sha256.New, s.verify.codeKey)
	m.Write([]byte(messageID))
	m.Write([]byte{0})
	m.Write([]byte(address))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// ---- sessions ----

// sessionCookieName names the session cookie of one message: a keyed hash
// of its ID, so cookies of different messages never collide and the name
// tells nothing.
func (s *Server) sessionCookieName(messageID string) string {
	m := hmac.New(sha256.New, s.verify.sessionKey)
	m.Write([]byte("name\x00"))
	m.Write([]byte(messageID))
	return sessionCookiePfx + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:9])
}

// sessionMAC signs (message ID, recipient, payload); payload holds the
// recipient's index and the expiry.
func (s *Server) sessionMAC(messageID, recipient string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.verify.sessionKey)
	m.Write([]byte("session\x00"))
	m.Write([]byte(messageID))
	m.Write([]byte{0})
	m.Write([]byte(recipient))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:sessionMACLen]
}

// sessionValue is base64url(index uint16 | expiry unix int64 | MAC).
func (s *Server) sessionValue(m store.Message, idx int, expires time.Time) string {
	b := make([]byte, 10, 10+sessionMACLen)
	binary.BigEndian.PutUint16(b, uint16(idx))
	binary.BigEndian.PutUint64(b[2:], uint64(expires.Unix()))
	b = append(b, s.sessionMAC(m.ID, m.Recipients[idx], b[:10])...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// verifiedRecipient returns the recipient of m the request's session
// cookie proves, if it is valid now.
func (s *Server) verifiedRecipient(r *http.Request, m store.Message) (string, bool) {
	c, err := r.Cookie(s.sessionCookieName(m.ID))
	if err != nil {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(b) != 10+sessionMACLen {
		return "", false
	}
	idx := int(binary.BigEndian.Uint16(b))
	if idx >= len(m.Recipients) {
		return "", false
	}
	if !hmac.Equal(b[10:], s.sessionMAC(m.ID, m.Recipients[idx], b[:10])) {
		return "", false
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(b[2:10])), 0)
	now := s.now()
	if !now.Before(expires) || expires.After(now.Add(sessionTTL+formTokenSkew)) {
		return "", false
	}
	return m.Recipients[idx], true
}

func (s *Server) setSession(w http.ResponseWriter, r *http.Request, m store.Message, idx int, now time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.sessionCookieName(m.ID),
		Value:    s.sessionValue(m, idx, now.Add(sessionTTL)),
		Path:     "/",
		MaxAge:   int(sessionTTL / time.Second),
		HttpOnly: true,
		Secure:   s.secure(r),
		SameSite: http.SameSiteStrictMode,
	})
}

// ---- form tokens ----

// verifyFormToken is the hidden field of the verification forms of the
// page kind/tokenHash, issued at now (layout as formToken).
func (s *Server) verifyFormToken(kind string, tokenHash []byte, now time.Time) string {
	b := make([]byte, 8, 8+formMACLen)
	binary.BigEndian.PutUint64(b, uint64(now.Unix()))
	b = append(b, s.verifyFormMAC(kind, tokenHash, b[:8])...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) verifyFormMAC(kind string, tokenHash, issued []byte) []byte {
	m := hmac.New(sha256.New, s.verify.formKey)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write(tokenHash)
	m.Write(issued)
	return m.Sum(nil)
}

// verifyCSRFValid: not a cross-site browser POST, and the form token was
// issued by us for this page within formTokenTTL.
func (s *Server) verifyCSRFValid(r *http.Request, kind string, tokenHash []byte, now time.Time) bool {
	if err := s.crossOrigin.Check(r); err != nil {
		return false
	}
	if err := r.ParseForm(); err != nil {
		return false
	}
	field := r.PostForm.Get(csrfField)
	if len(field) != formTokenEncodedLen {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(field)
	if err != nil || len(b) != 8+formMACLen {
		return false
	}
	if !hmac.Equal(b[8:], s.verifyFormMAC(kind, tokenHash, b[:8])) {
		return false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	return !issued.After(now.Add(formTokenSkew)) && now.Sub(issued) <= formTokenTTL
}

// ---- pages ----

// verifyPageFor fills the verification forms for the page kind/token of m.
func (s *Server) verifyPageFor(r *http.Request, kind, token string, m store.Message, email string) *verifyPage {
	sender := m.Sender
	if sender == "" {
		sender = catalogFor(r).NoSender
	}
	return &verifyPage{
		Action: "/v/" + kind + "/" + url.PathEscape(token),
		CSRF:   s.verifyFormToken(kind, store.HashToken(token), s.now()),
		Email:  email,
		Sender: sender,
		Digits: codeDigits,
	}
}

// ---- handler ----

// handleVerify serves both verification forms.
func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	now := s.now()
	kind, token := r.PathValue("kind"), r.PathValue("token")
	if kind != "d" && kind != "m" {
		s.renderError(w, r, pageNotFound)
		return
	}
	m, ok := s.verifyTarget(w, r, kind, token, now)
	if !ok {
		return
	}
	if !s.verifyCSRFValid(r, kind, store.HashToken(token), now) {
		denied := s.verifyEvent(r, audit.TypeVerifyFailed, m, "")
		denied.Reason = "csrf"
		s.denials.deny(r, denied)
		s.renderError(w, r, pageCSRF)
		return
	}
	back := "/" + kind + "/" + url.PathEscape(token)
	if m.Verify == store.VerifyNone {
		s.redirectBack(w, back)
		return
	}
	switch r.PostForm.Get("op") {
	case "send":
		s.verifySend(w, r, kind, token, m, back, now)
	case "code":
		s.verifyCode(w, r, kind, token, m, back, now)
	default:
		s.renderVerify(w, r, http.StatusBadRequest, "verify-address", s.verifyPageFor(r, kind, token, m, ""), "")
	}
}

// verifyTarget finds the message behind the page kind/token and answers
// (404, 410, 503) when there is none to verify for.
func (s *Server) verifyTarget(w http.ResponseWriter, r *http.Request, kind, token string, now time.Time) (store.Message, bool) {
	if kind == "d" {
		view, err := s.linkByToken(r, token)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				s.renderMissing(w, r, token, now, nil)
				return store.Message{}, false
			}
			s.storeFailed(w, r, "link by token", "", err)
			return store.Message{}, false
		}
		if err := linkState(view, now); err != nil {
			kind, _ := denial(err)
			s.renderErrorAt(w, r, kind, stateTime(view, err))
			return store.Message{}, false
		}
		return view.Message, true
	}
	if !plausibleToken(token) {
		s.renderError(w, r, pageNotFound)
		return store.Message{}, false
	}
	ctx, cancel := storeContext(r)
	mv, err := s.store.MessageByTokenHash(ctx, store.PageToken, store.HashToken(token))
	cancel()
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.renderError(w, r, pageNotFound)
			return store.Message{}, false
		}
		s.storeFailed(w, r, "message by token", "", err)
		return store.Message{}, false
	}
	var state error = store.ErrExpired
	for _, v := range mv.Links {
		if state = linkState(v, now); state == nil {
			break
		}
	}
	if state != nil {
		kind, _ := denial(state)
		s.renderError(w, r, kind)
		return store.Message{}, false
	}
	return mv.Message, true
}

func (s *Server) redirectBack(w http.ResponseWriter, back string) {
	h := w.Header()
	h.Set("Location", back)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusSeeOther)
}

// verifySend asks for a code. Whatever the address, the visitor gets the
// code form; a recipient within its limits gets a mail.
func (s *Server) verifySend(w http.ResponseWriter, r *http.Request, kind, token string, m store.Message, back string, now time.Time) {
	typed := strings.TrimSpace(r.PostForm.Get("email"))
	page := s.verifyPageFor(r, kind, token, m, typed)
	vt := verifyCatalogFor(r)
	if _, ok := normalizeAddress(typed); !ok {
		s.renderVerify(w, r, http.StatusBadRequest, "verify-address", page, vt.BadAddress)
		return
	}
	// A browser that holds a session for this message needs no code.
	if _, ok := s.verifiedRecipient(r, m); ok {
		s.redirectBack(w, back)
		return
	}
	ctx, cancel := storeContext(r)
	allowed, err := s.store.HitLimit(ctx, "vsend:c:"+s.clientKey(r), sendPerClient, sendWindow, now)
	cancel()
	if err != nil {
		s.storeFailed(w, r, "code request limit", "", err)
		return
	}
	if !allowed {
		e := s.verifyEvent(r, audit.TypeVerifyFailed, m, "")
		e.Reason = "code_requests_limited"
		s.denials.deny(r, e)
		w.Header().Set("Retry-After", strconv.Itoa(int(sendWindow/time.Second)))
		t := catalogFor(r)
		s.renderPage(w, r, http.StatusTooManyRequests, "error", pageData{T: t, Title: vt.TooManyTitle, Message: vt.TooManyRequests})
		return
	}
	base := s.verifyEvent(r, audit.TypeVerifySent, m, "")
	// The slot is taken here, whatever the address, so a busy server
	// slows every answer alike.
	s.verify.slots <- struct{}{}
	s.verify.jobs.Add(1)
	go func() {
		defer func() { <-s.verify.slots; s.verify.jobs.Done() }()
		s.sendCode(m, typed, base, now)
	}()
	s.renderVerify(w, r, http.StatusOK, "verify-code", page, "")
}

// sendCode is the background half of a code request.
func (s *Server) sendCode(m store.Message, typed string, base audit.Event, now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), verifyJobTimeout)
	defer cancel()
	failed := func(reason string, rcpt string) {
		e := base
		e.Type, e.Reason = audit.TypeVerifyFailed, reason
		if rcpt != "" {
			e.Recipients = []string{rcpt}
		}
		s.recordBackground(ctx, e)
	}
	rcpt, _, ok := matchRecipient(m.Recipients, typed)
	if !ok {
		failed("not_recipient", "")
		return
	}
	subject := store.CodeSubject(m.ID, rcpt)
	allowed, err := s.store.HitLimit(ctx, "vsend:r:"+hex.EncodeToString(subject), sendPerRecipient, sendWindow, now)
	if err != nil {
		s.log.Error("linkserver: code request limit", "message_id", m.ID, "err", err)
		failed("store_error", rcpt)
		return
	}
	if !allowed {
		failed("recipient_limited", rcpt)
		return
	}
	code, err := newCode()
	if err != nil {
		s.log.Error("linkserver: new code", "err", err)
		failed("internal_error", rcpt)
		return
	}
	expires := now.Add(codeTTL)
	if err := s.store.AddCode(ctx, subject, s.codeHash(m.ID, rcpt, code), expires, now); err != nil {
		if errors.Is(err, store.ErrLocked) {
			failed("locked", rcpt)
			return
		}
		s.log.Error("linkserver: store code", "message_id", m.ID, "err", err)
		failed("store_error", rcpt)
		return
	}
	err = s.notify.Send(ctx, notify.Notice{
		Kind:  "code",
		To:    []string{rcpt},
		Lang:  m.Lang,
		Data:  mailtmpl.CodeData{Code: code, Expires: expires, Sender: m.Sender, Subject: m.Subject},
		About: m.ID, Expires: expires,
	})
	if err != nil {
		s.log.Error("linkserver: queue code mail", "message_id", m.ID, "err", err)
		failed("not_queued", rcpt)
		return
	}
	e := base
	e.Recipients = []string{rcpt}
	e.Expires = expires
	s.recordBackground(ctx, e)
}

// verifyCode checks a code. A stranger's address runs the same store
// check as a recipient's and is counted and locked the same way.
func (s *Server) verifyCode(w http.ResponseWriter, r *http.Request, kind, token string, m store.Message, back string, now time.Time) {
	typed := strings.TrimSpace(r.PostForm.Get("email"))
	page := s.verifyPageFor(r, kind, token, m, typed)
	vt := verifyCatalogFor(r)
	norm, ok := normalizeAddress(typed)
	if !ok {
		s.renderVerify(w, r, http.StatusBadRequest, "verify-address", page, vt.BadAddress)
		return
	}
	ctx, cancel := storeContext(r)
	defer cancel()
	// Counted before checking, whatever the address.
	allowed, err := s.store.HitLimit(ctx, "vtry:c:"+s.clientKey(r), triesPerClient, triesWindow, now)
	if err != nil {
		s.storeFailed(w, r, "code attempt limit", "", err)
		return
	}
	if !allowed {
		e := s.verifyEvent(r, audit.TypeVerifyFailed, m, "")
		e.Reason = "code_attempts_limited"
		s.denials.deny(r, e)
		w.Header().Set("Retry-After", strconv.Itoa(int(triesWindow/time.Second)))
		t := catalogFor(r)
		s.renderPage(w, r, http.StatusTooManyRequests, "error", pageData{T: t, Title: vt.TooManyTitle, Message: vt.TooManyAttempts})
		return
	}
	rcpt, idx, isRecipient := matchRecipient(m.Recipients, typed)
	address := norm
	if isRecipient {
		address = rcpt
	}
	res, err := s.store.CheckCode(ctx, store.CodeSubject(m.ID, address),
		s.codeHash(m.ID, address, cleanCode(r.PostForm.Get("code"))),
		store.CodeLimits{MaxFailures: maxCodeMiss, LockFor: codeLockFor}, now)
	if err != nil {
		s.storeFailed(w, r, "check code", "", err)
		return
	}
	auditRcpt := ""
	if isRecipient {
		auditRcpt = rcpt
	}
	switch res.Outcome {
	case store.CodeOK:
		if !isRecipient { // cannot happen: strangers have no codes
			s.renderVerify(w, r, http.StatusForbidden, "verify-code", page, vt.WrongCode)
			return
		}
		if err := s.record(r, s.verifyEvent(r, audit.TypeVerifyOK, m, rcpt)); err != nil {
			s.renderError(w, r, pageUnavailable)
			return
		}
		s.setSession(w, r, m, idx, now)
		s.redirectBack(w, back)
	case store.CodeWrong:
		e := s.verifyEvent(r, audit.TypeVerifyFailed, m, auditRcpt)
		e.Reason = "wrong_code"
		if !isRecipient {
			e.Reason = "wrong_code_not_recipient"
		}
		e.Detail = fmt.Sprintf("failures=%d of %d", res.Failures, maxCodeMiss)
		_ = s.record(r, e)
		s.renderVerify(w, r, http.StatusForbidden, "verify-code", page, vt.WrongCode)
	default: // locked now or already
		e := s.verifyEvent(r, audit.TypeVerifyLocked, m, auditRcpt)
		e.Reason = "wrong_codes"
		if res.Outcome == store.CodeLocked {
			e.Type, e.Reason = audit.TypeVerifyFailed, "locked"
		}
		if !isRecipient {
			e.Detail = "not a recipient"
		}
		e.Expires = res.LockedUntil
		_ = s.record(r, e)
		wait := res.LockedUntil.Sub(now)
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		t := catalogFor(r)
		s.renderPage(w, r, http.StatusTooManyRequests, "error", pageData{T: t, Title: vt.LockedTitle,
			Message: fmt.Sprintf(vt.Locked, t.formatTime(res.LockedUntil.In(s.location)))})
	}
}

// verifyEvent starts an audit event about a verification of m.
func (s *Server) verifyEvent(r *http.Request, typ audit.EventType, m store.Message, rcpt string) audit.Event {
	e := s.webEvent(r, typ)
	e.MessageID, e.HeaderID, e.Sender = m.ID, m.MessageID, m.Sender
	if rcpt != "" {
		e.Recipients = []string{rcpt}
	}
	return e
}

// recordBackground appends an event from a background job.
func (s *Server) recordBackground(ctx context.Context, e audit.Event) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := s.audit.Record(actx, e); err != nil {
		s.log.Error("linkserver: audit record failed", "event", e.Type, "message_id", e.MessageID, "err", err)
	}
}
