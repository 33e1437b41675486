package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Service is the one handle features use to send the gateway's own mail:
// it composes and queues in one call. Its errors are for logging only —
// the caller never fails the mail a notice is about because of one (the
// Sender has already audited notice.failed).
type Service struct {
	Composer *Composer
	Sender   *Sender
	Logger   *slog.Logger
}

// ErrNoService is returned by the methods of a nil *Service.
var ErrNoService = errors.New("notify: no notifier configured")

// Send composes n and queues it.
func (s *Service) Send(ctx context.Context, n Notice) error {
	if s == nil {
		return ErrNoService
	}
	m, err := s.Composer.Compose(n)
	if err != nil {
		s.log().Error("compose notice", "kind", n.Kind, "about", n.About, "err", err)
		return fmt.Errorf("compose %s notice: %w", n.Kind, err)
	}
	if err := s.Sender.Enqueue(ctx, m); err != nil {
		s.log().Error("queue notice", "kind", n.Kind, "about", n.About, "err", err)
		return err
	}
	return nil
}

// SendDSN composes a delivery status notification and queues it. A null
// envelope sender gives ErrNullSender: nobody can be told.
func (s *Service) SendDSN(ctx context.Context, d DSN) error {
	if s == nil {
		return ErrNoService
	}
	m, err := s.Composer.DSN(d)
	if err != nil {
		if !errors.Is(err, ErrNullSender) {
			s.log().Error("compose DSN", "about", d.About, "err", err)
		}
		return fmt.Errorf("compose DSN: %w", err)
	}
	if err := s.Sender.Enqueue(ctx, m); err != nil {
		s.log().Error("queue DSN", "about", d.About, "err", err)
		return err
	}
	return nil
}

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}
