package linkserver

import (
	"context"
	"net/http"

	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/store"
)

// noticeKindDownload is the mail kind of the sender's download notice.
const noticeKindDownload = "download"

// recordAccess keeps a view or download of the file of view for the
// sender's manage page, with the visitor's verified recipient address
// ("" when not verified) and client address. When the message asks for
// download notices (notify_sender: downloads) and this is the recipient's
// first download of the file, the envelope sender is told.
//
// It never fails the request: the audit log already holds the event
// (link.viewed, download.ok); a store or notifier error is logged.
func (s *Server) recordAccess(r *http.Request, view store.LinkView, kind, recipient string) {
	a := store.Access{
		MessageID:  view.Message.ID,
		LinkID:     view.Link.ID,
		FileID:     view.File.ID,
		Kind:       kind,
		At:         s.now(),
		Recipient:  recipient,
		ClientAddr: s.clientAddr(r),
	}
	// Survives the client hanging up, like the audit event.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	first, err := s.store.RecordAccess(ctx, a)
	if err != nil {
		s.log.Warn("linkserver: access not recorded for the manage page",
			"kind", kind, "link_id", view.Link.ID, "file_id", view.File.ID, "err", err)
		return
	}
	if first && kind == store.AccessDownload && view.Message.NotifySender == store.NotifyDownloads {
		s.notifyDownload(ctx, view, a)
	}
}

// notifyDownload queues the download notice to the message's envelope
// sender (never to an address from the request). A null sender cannot be
// told; a notifier error is logged (the Sender audits notice.failed).
func (s *Server) notifyDownload(ctx context.Context, view store.LinkView, a store.Access) {
	if s.notify == nil || view.Message.Sender == "" {
		return
	}
	err := s.notify.Send(ctx, notify.Notice{
		Kind: noticeKindDownload,
		To:   []string{view.Message.Sender},
		Lang: view.Message.Lang,
		Data: mailtmpl.DownloadData{
			Subject:    view.Message.Subject,
			FileName:   view.File.Name,
			Size:       view.File.Size,
			SHA256:     view.File.SHA256,
			Recipient:  a.Recipient,
			Time:       a.At,
			ClientAddr: a.ClientAddr,
		},
		About: view.Message.ID,
	})
	if err != nil {
		s.log.Error("linkserver: download notice not queued",
			"message_id", view.Message.ID, "file_id", view.File.ID, "err", err)
	}
}
