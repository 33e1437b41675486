package notify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/vault"
)

// ErrQueueFull is returned by Enqueue when MaxQueue notices are pending.
var ErrQueueFull = errors.New("notify: queue full")

// SenderOptions configures a Sender.
type SenderOptions struct {
	Hop   relay.Hop      // the configured next hop
	Audit audit.Recorder // notice.sent and notice.failed go here
	Ring  *vault.KeyRing // queued mail is encrypted to its current key
	// Dir holds the queue (storage.dir/notify). Instances sharing
	// storage.dir share it; a rename claims a notice, so one instance
	// sends it.
	Dir string
	// ReturnPath is the MAIL FROM of notices (notify.return_path); "" sends
	// them with the null reverse-path MAIL FROM:<>, as DSNs always are.
	ReturnPath string
	// MaxQueue bounds pending notices (default 10000); Enqueue beyond it
	// returns ErrQueueFull at once.
	MaxQueue int
	// MaxAge is how long a notice is retried when its Mail does not say
	// (default 48h).
	MaxAge time.Duration
	// RetryBase and RetryMax shape the backoff: RetryBase doubled per
	// failed attempt, at most RetryMax (defaults 1m and 1h).
	RetryBase, RetryMax time.Duration
	// ClaimLease is how long a notice being sent stays claimed; after it,
	// another run (this instance after a crash, or another instance) takes
	// it again (default 1h, longer than a send to a slow next hop).
	ClaimLease time.Duration
	// Poll is how often the queue directory is looked at for notices
	// queued by other instances (default 30s).
	Poll   time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Sender queues composed mail durably and sends it in the background.
type Sender struct {
	o    SenderOptions
	tmp  string
	wake chan struct{}
	// mu serialises queue scans of this process.
	mu sync.Mutex
	// admit serialises the queue-size check; writing counts the files
	// being written by this process, not yet in the directory.
	admit   sync.Mutex
	writing int
	// cleaned is when runDue last removed stale temp files.
	cleaned time.Time
}

const (
	queueMagic   = "attachgate-notice v1 "
	maxMetaBytes = 64 << 10
)

// queued is the envelope stored (encrypted) before the message.
type queued struct {
	Kind      string    `json:"kind"`
	MessageID string    `json:"message_id"`
	To        []string  `json:"to"`
	Null      bool      `json:"null_sender"`
	About     string    `json:"about,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

// NewSender prepares the queue directory. Call Run to send.
func NewSender(o SenderOptions) (*Sender, error) {
	if o.Hop == nil || o.Audit == nil || o.Ring == nil || o.Dir == "" {
		return nil, errors.New("notify: sender needs Hop, Audit, Ring and Dir")
	}
	if o.ReturnPath != "" {
		if err := CheckAddress(o.ReturnPath); err != nil {
			return nil, fmt.Errorf("notify: return path: %w", err)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MaxAge, 48*time.Hour)
	def(&o.RetryBase, time.Minute)
	def(&o.RetryMax, time.Hour)
	def(&o.ClaimLease, time.Hour)
	def(&o.Poll, 30*time.Second)
	if o.MaxQueue <= 0 {
		o.MaxQueue = 10000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Logger = o.Logger.With("component", "notify")
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Sender{o: o, tmp: filepath.Join(o.Dir, "tmp"), wake: make(chan struct{}, 1)}
	if err := os.MkdirAll(s.tmp, 0o700); err != nil {
		return nil, fmt.Errorf("notify: queue %s: %w", o.Dir, err)
	}
	s.cleanTemp()
	s.cleaned = o.Now()
	return s, nil
}

// cleanTemp removes half-written queue files a crash left (at start and
// hourly); files younger than an hour may belong to another instance
// writing right now.
func (s *Sender) cleanTemp() {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && s.o.Now().Sub(fi.ModTime()) > time.Hour {
			os.Remove(filepath.Join(s.tmp, e.Name()))
		}
	}
}

// queue file names: q.<id>.<failed attempts>.<next attempt, unix ms>.age
// while pending, c.<id>.<failed attempts>.<claimed at, unix ms>.age while
// an instance sends it.
type entry struct {
	state   byte // 'q' or 'c'
	id      string
	attempt int
	at      time.Time
}

func (e entry) name() string {
	return fmt.Sprintf("%c.%s.%d.%d.age", e.state, e.id, e.attempt, e.at.UnixMilli())
}

func parseEntry(name string) (entry, bool) {
	p := strings.Split(name, ".")
	if len(p) != 5 || (p[0] != "q" && p[0] != "c") || p[4] != "age" || p[1] == "" {
		return entry{}, false
	}
	attempt, err1 := strconv.Atoi(p[2])
	ms, err2 := strconv.ParseInt(p[3], 10, 64)
	if err1 != nil || err2 != nil || attempt < 0 {
		return entry{}, false
	}
	return entry{state: p[0][0], id: p[1], attempt: attempt, at: time.UnixMilli(ms)}, true
}

func (s *Sender) path(e entry) string { return filepath.Join(s.o.Dir, e.name()) }

func (s *Sender) entries() ([]entry, error) {
	d, err := os.Open(s.o.Dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, n := range names {
		if e, ok := parseEntry(n); ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// Pending is the number of notices queued or being sent, on every instance
// sharing the queue.
func (s *Sender) Pending() (int, error) {
	es, err := s.entries()
	return len(es), err
}

// Enqueue writes m durably (encrypted, synced, renamed into the queue) and
// returns; Run sends it. It does not talk to the next hop, so it never
// waits on it. A failure is audited as notice.failed and returned: the
// caller logs it and carries on with the mail the notice is about.
func (s *Sender) Enqueue(ctx context.Context, m *Mail) error {
	if m == nil || m.write == nil {
		return errors.New("notify: enqueue: not a composed mail")
	}
	now := s.o.Now()
	q := queued{Kind: m.Kind, MessageID: m.MessageID, To: m.To, Null: m.NullSender, About: m.About,
		Created: now, Expires: m.Expires}
	if q.Expires.IsZero() {
		q.Expires = now.Add(s.o.MaxAge)
	}
	if err := s.reserve(); err != nil {
		if errors.Is(err, ErrQueueFull) {
			s.failed(ctx, q, m.ID, 0, q.To, "queue full", "", nil)
			return err
		}
		s.failed(ctx, q, m.ID, 0, q.To, "queue write failed", "", err)
		return fmt.Errorf("notify: enqueue: %w", err)
	}
	e := entry{state: 'q', id: m.ID, at: now}
	published := false
	err := s.writeFile(e, q, func(w io.Writer) error { _, err := m.WriteTo(w); return err },
		func(rename func() error) error {
			// The file enters the directory as it leaves the count of
			// files being written: reserve never counts it twice.
			s.admit.Lock()
			defer s.admit.Unlock()
			published = true
			s.writing--
			return rename()
		})
	if !published {
		s.admit.Lock()
		s.writing--
		s.admit.Unlock()
	}
	if err != nil {
		s.failed(ctx, q, m.ID, 0, q.To, "queue write failed", "", err)
		return fmt.Errorf("notify: enqueue %s: %w", m.Kind, err)
	}
	s.o.Logger.Debug("notice queued", "kind", m.Kind, "id", m.ID, "recipients", len(m.To))
	s.poke()
	return nil
}

// reserve takes a place in the queue for one notice: MaxQueue holds for
// this process exactly, and across instances sharing the queue up to the
// notices they are writing at the same moment.
func (s *Sender) reserve() error {
	s.admit.Lock()
	defer s.admit.Unlock()
	n, err := s.Pending()
	if err != nil {
		return err
	}
	if n+s.writing >= s.o.MaxQueue {
		return ErrQueueFull
	}
	s.writing++
	return nil
}

func (s *Sender) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writeFile writes a queue file: a clear-text line naming the key, then
// age ciphertext of the JSON envelope line and the message. It appears
// whole or not at all (temp file, fsync, rename, directory fsync).
// publish, when set, runs the rename (to hold a lock around it).
func (s *Sender) writeFile(e entry, q queued, body func(io.Writer) error, publish func(rename func() error) error) (err error) {
	tmp, err := os.CreateTemp(s.tmp, e.id+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	keyID, recipient := s.o.Ring.Current()
	bw := bufio.NewWriterSize(tmp, 64<<10)
	if _, err := bw.WriteString(queueMagic + keyID + "\n"); err != nil {
		return err
	}
	enc, err := age.Encrypt(bw, recipient)
	if err != nil {
		return err
	}
	meta, err := json.Marshal(q)
	if err != nil {
		return err
	}
	if _, err := enc.Write(append(meta, '\n')); err != nil {
		return err
	}
	if err := body(enc); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	rename := func() error { return os.Rename(tmp.Name(), s.path(e)) }
	if publish == nil {
		err = rename()
	} else {
		err = publish(rename)
	}
	if err != nil {
		return err
	}
	return syncDir(s.o.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// openFile decrypts a queue file: its envelope and a reader of the
// message that follows.
func (s *Sender) openFile(path string) (queued, io.Reader, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return queued{}, nil, nil, err
	}
	fail := func(err error) (queued, io.Reader, io.Closer, error) {
		f.Close()
		return queued{}, nil, nil, err
	}
	br := bufio.NewReader(f)
	line, err := br.ReadString('\n')
	keyID, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), queueMagic)
	if err != nil || !ok {
		return fail(errors.New("not a queue file"))
	}
	id, err := s.o.Ring.Identity(keyID)
	if err != nil {
		return fail(fmt.Errorf("key %s: %w", keyID, err))
	}
	dec, err := age.Decrypt(br, id)
	if err != nil {
		return fail(fmt.Errorf("decrypt: %w", err))
	}
	dr := bufio.NewReaderSize(dec, 32<<10)
	meta, err := readLine(dr, maxMetaBytes)
	if err != nil {
		return fail(fmt.Errorf("envelope: %w", err))
	}
	var q queued
	if err := json.Unmarshal(meta, &q); err != nil {
		return fail(fmt.Errorf("envelope: %w", err))
	}
	return q, dr, f, nil
}

func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var out []byte
	for {
		chunk, err := r.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > limit {
			return nil, errors.New("line too long")
		}
		if err == nil {
			return bytes.TrimSuffix(out, []byte("\n")), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// Run sends due notices until ctx ends: at once when one is queued, when a
// retry is due, and every Poll for notices other instances queued. It
// returns as soon as ctx ends; a send in flight then finishes on its own
// (bounded by the next hop's timeout), and if the process exits first its
// notice is sent again after ClaimLease.
func (s *Sender) Run(ctx context.Context) {
	for {
		result := make(chan time.Time, 1)
		go func() { result <- s.runDue(ctx) }()
		var next time.Time
		select {
		case <-ctx.Done():
			return
		case next = <-result:
		}
		wait := s.o.Poll
		if !next.IsZero() {
			if d := next.Sub(s.o.Now()); d < wait {
				wait = max(d, 0)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// runDue sends every due notice once and returns when the next one is due
// (zero: none pending).
func (s *Sender) runDue(ctx context.Context) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.o.Now(); now.Sub(s.cleaned) > time.Hour {
		// Another instance may have crashed mid-write since.
		s.cleanTemp()
		s.cleaned = now
	}
	es, err := s.entries()
	if err != nil {
		s.o.Logger.Error("notice queue unreadable", "dir", s.o.Dir, "err", err)
		return s.o.Now().Add(s.o.Poll)
	}
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, e := range es {
		if ctx.Err() != nil {
			return next
		}
		now := s.o.Now()
		switch e.state {
		case 'c':
			if now.Sub(e.at) < s.o.ClaimLease {
				soonest(e.at.Add(s.o.ClaimLease))
				continue
			}
			// Its sender died while sending: queue it again.
			back := entry{state: 'q', id: e.id, attempt: e.attempt, at: now}
			if err := os.Rename(s.path(e), s.path(back)); err == nil {
				s.o.Logger.Warn("notice claim expired, queued again", "id", e.id)
				e = back
			} else {
				continue
			}
			fallthrough
		case 'q':
			if e.at.After(now) {
				soonest(e.at)
				continue
			}
			claimed := entry{state: 'c', id: e.id, attempt: e.attempt, at: now}
			if err := os.Rename(s.path(e), s.path(claimed)); err != nil {
				continue // another instance took it
			}
			if at := s.attempt(ctx, claimed); !at.IsZero() {
				soonest(at)
			}
		}
	}
	return next
}

// outcome of one attempt for a set of recipients.
type outcome struct {
	sent      []string
	sentReply string
	perm      map[string]error
	temp      map[string]error
}

// attempt sends one claimed notice and settles its file: deleted when
// every recipient is done, queued again for the rest. It returns when the
// retry is due (zero: nothing left).
func (s *Sender) attempt(ctx context.Context, e entry) time.Time {
	bg := context.WithoutCancel(ctx)
	q, body, closer, err := s.openFile(s.path(e))
	if err != nil {
		s.o.Logger.Error("notice unreadable, dropped", "id", e.id, "err", err)
		s.failed(bg, queued{}, e.id, e.attempt+1, nil, "unreadable", "", err)
		os.Remove(s.path(e))
		return time.Time{}
	}
	now := s.o.Now()
	if now.After(q.Expires) {
		closer.Close()
		s.failed(bg, q, e.id, e.attempt, q.To, "gave up after "+s.age(q, now), "", nil)
		os.Remove(s.path(e))
		return time.Time{}
	}
	out := s.send(ctx, q, body)
	closer.Close()
	attempt := e.attempt + 1
	if len(out.sent) > 0 {
		s.record(bg, audit.TypeNoticeSent, q, e.id, attempt, out.sent, "", out.sentReply, nil)
	}
	for _, group := range groupByReply(out.perm) {
		s.failed(bg, q, e.id, attempt, group.rcpts, "refused by next hop", group.reply, nil)
	}
	if len(out.temp) == 0 {
		if err := os.Remove(s.path(e)); err != nil {
			s.o.Logger.Error("notice sent but its queue file stays", "id", e.id, "err", err)
		}
		return time.Time{}
	}
	next := now.Add(s.backoff(attempt))
	if next.After(q.Expires) {
		for _, group := range groupByReply(out.temp) {
			s.failed(bg, q, e.id, attempt, group.rcpts, "gave up after "+s.age(q, now), group.reply, nil)
		}
		os.Remove(s.path(e))
		return time.Time{}
	}
	for _, group := range groupByReply(out.temp) {
		s.o.Logger.Warn("notice deferred", "kind", q.Kind, "id", e.id, "attempt", attempt,
			"recipients", group.rcpts, "reply", group.reply, "retry_at", next)
	}
	retry := entry{state: 'q', id: e.id, attempt: attempt, at: next}
	if len(out.temp) == len(q.To) {
		if err := os.Rename(s.path(e), s.path(retry)); err != nil {
			s.o.Logger.Error("notice could not be queued again", "id", e.id, "err", err)
		}
		return next
	}
	// Some recipients are done: queue a copy for the others only.
	rest := q
	rest.To = nil
	for _, to := range q.To {
		if _, ok := out.temp[to]; ok {
			rest.To = append(rest.To, to)
		}
	}
	err = s.copyFor(e, retry, rest)
	if err != nil {
		s.o.Logger.Error("notice could not be queued again for its deferred recipients", "id", e.id, "err", err)
		s.failed(bg, rest, e.id, attempt, rest.To, "queue write failed", "", err)
	}
	os.Remove(s.path(e))
	return next
}

// copyFor writes the message of queue file from again, with envelope q.
func (s *Sender) copyFor(from, to entry, q queued) error {
	_, body, closer, err := s.openFile(s.path(from))
	if err != nil {
		return err
	}
	defer closer.Close()
	return s.writeFile(to, q, func(w io.Writer) error { _, err := io.Copy(w, body); return err }, nil)
}

func (s *Sender) age(q queued, now time.Time) string {
	return now.Sub(q.Created).Round(time.Second).String()
}

func (s *Sender) backoff(attempt int) time.Duration {
	d := s.o.RetryBase
	for i := 1; i < attempt && d < s.o.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.o.RetryMax)
}

// send runs one SMTP transaction for q's recipients and sorts them by
// outcome. Transport failures and 4xx are temporary, 5xx permanent.
func (s *Sender) send(ctx context.Context, q queued, body io.Reader) outcome {
	out := outcome{perm: map[string]error{}, temp: map[string]error{}}
	all := func(m map[string]error, rcpts []string, err error) {
		for _, r := range rcpts {
			m[r] = err
		}
	}
	sortErr := func(rcpts []string, err error) {
		if permanent(err) {
			all(out.perm, rcpts, err)
		} else {
			all(out.temp, rcpts, err)
		}
	}
	sess, err := s.o.Hop.Open(ctx)
	if err != nil {
		all(out.temp, q.To, err)
		return out
	}
	defer sess.Close()
	from := s.o.ReturnPath
	if q.Null {
		from = ""
	}
	var opts *smtp.MailOptions
	if !isASCII(from) || !allASCII(q.To) {
		opts = &smtp.MailOptions{UTF8: true}
	}
	if err := sess.Mail(from, opts); err != nil {
		sortErr(q.To, err)
		return out
	}
	var accepted []string
	for i, to := range q.To {
		err := sess.Rcpt(to, nil)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted = append(accepted, to)
		case errors.As(err, &se):
			sortErr([]string{to}, err)
		default:
			// The connection is gone: this one and the rest wait.
			all(out.temp, append(accepted, q.To[i:]...), err)
			return out
		}
	}
	if len(accepted) == 0 {
		return out
	}
	w, err := sess.Data()
	if err != nil {
		sortErr(accepted, err)
		return out
	}
	if _, err := io.Copy(w, body); err != nil {
		w.Close()
		all(out.temp, accepted, err)
		return out
	}
	reply, err := w.Close()
	if err != nil {
		sortErr(accepted, err)
		return out
	}
	out.sent, out.sentReply = accepted, "250 "+reply
	return out
}

func permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(ss []string) bool {
	for _, s := range ss {
		if !isASCII(s) {
			return false
		}
	}
	return true
}

type replyGroup struct {
	reply string
	rcpts []string
}

// groupByReply gathers recipients that got the same reply, for one audit
// event each, in a stable order.
func groupByReply(m map[string]error) []replyGroup {
	var out []replyGroup
	idx := map[string]int{}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, r := range keys {
		reply := replyText(m[r])
		i, ok := idx[reply]
		if !ok {
			i = len(out)
			idx[reply] = i
			out = append(out, replyGroup{reply: reply})
		}
		out[i].rcpts = append(out[i].rcpts, r)
	}
	return out
}

// replyText is the next hop's reply as "451 4.3.0 text", or the transport
// error.
func replyText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		s := strconv.Itoa(se.Code)
		if ec := se.EnhancedCode; ec != smtp.NoEnhancedCode && ec != (smtp.EnhancedCode{}) {
			s += fmt.Sprintf(" %d.%d.%d", ec[0], ec[1], ec[2])
		}
		return s + " " + sevenBitLine(se.Message)
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *Sender) envelopeFrom(q queued) string {
	if q.Null {
		return ""
	}
	return s.o.ReturnPath
}

func (s *Sender) record(ctx context.Context, typ audit.EventType, q queued, id string, attempt int, rcpts []string, reason, reply string, cause error) {
	detail := fmt.Sprintf("kind=%s id=%s attempt=%d", q.Kind, id, attempt)
	if cause != nil {
		detail += " error=" + cause.Error()
	}
	e := audit.Event{Type: typ, Actor: audit.ActorSystem, MessageID: q.About, HeaderID: q.MessageID,
		Sender: s.envelopeFrom(q), Recipients: rcpts, Reason: reason, Reply: reply, Detail: detail}
	if err := s.o.Audit.Record(ctx, e); err != nil {
		s.o.Logger.Error("notice outcome not audited", "type", typ, "id", id, "err", err)
	}
}

func (s *Sender) failed(ctx context.Context, q queued, id string, attempt int, rcpts []string, reason, reply string, err error) {
	s.o.Logger.Warn("notice failed", "kind", q.Kind, "id", id, "recipients", rcpts, "reason", reason, "reply", reply, "err", err)
	s.record(ctx, audit.TypeNoticeFailed, q, id, attempt, rcpts, reason, reply, err)
}
