package notify_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// Example shows how serve wires the notifier from the configuration, and
// how a feature sends a DSN to a message's envelope sender without ever
// failing the mail it is about.
func Example() {
	dir, _ := os.MkdirTemp("", "notify-example")
	defer os.RemoveAll(dir)
	c, err := config.Parse(strings.NewReader("smtp:\n  hostname: gw.corp.example\n" +
		"next_hop:\n  address: \"outbox:" + filepath.Join(dir, "outbox") + "\"\n" +
		"storage:\n  dir: \"" + dir + "\"\n"))
	if err != nil {
		panic(err)
	}
	ring, err := vault.OpenKeyRing(c.Storage.Path("keys"))
	if err != nil {
		panic(err)
	}
	st, err := store.OpenSQLite(c.Storage.Path("attachgate.db"))
	if err != nil {
		panic(err)
	}
	defer st.Close()
	rec, err := audit.NewSQLite(st.DB(), audit.Options{}) // serve passes its audit log
	if err != nil {
		panic(err)
	}

	composer, err := notify.NewComposer(notify.ComposerOptions{
		Templates: c.Notify.Templates(), Hostname: c.SMTP.Hostname, From: c.Notify.From,
		Language: c.Links.Language, MarkerKey: ring.MACKey()})
	if err != nil {
		panic(err)
	}
	sender, err := notify.NewSender(notify.SenderOptions{
		Hop:        relay.New(c.NextHop.Address, c.SMTP.Hostname, c.NextHop.Timeout.D(), c.NextHop.TLS, nil),
		Audit:      rec,
		Ring:       ring,
		Dir:        c.Storage.Path("notify"),
		ReturnPath: c.Notify.ReturnPath,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sender.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// A feature (a release refused for one recipient) reports it.
	dsn, err := composer.DSN(notify.DSN{
		To:          "alice@corp.example", // the stored envelope's MAIL FROM
		Subject:     "見積書",
		ArrivalDate: time.Now(),
		Recipients: []notify.DSNRecipient{notify.RecipientFromReply("bob@example.net", "",
			&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}, time.Now())},
		OriginalHeaders: strings.NewReader("Subject: =?utf-8?b?6KaL56mN5pu4?=\r\n\r\nbody"),
	})
	if err == nil {
		err = sender.Enqueue(ctx, dsn)
	}
	if err != nil {
		// Log it and carry on: a notice never fails the mail it is about.
		slog.Warn("DSN not queued", "err", err)
	}
	// Output:
}
