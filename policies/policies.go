// Package policies owns attachgate's attachment policies: rule model,
// matching, decisions and dry runs.
//
// Rules with signed or encrypted are message rules: signed and encrypted
// mail passes through untouched, and such a rule can reject or quarantine
// it as a whole (DecideMessage); attachment rules never see its parts.
//
// A policy is an ordered list of rules. Every attachment of a message is
// matched against the rules in order and the first rule that matches
// decides its action; when none matches the attachment is linked. Actions
// are per part (link, keep) or per message (reject, quarantine, hold); a
// message's action is the strongest message-level action of its parts
// (reject > quarantine > hold), and without one each part gets its own.
//
// The size of an attachment is known only after its body has been read.
// Early decides from everything else and says when a rule with a size
// condition could still match first; the caller then streams the part
// (attachgate's pipeline streams it into the vault) and calls Decide with
// the size. Both give the same answer for the same part.
package policies

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Action is what a rule does with an attachment or its message.
type Action string

// Actions. Link, Keep concern one attachment; Reject, Quarantine and Hold
// the whole message.
const (
	// Link takes the attachment out and puts a download link in its place
	// (the default when no rule matches).
	Link Action = "link"
	// Keep leaves the attachment in the mail as it is.
	Keep Action = "keep"
	// Reject refuses the whole message: 550 5.7.1.
	Reject Action = "reject"
	// Quarantine holds the whole message until an admin releases or
	// deletes it.
	Quarantine Action = "quarantine"
	// Hold delays the whole message: it is released on its own after
	// the rule's hold_for (default quarantine.hold_for) unless the sender
	// or an admin cancels (or releases) it first.
	Hold Action = "hold"
	// Approve holds the whole message until one of the rule's approvers
	// approves it (then it is released) or rejects it, or
	// approval_timeout passes (then it is rejected).
	Approve Action = "approve"
)

// Actions lists every action in documentation order.
func Actions() []Action { return []Action{Link, Keep, Reject, Quarantine, Approve, Hold} }

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	switch a {
	case Link, Keep, Reject, Quarantine, Approve, Hold:
		return true
	}
	return false
}

// MessageLevel reports whether a decides about the whole message.
func (a Action) MessageLevel() bool { return a.strength() > 0 }

// Held reports whether a keeps the message in the quarantine store.
func (a Action) Held() bool { return a == Quarantine || a == Hold || a == Approve }

// strength orders message-level actions: reject > quarantine > approve >
// hold (who decides: nobody, an admin, a supervisor, the clock).
func (a Action) strength() int {
	switch a {
	case Reject:
		return 4
	case Quarantine:
		return 3
	case Approve:
		return 2
	case Hold:
		return 1
	}
	return 0
}

// Rule is one configured policy rule.
type Rule struct {
	// Name identifies the rule in replies ("Message refused by policy
	// NAME"), the audit log and the quarantine. Letters, digits, '.', '_'
	// and '-', at most 64.
	Name   string `yaml:"name"`
	Match  Match  `yaml:"match"`
	Action Action `yaml:"action"`
	// HoldFor is how long action hold keeps the message (0: the
	// default, quarantine.hold_for).
	HoldFor time.Duration `yaml:"hold_for"`
	// Approvers may approve or reject a message action approve holds;
	// any one of them decides.
	Approvers []string `yaml:"approvers"`
	// ApprovalTimeout rejects a message nobody approved by then (0: 24h).
	ApprovalTimeout time.Duration `yaml:"approval_timeout"`
}

// DefaultApprovalTimeout is a rule's approval_timeout when it sets none.
const DefaultApprovalTimeout = 24 * time.Hour

// MaxHoldFor and MaxApprovalTimeout bound what a rule may ask: held mail
// must not wait longer than the quarantine keeps it.
const (
	MaxHoldFor         = 7 * 24 * time.Hour
	MaxApprovalTimeout = 14 * 24 * time.Hour
)

// Match is a rule's condition. Every field is optional; the fields that are
// set must all hold (AND), and a list holds when any entry does (OR). An
// empty Match matches every attachment.
type Match struct {
	// SenderDomains: the envelope sender's domain is one of these or a
	// subdomain of one.
	SenderDomains []string `yaml:"sender_domains"`
	// RecipientDomains: at least one envelope recipient is in one of these
	// domains (or a subdomain).
	RecipientDomains []string `yaml:"recipient_domains"`
	// RecipientDomainsNot: at least one envelope recipient is outside all
	// of these domains (and their subdomains).
	RecipientDomainsNot []string `yaml:"recipient_domains_not"`
	// ContentTypes are media type globs ("image/*", "application/pdf"),
	// without case.
	ContentTypes []string `yaml:"content_types"`
	// Extensions are file-name endings (".exe", ".tar.gz"), without case,
	// matched on the decoded file name with trailing dots and spaces
	// removed (Windows ignores them).
	Extensions []string `yaml:"extensions"`
	// MinSize and MaxSize bound the decoded attachment's size in bytes,
	// inclusive.
	MinSize *int64 `yaml:"min_size"`
	MaxSize *int64 `yaml:"max_size"`
	// FilenameGlob is a glob over the decoded file name ("*.docm",
	// "invoice-*"), without case.
	FilenameGlob string `yaml:"filename_glob"`
	// Signed and Encrypted make the rule a message rule: it matches a
	// signed (or encrypted) message as a whole, never an attachment.
	// Signed and encrypted mail passes through untouched by default; such
	// a rule can only reject or quarantine it (a rewrite would break the
	// signature or lose the ciphertext). Only the envelope fields combine
	// with them.
	Signed    bool `yaml:"signed"`
	Encrypted bool `yaml:"encrypted"`

	// Mail fields (mail.go): they look at the whole message, so a rule
	// with one of them needs a message-level action (reject, quarantine,
	// approve, hold) and is decided once per message, with or without
	// attachments.
	//
	// Senders: the envelope sender is one of these addresses (case
	// ignored).
	Senders []string `yaml:"senders"`
	// AuthUsers: the SMTP AUTH identity is one of these.
	AuthUsers []string `yaml:"auth_users"`
	// SubjectRegex matches the decoded Subject (RE2 syntax; "(?i)" for
	// case-insensitive).
	SubjectRegex string `yaml:"subject_regex"`
	// HeaderRegex maps a header field name to a regular expression that
	// one of its decoded values must match.
	HeaderRegex map[string]string `yaml:"header_regex"`
	// MinExternalRecipients: at least this many envelope recipients are
	// outside InternalDomains (and their subdomains).
	MinExternalRecipients int      `yaml:"min_external_recipients"`
	InternalDomains       []string `yaml:"internal_domains"`
	// HasAttachments: true, the message has at least one attachment;
	// false, it has none. Unset: either.
	HasAttachments *bool `yaml:"has_attachments"`
}

// Envelope is what the SMTP conversation says about a message.
type Envelope struct {
	From     string   // envelope sender; "" for the null sender
	To       []string // envelope recipients
	AuthUser string   // SMTP AUTH identity; "" when relayed by network trust
}

// Part is one attachment as far as policies look at it.
type Part struct {
	Filename    string // decoded UTF-8 file name
	ContentType string // media type, e.g. "application/pdf"
	Size        int64  // decoded bytes; SizeUnknown before the body is read
	// InContainer: the file was found inside a TNEF winmail.dat, which
	// can only leave the mail whole: keep counts as link for it.
	InContainer bool

	// live is the walk's part, whose name may become final only once its
	// body is read (PartOf); Decide looks at it.
	live *livePart
}

// livePart gives the current name and type of a part whose name is
// provisional until its body is read (files inside TNEF).
type livePart struct {
	name, contentType func() string
	provisional       func() bool
}

// current is p with the name and type the walk knows now.
func (p Part) current() Part {
	if p.live != nil {
		p.Filename, p.ContentType = p.live.name(), p.live.contentType()
	}
	return p
}

// provisional reports whether p's name may still change.
func (p Part) provisional() bool { return p.live != nil && p.live.provisional() }

// SizeUnknown is Part.Size before the attachment has been read.
const SizeUnknown = -1

// Decision is what the policies say about one attachment.
type Decision struct {
	Rule   string // name of the first matching rule; "" when none matched
	Action Action
	// Of the rule, for held mail: hold_for (0: the default), approvers
	// and approval_timeout (approve only).
	HoldFor         time.Duration
	Approvers       []string
	ApprovalTimeout time.Duration
}

// Engine decides with a fixed, validated list of rules. It is safe for
// concurrent use. The zero Engine and a nil *Engine link everything.
type Engine struct {
	rules []compiled
}

type compiled struct {
	name      string
	action    Action
	senders   []string
	rcptIn    []string
	rcptOut   []string
	types     []string
	exts      []string
	minSize   int64 // -1: none
	maxSize   int64 // -1: none
	glob      string
	needsSize bool
	// message rules (signed, encrypted) match whole messages only
	signed, encrypted bool

	// mail rules (mail.go)
	mail      mailMatch
	partCheck bool // the rule has attachment fields
	holdFor   time.Duration
	approvers []string
	timeout   time.Duration
}

// decision is what the rule decides, with its hold settings.
func (c *compiled) decision(a Action) Decision {
	d := Decision{Rule: c.name, Action: a}
	if a == Hold {
		d.HoldFor = c.holdFor
	}
	if a == Approve {
		d.Approvers, d.ApprovalTimeout = c.approvers, c.timeout
	}
	return d
}

func (c *compiled) messageRule() bool { return c.signed || c.encrypted }

// New validates rules and returns an Engine. Errors name the key, as in
// "policies[1].match.content_types: ...", and are joined.
func New(rules []Rule) (*Engine, error) {
	e := &Engine{}
	var errs []error
	names := map[string]bool{}
	for i, r := range rules {
		key := fmt.Sprintf("policies[%d]", i)
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s.%s: %s", key, field, fmt.Sprintf(format, args...)))
		}
		c := compiled{name: r.Name, action: r.Action, minSize: -1, maxSize: -1}
		switch {
		case r.Name == "":
			bad("name", "must be set (it names the rule in replies, the audit log and the quarantine)")
		case !validName(r.Name):
			bad("name", "%q: use letters, digits, '.', '_' and '-' only, at most 64", r.Name)
		case names[r.Name]:
			bad("name", "duplicate rule name %q", r.Name)
		}
		names[r.Name] = true
		if !r.Action.Valid() {
			bad("action", "want link, keep, reject, quarantine, approve or hold, got %q", r.Action)
		}
		compileHeld(&c, r, bad)
		m := r.Match
		var err error
		if c.senders, err = domains(m.SenderDomains); err != nil {
			bad("match.sender_domains", "%v", err)
		}
		if c.rcptIn, err = domains(m.RecipientDomains); err != nil {
			bad("match.recipient_domains", "%v", err)
		}
		if c.rcptOut, err = domains(m.RecipientDomainsNot); err != nil {
			bad("match.recipient_domains_not", "%v", err)
		}
		for _, t := range m.ContentTypes {
			t = strings.ToLower(strings.TrimSpace(t))
			typ, sub, ok := strings.Cut(t, "/")
			if !ok || typ == "" || sub == "" || strings.Contains(sub, "/") {
				bad("match.content_types", "%q is not a media type pattern (want type/subtype, e.g. image/* or application/pdf)", t)
				continue
			}
			if _, err := path.Match(t, ""); err != nil {
				bad("match.content_types", "%q: %v", t, err)
				continue
			}
			c.types = append(c.types, t)
		}
		for _, x := range m.Extensions {
			x = strings.ToLower(strings.TrimSpace(x))
			if !strings.HasPrefix(x, ".") {
				x = "." + x
			}
			if x == "." || strings.ContainsAny(x, `/\*?[ `) {
				bad("match.extensions", "%q is not a file-name ending (want e.g. .exe or .tar.gz)", x)
				continue
			}
			c.exts = append(c.exts, x)
		}
		if m.MinSize != nil {
			if *m.MinSize < 0 {
				bad("match.min_size", "must not be negative, got %d", *m.MinSize)
			}
			c.minSize, c.needsSize = *m.MinSize, true
		}
		if m.MaxSize != nil {
			if *m.MaxSize < 0 {
				bad("match.max_size", "must not be negative, got %d", *m.MaxSize)
			}
			c.maxSize, c.needsSize = *m.MaxSize, true
		}
		if m.MinSize != nil && m.MaxSize != nil && *m.MinSize > *m.MaxSize {
			bad("match.min_size", "%d is above match.max_size %d", *m.MinSize, *m.MaxSize)
		}
		if m.FilenameGlob != "" {
			c.glob = strings.ToLower(m.FilenameGlob)
			if _, err := path.Match(c.glob, ""); err != nil {
				bad("match.filename_glob", "%q: %v", m.FilenameGlob, err)
			}
		}
		if m.Signed || m.Encrypted {
			c.signed, c.encrypted = m.Signed, m.Encrypted
			field := "match.signed"
			if !m.Signed {
				field = "match.encrypted"
			}
			if r.Action != Reject && r.Action != Quarantine {
				bad("action", "%q cannot apply to %s mail (%s): it passes through untouched unless a rule rejects or quarantines it; want reject or quarantine", r.Action, strings.TrimPrefix(field, "match."), field)
			}
			if len(m.ContentTypes) > 0 || len(m.Extensions) > 0 || m.MinSize != nil || m.MaxSize != nil || m.FilenameGlob != "" {
				bad(field, "matches the whole message and combines only with sender_domains, recipient_domains and recipient_domains_not, not with attachment fields (content_types, extensions, min_size, max_size, filename_glob)")
			}
			if m.hasMailFields() {
				bad(field, "combines only with sender_domains, recipient_domains and recipient_domains_not, not with mail fields (%s)", mailFieldNames)
			}
		}
		c.partCheck = len(m.ContentTypes) > 0 || len(m.Extensions) > 0 || m.MinSize != nil || m.MaxSize != nil || m.FilenameGlob != ""
		compileMail(&c, r, bad)
		e.rules = append(e.rules, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

func validName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			return false
		}
	}
	return true
}

// domains normalises configured domains: lower case, no leading "@" or
// "*.", no trailing dot.
func domains(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, d := range in {
		n := strings.ToLower(strings.TrimSpace(d))
		n = strings.TrimPrefix(n, "@")
		n = strings.TrimPrefix(n, "*.")
		n = strings.TrimSuffix(n, ".")
		if n == "" || strings.ContainsAny(n, "@ \t*/") || strings.HasPrefix(n, ".") {
			return nil, fmt.Errorf("%q is not a domain (want e.g. example.com; subdomains match too)", d)
		}
		a, err := Domain(n)
		if err != nil || a == "" || strings.HasPrefix(a, ".") {
			return nil, fmt.Errorf("%q is not a domain IDNA can map (UTS #46): %v", d, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Rules reports how many rules the engine has.
func (e *Engine) Rules() int {
	if e == nil {
		return 0
	}
	return len(e.rules)
}

// HasAction reports whether some rule has action a.
func (e *Engine) HasAction(a Action) bool {
	if e == nil {
		return false
	}
	for _, r := range e.rules {
		if r.action == a {
			return true
		}
	}
	return false
}

// Decide returns the decision for a part whose size is known: the first
// matching rule's action, or Link. With p.Size < 0 size conditions never
// hold; use Early before the size is known.
func (e *Engine) Decide(env Envelope, p Part) Decision {
	p = p.current()
	if e != nil {
		for i := range e.rules {
			r := &e.rules[i]
			if !r.messageRule() && !r.mail.set && r.matchesWithoutSize(env, p) && r.matchesSize(p.Size) {
				return r.decision(p.effective(r.action))
			}
		}
	}
	return Decision{Action: Link}
}

// Early decides before the part's size is known. ok is false when the
// first rule whose other conditions hold has a size condition: the caller
// must read the part and call Decide with its size. When ok is true the
// decision is final and equals Decide's for any size.
func (e *Engine) Early(env Envelope, p Part) (d Decision, ok bool) {
	if p.provisional() && e.Rules() > 0 {
		return Decision{}, false // the name is known once the body is read
	}
	p = p.current()
	if e != nil {
		for i := range e.rules {
			r := &e.rules[i]
			if r.messageRule() || r.mail.set || !r.matchesWithoutSize(env, p) {
				continue
			}
			if r.needsSize {
				return Decision{}, false
			}
			return r.decision(p.effective(r.action)), true
		}
	}
	return Decision{Action: Link}, true
}

// Message is what message rules look at.
type Message struct {
	Signed    bool // multipart/signed, S/MIME signed-data, inline PGP signed
	Encrypted bool // multipart/encrypted, S/MIME enveloped-data, inline PGP message
}

// DecideMessage returns the decision of the first message rule (signed,
// encrypted) that matches m, or Link (pass through, untouched) when none
// does. Attachment rules never match here.
func (e *Engine) DecideMessage(env Envelope, m Message) Decision {
	if e != nil && (m.Signed || m.Encrypted) {
		for i := range e.rules {
			r := &e.rules[i]
			if !r.messageRule() || (r.signed && !m.Signed) || (r.encrypted && !m.Encrypted) {
				continue
			}
			if r.matchesWithoutSize(env, Part{}) {
				return r.decision(r.action)
			}
		}
	}
	return Decision{Action: Link}
}

// effective is a rule's action for p: a file inside TNEF cannot be kept
// alone (its container leaves the mail when any file in it is linked), so
// keep links it.
func (p Part) effective(a Action) Action {
	if a == Keep && p.InContainer {
		return Link
	}
	return a
}

func (r *compiled) matchesSize(size int64) bool {
	if !r.needsSize {
		return true
	}
	if size < 0 {
		return false
	}
	return (r.minSize < 0 || size >= r.minSize) && (r.maxSize < 0 || size <= r.maxSize)
}

func (r *compiled) matchesWithoutSize(env Envelope, p Part) bool {
	if len(r.senders) > 0 && !inDomains(domainOf(env.From), r.senders) {
		return false
	}
	if len(r.rcptIn) > 0 && !anyRecipient(env.To, func(d string) bool { return inDomains(d, r.rcptIn) }) {
		return false
	}
	if len(r.rcptOut) > 0 && !anyRecipient(env.To, func(d string) bool { return !inDomains(d, r.rcptOut) }) {
		return false
	}
	if len(r.types) > 0 {
		ct := strings.ToLower(p.ContentType)
		if !anyOf(r.types, func(pat string) bool { ok, _ := path.Match(pat, ct); return ok }) {
			return false
		}
	}
	name := strings.ToLower(strings.TrimRight(p.Filename, ". "))
	if len(r.exts) > 0 && !anyOf(r.exts, func(x string) bool { return strings.HasSuffix(name, x) }) {
		return false
	}
	if r.glob != "" {
		if ok, _ := path.Match(r.glob, strings.ToLower(p.Filename)); !ok {
			return false
		}
	}
	return true
}

func anyOf(list []string, f func(string) bool) bool {
	for _, s := range list {
		if f(s) {
			return true
		}
	}
	return false
}

func anyRecipient(to []string, f func(domain string) bool) bool {
	for _, addr := range to {
		if f(domainOf(addr)) {
			return true
		}
	}
	return false
}

// domainOf returns the domain of an address as Domain maps it ("" for the
// null sender or an address without one). A domain IDNA cannot map (smtpd
// refuses those at MAIL and RCPT; this is for envelopes from elsewhere) is
// compared lower-cased as written.
func domainOf(addr string) string {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	if d, err := Domain(addr[i+1:]); err == nil {
		return d
	}
	return strings.TrimSuffix(strings.ToLower(addr[i+1:]), ".")
}

// inDomains reports whether d is one of list or a subdomain of one.
func inDomains(d string, list []string) bool {
	if d == "" {
		return false
	}
	for _, l := range list {
		if d == l || strings.HasSuffix(d, "."+l) {
			return true
		}
	}
	return false
}

// Verdict gathers the decisions about a message's parts into the
// message's action: the strongest message-level action (the first rule to
// reach it names it), or Link when no part asked for one.
type Verdict struct {
	Action Action // Link, Reject, Quarantine, Approve or Hold
	Rule   string // the rule that set Action; "" for Link
	// The deciding rule's hold settings (see Decision).
	HoldFor         time.Duration
	Approvers       []string
	ApprovalTimeout time.Duration
}

// Add takes one part's (or the message's) decision into account: the
// strongest message-level action wins, the first of equal strength stays.
func (v *Verdict) Add(d Decision) {
	if v.Action == "" {
		v.Action = Link
	}
	if d.Action.strength() > v.Action.strength() {
		v.Action, v.Rule = d.Action, d.Rule
		v.HoldFor, v.Approvers, v.ApprovalTimeout = d.HoldFor, d.Approvers, d.ApprovalTimeout
	}
}

// MessageLevel reports whether the verdict is about the whole message.
func (v Verdict) MessageLevel() bool { return v.Action.MessageLevel() }
