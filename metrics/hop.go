package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/relay"
)

// Next-hop steps (label op of the next_hop metrics).
const (
	HopConnect   = "connect"     // dial, STARTTLS, EHLO
	HopMail      = "mail"        // MAIL FROM
	HopRcpt      = "rcpt"        // one RCPT TO
	HopData      = "data"        // the DATA command
	HopEndOfData = "end_of_data" // the final dot: the next hop's verdict
)

// Hop wraps h so that each step of every next-hop session is timed into
// attachgate_next_hop_latency_seconds{op}, and transport failures (no
// reply, a dropped connection, a 421) count in
// attachgate_next_hop_errors_total{op}. A reply of the next hop, even a
// refusal, is an answer, not an error.
func (m *Metrics) Hop(h relay.Hop) relay.Hop {
	if m == nil {
		return h
	}
	return &timedHop{Hop: h, m: m}
}

type timedHop struct {
	relay.Hop
	m *Metrics
}

func (h *timedHop) Open(ctx context.Context) (relay.Session, error) {
	start := time.Now()
	s, err := h.Hop.Open(ctx)
	if !h.m.observeHop(HopConnect, start, err) {
		return nil, err
	}
	return &timedSession{Session: s, m: h.m}, nil
}

// observeHop records one step; it reports whether the step succeeded.
func (m *Metrics) observeHop(op string, start time.Time, err error) bool {
	var se *smtp.SMTPError
	transport := err != nil && (!errors.As(err, &se) || se.Code == 421)
	if transport {
		m.hopErrors.WithLabelValues(op).Inc()
	} else {
		m.hopLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}
	return err == nil
}

type timedSession struct {
	relay.Session
	m *Metrics
}

func (s *timedSession) Mail(from string, opts *smtp.MailOptions) error {
	start := time.Now()
	err := s.Session.Mail(from, opts)
	s.m.observeHop(HopMail, start, err)
	return err
}

func (s *timedSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	start := time.Now()
	err := s.Session.Rcpt(to, opts)
	s.m.observeHop(HopRcpt, start, err)
	return err
}

func (s *timedSession) Data() (relay.DataWriter, error) {
	start := time.Now()
	w, err := s.Session.Data()
	if !s.m.observeHop(HopData, start, err) {
		return nil, err
	}
	return &timedData{DataWriter: w, m: s.m}, nil
}

type timedData struct {
	relay.DataWriter
	m *Metrics
}

// Close times the wait for the final reply: from the end of the message
// (our dot) to the next hop's verdict.
func (d *timedData) Close() (string, error) {
	start := time.Now()
	reply, err := d.DataWriter.Close()
	d.m.observeHop(HopEndOfData, start, err)
	return reply, err
}
