package pipeline

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/store"
)

// This file applies the link options of policy rules (policies.LinkOptions)
// and makes the message's own tokens: each file's link gets the expiry and
// download limit of the rule that linked it; the message gets the
// strictest verification, the most informative sender notice and the
// first rule language of its files, a page token when anything was linked
// and a manage token when the sender is to be told. After the next hop
// accepted the mail, a receipt goes to the envelope sender.

// maxSubjectBytes bounds the subject kept in the store (it is shown on
// the sender's pages and in receipts only).
const maxSubjectBytes = 998

// fileOptions are one file's link options, defaults applied.
type fileOptions struct {
	expiry       time.Duration
	maxDownloads int
}

// messageOptions are what the message as a whole gets from the rules of
// its linked files.
type messageOptions struct {
	lang   string // first rule language, else links.language
	verify string // store.VerifyRecipientCode if any rule asks for it
	notify string // most informative: downloads > receipt > none
	// Tokens: the page token goes into the notice, the manage token only
	// into the sender's receipt. Only their hashes are stored.
	pageHash, manageHash []byte
	manageToken          string
}

// linkOptions resolves the options of rule for one linked file and takes
// its message-level options into t.opts.
func (t *Transaction) linkOptions(rule string) fileOptions {
	o := t.engine.LinkOptions(rule)
	fo := fileOptions{expiry: t.p.Expiry, maxDownloads: t.p.MaxDownloads}
	if o.Expiry > 0 {
		fo.expiry = o.Expiry.D()
	}
	if o.MaxDownloads != nil {
		fo.maxDownloads = *o.MaxDownloads
	}
	if o.Verify == policies.VerifyRecipientCode {
		t.opts.verify = store.VerifyRecipientCode
	}
	if policies.NotifyRank(o.NotifySender) > policies.NotifyRank(t.opts.notify) {
		t.opts.notify = o.NotifySender
	}
	if t.opts.lang == "" && o.Language != "" {
		t.opts.lang = o.Language
	}
	return fo
}

// messageTokens finishes the message-level options once the walk is over
// and the files to link are final: the language of the notice, the page
// token (listed first in the notice) and, when the sender is to be told,
// the manage token.
func (t *Transaction) messageTokens() error {
	if len(t.files) == 0 {
		t.opts = messageOptions{}
		t.notice.Language = t.p.Language
		return nil
	}
	if t.opts.lang == "" {
		t.opts.lang = t.p.Language
	}
	t.notice.Language = t.opts.lang
	token, hash, err := store.NewToken()
	if err != nil {
		return fmt.Errorf("new page token: %w", err)
	}
	t.opts.pageHash = hash
	t.notice.MessageURL = t.p.BaseURL + "/m/" + token
	if t.opts.notify != "" && t.opts.notify != policies.NotifyNone {
		mtoken, mhash, err := store.NewToken()
		if err != nil {
			return fmt.Errorf("new manage token: %w", err)
		}
		t.opts.manageToken, t.opts.manageHash = mtoken, mhash
	} else {
		t.opts.notify = store.NotifyNone
	}
	return nil
}

// sendReceipt queues the sender's receipt of a relayed message whose rules
// ask for one. It never fails the message: the next hop has it already;
// a failure is logged here and audited by the notifier (notice.failed).
func (t *Transaction) sendReceipt(ctx context.Context) {
	if t.opts.manageToken == "" || len(t.files) == 0 {
		return
	}
	if t.env.From == "" {
		return // the null sender: nobody to tell
	}
	if t.p.Notify == nil {
		t.log.Warn("sender receipt not sent: no notifier configured")
		return
	}
	data := mailtmpl.ReceiptData{Subject: boundSubject(t.subject), Sent: t.start, Recipients: t.env.To,
		ManageURL: t.p.BaseURL + "/s/" + t.opts.manageToken}
	for _, f := range t.files {
		data.Files = append(data.Files, mailtmpl.ReceiptFile{Name: f.Name, Size: f.Size, SHA256: f.SHA256, Expires: f.ExpiresAt})
		if f.ExpiresAt.After(data.Expires) {
			data.Expires = f.ExpiresAt
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	defer cancel()
	err := t.p.Notify.Send(ctx, notify.Notice{Kind: mailtmpl.KindReceipt, To: []string{t.env.From},
		Lang: t.opts.lang, Data: data, About: t.id})
	if err != nil {
		t.log.Error("sender receipt not queued", "err", err)
	}
}

// boundSubject keeps at most maxSubjectBytes of a decoded subject, cut at
// a character boundary.
func boundSubject(s string) string {
	if len(s) <= maxSubjectBytes {
		return s
	}
	i := maxSubjectBytes
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
