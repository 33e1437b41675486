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
		s.recordAuthFailure("", "locked out")
		return nil, replyAuthLocked
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return s.authFailed(username, "authorization identity differs")
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

func (s *session) checkPassword(username, password string) error {
	if err := s.srv.opts.Users.Verify(username, password); err != nil {
		return s.authFailed(username, "bad credentials")
	}
	s.authUser = username
	s.log = s.log.With("user", username)
	s.log.Info("authenticated")
	return nil
}

func (s *session) authFailed(username, reason string) error {
	s.srv.authFailures.fail(s.client)
	s.log.Warn("authentication failed", "user", username, "reason", reason)
	s.recordAuthFailure(username, reason)
	return replyAuthFailed
}

func (s *session) recordAuthFailure(username, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.opts.Audit.Record(ctx, audit.Event{Type: audit.TypeAuthFailed, Actor: "smtp",
		ClientAddr: s.client.String(), Helo: s.conn.Hostname(), AuthUser: username, Reason: reason}); err != nil {
		s.log.Error("audit auth.failed", "err", err)
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
