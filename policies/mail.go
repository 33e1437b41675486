package policies

import (
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Mail rules. A rule with a message-level action (reject, quarantine,
// approve, hold) decides about the whole message. Besides being matched
// against each attachment as it streams by (attachment rules, first match
// per part), every such rule is also matched once per message when the
// walk is over (DecideMail): so it applies to mail with no attachment at
// all, and it may look at what only the whole message shows — the sender
// address, the SMTP AUTH identity, the subject and other header fields,
// how many recipients are external. Rules that use those mail fields are
// decided only there. A rule that also has attachment fields matches when
// the mail fields hold and at least one attachment matches its attachment
// fields.
//
// Mail with a null sender (bounces, DSNs) is never held or refused by a
// mail rule: it has nobody to tell, and a gateway that sits on bounces
// breaks the mail system.

// mailFieldNames lists the mail-only match fields, for messages.
const mailFieldNames = "senders, auth_users, subject_regex, header_regex, min_external_recipients, internal_domains, has_attachments"

// hasMailFields reports whether m uses a mail-only field.
func (m Match) hasMailFields() bool {
	return len(m.Senders) > 0 || len(m.AuthUsers) > 0 || m.SubjectRegex != "" || len(m.HeaderRegex) > 0 ||
		m.MinExternalRecipients != 0 || len(m.InternalDomains) > 0 || m.HasAttachments != nil
}

// mailMatch is the compiled form of a rule's mail fields.
type mailMatch struct {
	set         bool // the rule has mail fields: decided by DecideMail only
	senders     []string
	authUsers   []string
	subject     *regexp.Regexp
	headers     []headerMatch
	minExternal int
	internal    []string
	attachments *bool
}

type headerMatch struct {
	name string // canonical
	re   *regexp.Regexp
}

// maxRegexLen bounds a configured regular expression (RE2 runs in linear
// time; the bound keeps the compiled program small).
const maxRegexLen = 1024

func compileMail(c *compiled, r Rule, bad func(field, format string, args ...any)) {
	m := r.Match
	mm := mailMatch{set: m.hasMailFields(), minExternal: m.MinExternalRecipients, attachments: m.HasAttachments}
	if mm.set && !r.Action.MessageLevel() {
		bad("action", "%q cannot apply with mail fields (%s): they look at the whole message; want reject, quarantine, approve or hold", r.Action, mailFieldNames)
	}
	for _, s := range m.Senders {
		s = strings.ToLower(strings.TrimSpace(s))
		if a, err := mail.ParseAddress(s); err != nil || a.Address != s || a.Name != "" {
			bad("match.senders", "%q is not a mail address (want e.g. alice@corp.example)", s)
			continue
		}
		mm.senders = append(mm.senders, s)
	}
	for _, u := range m.AuthUsers {
		if u = strings.TrimSpace(u); u == "" || strings.ContainsAny(u, "\r\n\x00") {
			bad("match.auth_users", "%q is not a user name", u)
			continue
		}
		mm.authUsers = append(mm.authUsers, u)
	}
	compileRE := func(field, expr string) *regexp.Regexp {
		if len(expr) > maxRegexLen {
			bad(field, "longer than %d bytes", maxRegexLen)
			return nil
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			bad(field, "%q is not a regular expression: %v", expr, err)
			return nil
		}
		return re
	}
	if m.SubjectRegex != "" {
		mm.subject = compileRE("match.subject_regex", m.SubjectRegex)
	}
	names := make([]string, 0, len(m.HeaderRegex))
	for name := range m.HeaderRegex {
		names = append(names, name)
	}
	slices.Sort(names) // errors and matching in a stable order
	for _, name := range names {
		field := "match.header_regex." + name
		if name == "" || strings.ContainsAny(name, " :\t\r\n") {
			bad(field, "%q is not a header field name", name)
			continue
		}
		if re := compileRE(field, m.HeaderRegex[name]); re != nil {
			mm.headers = append(mm.headers, headerMatch{name: name, re: re})
		}
	}
	if m.MinExternalRecipients < 0 {
		bad("match.min_external_recipients", "must not be negative, got %d", m.MinExternalRecipients)
	}
	var err error
	if mm.internal, err = domains(m.InternalDomains); err != nil {
		bad("match.internal_domains", "%v", err)
	}
	if m.MinExternalRecipients > 0 && len(m.InternalDomains) == 0 {
		bad("match.min_external_recipients", "needs match.internal_domains (the domains that are not external)")
	}
	if len(m.InternalDomains) > 0 && m.MinExternalRecipients == 0 {
		bad("match.internal_domains", "is used only with match.min_external_recipients")
	}
	if m.HasAttachments != nil && !*m.HasAttachments && c.partCheck {
		bad("match.has_attachments", "false cannot combine with attachment fields")
	}
	c.mail = mm
}

// compileHeld checks hold_for, approvers and approval_timeout.
func compileHeld(c *compiled, r Rule, bad func(field, format string, args ...any)) {
	switch {
	case r.HoldFor != 0 && r.Action != Hold:
		bad("hold_for", "is for action hold, not %q", r.Action)
	case r.HoldFor < 0 || r.HoldFor > MaxHoldFor:
		bad("hold_for", "%s is outside 1s..%s", r.HoldFor, MaxHoldFor)
	case r.HoldFor != 0 && r.HoldFor < time.Second:
		bad("hold_for", "%s is shorter than a second", r.HoldFor)
	}
	c.holdFor = r.HoldFor
	if r.Action != Approve {
		if len(r.Approvers) > 0 {
			bad("approvers", "is for action approve, not %q", r.Action)
		}
		if r.ApprovalTimeout != 0 {
			bad("approval_timeout", "is for action approve, not %q", r.Action)
		}
		return
	}
	if len(r.Approvers) == 0 {
		bad("approvers", "action approve needs at least one approver address")
	}
	for _, a := range r.Approvers {
		a = strings.ToLower(strings.TrimSpace(a))
		if p, err := mail.ParseAddress(a); err != nil || p.Address != a || p.Name != "" {
			bad("approvers", "%q is not a mail address (want e.g. boss@corp.example)", a)
			continue
		}
		c.approvers = append(c.approvers, a)
	}
	c.timeout = r.ApprovalTimeout
	switch {
	case c.timeout == 0:
		c.timeout = DefaultApprovalTimeout
	case c.timeout < time.Minute || c.timeout > MaxApprovalTimeout:
		bad("approval_timeout", "%s is outside 1m..%s", c.timeout, MaxApprovalTimeout)
	}
}

// HeaderGetter reads decoded header field values (textproto.Header's
// Values, with RFC 2047 words decoded by the caller's wrapper).
type HeaderGetter interface {
	Values(name string) []string
}

// Mail is what mail rules look at once the message has been walked.
type Mail struct {
	// Subject is the decoded Subject ("" when none).
	Subject string
	// Header gives the decoded values of any top-level header field.
	Header HeaderGetter
	// Attachments are the message's attachments with their sizes.
	Attachments []Part
}

// DecideMail returns the decision of the first mail rule that matches the
// whole message, or Link when none does.
func (e *Engine) DecideMail(env Envelope, m Mail) Decision {
	if e == nil || env.From == "" {
		return Decision{Action: Link}
	}
	for i := range e.rules {
		r := &e.rules[i]
		if !r.action.MessageLevel() || r.messageRule() {
			continue
		}
		// A rule with attachment fields and no mail fields is an
		// attachment rule (first match per part, as it streams).
		if !r.mail.set && r.partCheck {
			continue
		}
		if r.matchesMail(env, m) {
			return r.decision(r.action)
		}
	}
	return Decision{Action: Link}
}

func (r *compiled) matchesMail(env Envelope, m Mail) bool {
	if !r.matchesWithoutSize(env, Part{}) && !r.partCheck {
		return false // envelope fields (sender_domains, recipient_domains...)
	}
	mm := &r.mail
	if len(mm.senders) > 0 && !slices.Contains(mm.senders, strings.ToLower(env.From)) {
		return false
	}
	if len(mm.authUsers) > 0 && !slices.Contains(mm.authUsers, env.AuthUser) {
		return false
	}
	if mm.subject != nil && !mm.subject.MatchString(m.Subject) {
		return false
	}
	for _, h := range mm.headers {
		var values []string
		if m.Header != nil {
			values = m.Header.Values(h.name)
		}
		if !slices.ContainsFunc(values, h.re.MatchString) {
			return false
		}
	}
	if mm.minExternal > 0 {
		external := 0
		for _, to := range env.To {
			if !inDomains(domainOf(to), mm.internal) {
				external++
			}
		}
		if external < mm.minExternal {
			return false
		}
	}
	if mm.attachments != nil && *mm.attachments != (len(m.Attachments) > 0) {
		return false
	}
	if r.partCheck {
		// Envelope and attachment fields must hold for one attachment.
		return slices.ContainsFunc(m.Attachments, func(p Part) bool {
			return r.matchesWithoutSize(env, p) && r.matchesSize(p.Size)
		})
	}
	return true
}
