package smtpd

import (
	"context"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/smtpreply"
)

var (
	replyAuthFailed = smtpreply.AuthFailed
	replyAuthLocked = smtpreply.AuthLocked
	replyAuthBusy   = smtpreply.AuthBusy
	replyAuthTwice  = smtpreply.AuthTwice
)

// AuthMechanisms lists what we offer; go-smtp offers AUTH only over TLS
// (AllowInsecureAuth stays false).
func (s *session) AuthMechanisms() []string {
	if s.srv.opts.Users == nil {
		return nil
	}
	if s.srv.opts.AllowLogin {
		return []string{sasl.Plain, sasl.Login}
	}
	return []string{sasl.Plain}
}

// Auth starts a SASL exchange. Errors must be *smtp.SMTPError: go-smtp
// turns anything else into a temporary 454 with our internal text.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.authUser != "" {
		return nil, replyAuthTwice
	}
	if s.srv.opts.Users == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if s.srv.authFailures.blocked(s.client) {
		s.authRefused(clientLocked, "")
		return nil, replyAuthLocked
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return s.authFailed(username, "authorization identity differs", false)
			}
			return s.checkPassword(username, password)
		}), nil
	case sasl.Login:
		if s.srv.opts.AllowLogin {
			return &loginServer{verify: s.checkPassword}, nil
		}
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// checkPassword hashes at most Options.AuthConcurrency passwords at a time
// across all sessions (an argon2id hash takes 64 MiB): beyond that the
// client gets 454 4.7.0 and nothing is counted. The attempt is counted
// before the hash, per client address and per user name, so parallel
// guesses cannot pass the lockout.
func (s *session) checkPassword(username, password string) error {
	select {
	case s.srv.hashSlots <- struct{}{}:
		defer func() { <-s.srv.hashSlots }()
	default:
		s.log.Warn("authentication refused: password checks busy", "user", username)
		return replyAuthBusy
	}
	succeeded, lock := s.srv.authFailures.attempt(s.client, username)
	if lock != notLocked {
		s.authRefused(lock, username)
		return replyAuthLocked
	}
	if err := s.srv.opts.Users.Verify(username, password); err != nil {
		return s.authFailed(username, "bad credentials", true)
	}
	succeeded()
	s.mu.Lock()
	s.authUser = username
	s.log = s.log.With("user", username)
	s.mu.Unlock()
	s.log.Info("authenticated")
	if s.onAuth != nil {
		s.onAuth()
	}
	return nil
}

// authFailed records a failure; counted tells that checkPassword already
// counted the attempt.
func (s *session) authFailed(username, reason string, counted bool) error {
	if !counted {
		s.srv.authFailures.fail(s.client, username)
	}
	s.log.Warn("authentication failed", "user", username, "reason", reason)
	s.recordAuthFailure(username, reason)
	return replyAuthFailed
}

// authRefused audits an AUTH refused without a password check because the
// client (or the user name) is locked out: the first few one by one, the
// rest of a window as one aggregated event, so a locked-out client cannot
// flood the audit log.
func (s *session) authRefused(lock lockKind, username string) {
	reason := "locked out"
	if lock == targetLocked {
		reason = "user locked out"
	}
	s.log.Warn("authentication refused", "user", username, "reason", reason)
	e := s.authFailureEvent(username, reason)
	if s.srv.authFailures.refused(lock, s.client, username, e) {
		s.srv.recordAudit(e)
	}
}

func (s *session) authFailureEvent(username, reason string) audit.Event {
	return audit.Event{Type: audit.TypeAuthFailed, Actor: "smtp",
		ClientAddr: s.client.String(), Helo: s.conn.Hostname(), AuthUser: username, Reason: reason}
}

func (s *session) recordAuthFailure(username, reason string) {
	s.srv.recordAudit(s.authFailureEvent(username, reason))
}

// recordAudit writes one event; a failure is logged (the SMTP answer does
// not depend on it).
func (s *Server) recordAudit(e audit.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.opts.Audit.Record(ctx, e); err != nil {
		s.log.Error("audit record", "type", e.Type, "client", e.ClientAddr, "err", err)
	}
}

// loginServer is the LOGIN mechanism (draft-murchison-sasl-login), which
// go-sasl no longer ships but some Outlook versions still use.
type loginServer struct {
	verify   func(user, pass string) error
	step     int
	username string
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carries the user name
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.verify(l.username, string(response))
	}
	return nil, true, replyAuthFailed
}
