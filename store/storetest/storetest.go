// Package storetest is the conformance suite every store.Store backend runs,
// so SQLite and Redis agree on lookups, expiry, revocation, download limits
// and deletion.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/store"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call; Run closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateAndLookup", testCreateAndLookup},
		{"NotFound", testNotFound},
		{"CreateIsAtomic", testCreateIsAtomic},
		{"ExpiryBoundary", testExpiryBoundary},
		{"Revoke", testRevoke},
		{"DownloadLimit", testDownloadLimit},
		{"ConcurrentDownloadLimit", testConcurrentDownloadLimit},
		{"DeleteMessage", testDeleteMessage},
		{"ExpiredFilesAndDeleteFile", testExpiredFilesAndDeleteFile},
		{"Tombstones", testTombstones},
		{"MessageView", testMessageView},
		{"ListLinks", testListLinks},
		{"Codes", testCodes},
		{"CodeLockout", testCodeLockout},
		{"ConcurrentCodes", testConcurrentCodes},
		{"HitLimit", testHitLimit},
	}
	tests = append(tests, manageTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

// base is a fixed instant with millisecond precision: backends must keep at
// least that, and return times in UTC.
var base = time.Date(2026, 1, 15, 9, 30, 12, 345_000_000, time.UTC)

// fixture is one message with files and their links, and the tokens.
type fixture struct {
	msg    store.Message
	files  []store.File
	links  []store.Link
	tokens []string
}

// newFixture builds a message with nFiles files, one link each, expiring
// ttl after base with the given download limit.
func newFixture(t *testing.T, nFiles int, ttl time.Duration, maxDownloads int) fixture {
	t.Helper()
	f := fixture{msg: store.Message{
		ID:         store.NewID(),
		MessageID:  "<" + store.NewID() + "@example.com>",
		Sender:     "alice@example.com",
		Recipients: []string{"bob@example.net", "карл@пример.рф"},
		ClientAddr: "192.0.2.10:51234",
		AuthUser:   "alice",
		CreatedAt:  base,
	}}
	for i := range nFiles {
		file := store.File{
			ID:          store.NewID(),
			MessageID:   f.msg.ID,
			Name:        fmt.Sprintf("見積書-%d.pdf", i),
			ContentType: "application/pdf",
			Size:        int64(1000 + i),
			SHA256:      fmt.Sprintf("%064x", i),
			KeyID:       "k20260115T093012Z-00000000",
			CreatedAt:   base,
			ExpiresAt:   base.Add(ttl),
		}
		token, hash, err := store.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		link := store.Link{
			ID:           store.NewID(),
			FileID:       file.ID,
			TokenHash:    hash,
			CreatedAt:    base,
			ExpiresAt:    base.Add(ttl),
			MaxDownloads: maxDownloads,
		}
		f.files = append(f.files, file)
		f.links = append(f.links, link)
		f.tokens = append(f.tokens, token)
	}
	return f
}

func (f fixture) create(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.CreateMessage(context.Background(), f.msg, f.files, f.links); err != nil {
		t.Fatalf("CreateMessage: %v", err)
	}
}

func testCreateAndLookup(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 3, time.Hour, 0)
	f.create(t, s)
	for i, token := range f.tokens {
		byToken, err := s.LinkByTokenHash(ctx, store.HashToken(token))
		if err != nil {
			t.Fatalf("LinkByTokenHash(file %d): %v", i, err)
		}
		checkView(t, byToken, f.msg, f.files[i], f.links[i])
		byID, err := s.LinkByID(ctx, f.links[i].ID)
		if err != nil {
			t.Fatalf("LinkByID(file %d): %v", i, err)
		}
		checkView(t, byID, f.msg, f.files[i], f.links[i])
	}
}

func checkView(t *testing.T, v store.LinkView, m store.Message, f store.File, l store.Link) {
	t.Helper()
	if !sameMessage(v.Message, m) {
		t.Errorf("message = %+v, want %+v", v.Message, m)
	}
	if !sameFile(v.File, f) {
		t.Errorf("file = %+v, want %+v", v.File, f)
	}
	if !sameLink(v.Link, l) {
		t.Errorf("link = %+v, want %+v", v.Link, l)
	}
}

func sameTime(a, b time.Time) bool {
	return a.Equal(b) && (a.IsZero() || a.Location() == time.UTC)
}

func sameMessage(a, b store.Message) bool {
	return a.ID == b.ID && a.MessageID == b.MessageID && a.Sender == b.Sender &&
		slices.Equal(a.Recipients, b.Recipients) && a.ClientAddr == b.ClientAddr &&
		a.AuthUser == b.AuthUser && sameTime(a.CreatedAt, b.CreatedAt) &&
		a.Subject == b.Subject && a.Lang == b.Lang && a.Verify == b.Verify && a.NotifySender == b.NotifySender &&
		bytes.Equal(a.PageTokenHash, b.PageTokenHash) && bytes.Equal(a.ManageTokenHash, b.ManageTokenHash)
}

func sameFile(a, b store.File) bool {
	return a.ID == b.ID && a.MessageID == b.MessageID && a.Name == b.Name &&
		a.ContentType == b.ContentType && a.Size == b.Size && a.SHA256 == b.SHA256 &&
		a.KeyID == b.KeyID && sameTime(a.CreatedAt, b.CreatedAt) && sameTime(a.ExpiresAt, b.ExpiresAt)
}

func sameLink(a, b store.Link) bool {
	return a.ID == b.ID && a.FileID == b.FileID && bytes.Equal(a.TokenHash, b.TokenHash) &&
		sameTime(a.CreatedAt, b.CreatedAt) && sameTime(a.ExpiresAt, b.ExpiresAt) &&
		sameTime(a.RevokedAt, b.RevokedAt) && a.MaxDownloads == b.MaxDownloads && a.Downloads == b.Downloads
}

func sameFileIDs(t *testing.T, what string, got, want []store.File) {
	t.Helper()
	ids := func(files []store.File) []string {
		var s []string
		for _, f := range files {
			s = append(s, f.ID)
		}
		slices.Sort(s)
		return s
	}
	if g, w := ids(got), ids(want); !slices.Equal(g, w) {
		t.Errorf("%s: file IDs = %v, want %v", what, g, w)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	newFixture(t, 1, time.Hour, 0).create(t, s) // the store is not empty
	unknown := store.NewID()
	checks := []struct {
		name string
		err  error
	}{
		{"LinkByTokenHash", func() error { _, err := s.LinkByTokenHash(ctx, store.HashToken("no-such-token")); return err }()},
		{"LinkByID", func() error { _, err := s.LinkByID(ctx, unknown); return err }()},
		{"CountDownload", func() error { _, err := s.CountDownload(ctx, unknown, base); return err }()},
		{"RevokeLink", s.RevokeLink(ctx, unknown, base)},
		{"DeleteMessage", func() error { _, err := s.DeleteMessage(ctx, unknown); return err }()},
		{"DeleteFile", s.DeleteFile(ctx, unknown)},
	}
	for _, c := range checks {
		if !errors.Is(c.err, store.ErrNotFound) {
			t.Errorf("%s(unknown) error = %v, want ErrNotFound", c.name, c.err)
		}
	}
}

// testCreateIsAtomic: a message that cannot be stored whole leaves nothing
// behind, and an existing message is not touched.
func testCreateIsAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	existing := newFixture(t, 1, time.Hour, 0)
	existing.create(t, s)
	tests := []struct {
		name  string
		spoil func(f *fixture)
	}{
		{"dangling link", func(f *fixture) { f.links[1].FileID = store.NewID() }},
		{"duplicate message ID", func(f *fixture) {
			f.msg.ID = existing.msg.ID
			f.files[0].MessageID, f.files[1].MessageID = f.msg.ID, f.msg.ID
		}},
		{"duplicate link ID late in the batch", func(f *fixture) { f.links[1].ID = existing.links[0].ID }},
		{"duplicate token hash late in the batch", func(f *fixture) { f.links[1].TokenHash = existing.links[0].TokenHash }},
	}
	for _, tt := range tests {
		f := newFixture(t, 2, time.Hour, 0)
		tt.spoil(&f)
		if err := s.CreateMessage(ctx, f.msg, f.files, f.links); err == nil {
			t.Errorf("%s: CreateMessage succeeded", tt.name)
			continue
		}
		if _, err := s.LinkByID(ctx, f.links[0].ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: first link after failed create: %v, want ErrNotFound", tt.name, err)
		}
		if f.msg.ID != existing.msg.ID {
			if _, err := s.DeleteMessage(ctx, f.msg.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: message after failed create: %v, want ErrNotFound", tt.name, err)
			}
		}
		v, err := s.LinkByTokenHash(ctx, existing.links[0].TokenHash)
		if err != nil {
			t.Fatalf("%s: existing link: %v", tt.name, err)
		}
		checkView(t, v, existing.msg, existing.files[0], existing.links[0])
	}
}

// testExpiryBoundary: a link is usable strictly before ExpiresAt, to the
// second.
func testExpiryBoundary(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 1, 3*time.Second, 0)
	f.links[0].ExpiresAt = f.links[0].ExpiresAt.Truncate(time.Second)
	f.create(t, s)
	exp := f.links[0].ExpiresAt
	tests := []struct {
		now     time.Time
		wantErr error
	}{
		{exp.Add(-2 * time.Second), nil},
		{exp.Add(-time.Second), nil},
		{exp, store.ErrExpired},
		{exp.Add(time.Second), store.ErrExpired},
		{exp.Add(-time.Second), nil}, // earlier clocks still work: expiry is not recorded
	}
	downloads := 0
	for _, tt := range tests {
		l, err := s.CountDownload(ctx, f.links[0].ID, tt.now)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("CountDownload at expiry%+v: error = %v, want %v", tt.now.Sub(exp), err, tt.wantErr)
			continue
		}
		if err == nil {
			downloads++
			if l.Downloads != downloads {
				t.Errorf("CountDownload at expiry%+v: Downloads = %d, want %d", tt.now.Sub(exp), l.Downloads, downloads)
			}
		}
	}
	// An expired link is still found, so the page can say it expired.
	v, err := s.LinkByTokenHash(ctx, store.HashToken(f.tokens[0]))
	if err != nil {
		t.Fatalf("LinkByTokenHash of expired link: %v", err)
	}
	if v.Link.Downloads != downloads {
		t.Errorf("Downloads = %d, want %d (failed counts must not change it)", v.Link.Downloads, downloads)
	}
}

func testRevoke(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 2, time.Hour, 0)
	f.create(t, s)
	revokedAt := base.Add(10 * time.Minute)
	if err := s.RevokeLink(ctx, f.links[0].ID, revokedAt); err != nil {
		t.Fatalf("RevokeLink: %v", err)
	}
	if err := s.RevokeLink(ctx, f.links[0].ID, revokedAt.Add(time.Minute)); err != nil {
		t.Fatalf("RevokeLink again: %v", err)
	}
	if _, err := s.CountDownload(ctx, f.links[0].ID, revokedAt.Add(time.Second)); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("CountDownload of revoked link: %v, want ErrRevoked", err)
	}
	// Revocation wins over expiry: the page should say "revoked".
	if _, err := s.CountDownload(ctx, f.links[0].ID, base.Add(2*time.Hour)); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("CountDownload of revoked, expired link: %v, want ErrRevoked", err)
	}
	v, err := s.LinkByID(ctx, f.links[0].ID)
	if err != nil {
		t.Fatalf("LinkByID of revoked link: %v", err)
	}
	if !sameTime(v.Link.RevokedAt, revokedAt) {
		t.Errorf("RevokedAt = %v, want %v (the first revocation)", v.Link.RevokedAt, revokedAt)
	}
	// The other link of the message is untouched.
	if _, err := s.CountDownload(ctx, f.links[1].ID, revokedAt); err != nil {
		t.Errorf("CountDownload of sibling link: %v", err)
	}
}

func testDownloadLimit(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 1, time.Hour, 2)
	f.create(t, s)
	id := f.links[0].ID
	for want := 1; want <= 2; want++ {
		l, err := s.CountDownload(ctx, id, base)
		if err != nil {
			t.Fatalf("download %d: %v", want, err)
		}
		if l.Downloads != want || l.ID != id || l.MaxDownloads != 2 {
			t.Errorf("download %d: link = %+v", want, l)
		}
	}
	if _, err := s.CountDownload(ctx, id, base); !errors.Is(err, store.ErrLimit) {
		t.Errorf("download 3: %v, want ErrLimit", err)
	}
	// Expiry is reported before the limit.
	if _, err := s.CountDownload(ctx, id, base.Add(2*time.Hour)); !errors.Is(err, store.ErrExpired) {
		t.Errorf("download after expiry: %v, want ErrExpired", err)
	}
	v, err := s.LinkByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if v.Link.Downloads != 2 {
		t.Errorf("Downloads = %d, want 2", v.Link.Downloads)
	}
}

// testConcurrentDownloadLimit: racing downloads of a one-time link, exactly
// one wins (the Gokapi check-then-decrement bug).
func testConcurrentDownloadLimit(t *testing.T, s store.Store) {
	ctx := context.Background()
	const racers = 16
	tests := []struct{ maxDownloads, wantOK int }{
		{1, 1},
		{3, 3},
		{0, racers}, // unlimited
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("max%d", tt.maxDownloads), func(t *testing.T) {
			f := newFixture(t, 1, time.Hour, tt.maxDownloads)
			f.create(t, s)
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, racers)
			for i := range racers {
				wg.Go(func() {
					<-start
					_, errs[i] = s.CountDownload(ctx, f.links[0].ID, base)
				})
			}
			close(start)
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, store.ErrLimit):
					t.Errorf("CountDownload: %v, want nil or ErrLimit", err)
				}
			}
			if ok != tt.wantOK {
				t.Errorf("%d downloads succeeded, want %d", ok, tt.wantOK)
			}
			v, err := s.LinkByID(ctx, f.links[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			if v.Link.Downloads != tt.wantOK {
				t.Errorf("Downloads = %d, want %d", v.Link.Downloads, tt.wantOK)
			}
		})
	}
}

func testDeleteMessage(t *testing.T, s store.Store) {
	ctx := context.Background()
	keep := newFixture(t, 1, time.Hour, 0)
	keep.create(t, s)
	f := newFixture(t, 3, time.Hour, 0)
	f.create(t, s)
	removed, err := s.DeleteMessage(ctx, f.msg.ID)
	if err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	sameFileIDs(t, "DeleteMessage", removed, f.files)
	for i, got := range removed {
		if j := slices.IndexFunc(f.files, func(w store.File) bool { return w.ID == got.ID }); j >= 0 && !sameFile(got, f.files[j]) {
			t.Errorf("removed file %d = %+v, want %+v", i, got, f.files[j])
		}
	}
	for i, l := range f.links {
		if _, err := s.LinkByID(ctx, l.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("link %d after DeleteMessage: %v, want ErrNotFound", i, err)
		}
		if _, err := s.LinkByTokenHash(ctx, store.HashToken(f.tokens[i])); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token %d after DeleteMessage: %v, want ErrNotFound", i, err)
		}
		if _, err := s.CountDownload(ctx, l.ID, base); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CountDownload %d after DeleteMessage: %v, want ErrNotFound", i, err)
		}
	}
	if _, err := s.DeleteMessage(ctx, f.msg.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteMessage: %v, want ErrNotFound", err)
	}
	if _, err := s.LinkByID(ctx, keep.links[0].ID); err != nil {
		t.Errorf("other message's link after DeleteMessage: %v", err)
	}
}

func testExpiredFilesAndDeleteFile(t *testing.T, s store.Store) {
	ctx := context.Background()
	soon := newFixture(t, 2, time.Hour, 0)
	soon.create(t, s)
	later := newFixture(t, 1, 2*time.Hour, 0)
	later.create(t, s)
	exp := base.Add(time.Hour)

	tests := []struct {
		name  string
		now   time.Time
		limit int
		want  []store.File
	}{
		{"before", exp.Add(-time.Second), 10, nil},
		{"at expiry", exp, 10, nil}, // "before now": not yet
		{"after", exp.Add(time.Second), 10, soon.files},
		{"limit", exp.Add(time.Second), 1, soon.files[:1]},
		{"both", base.Add(3 * time.Hour), 10, append(slices.Clone(soon.files), later.files...)},
	}
	for _, tt := range tests {
		got, err := s.ExpiredFiles(ctx, tt.now, tt.limit)
		if err != nil {
			t.Fatalf("ExpiredFiles(%s): %v", tt.name, err)
		}
		if tt.name == "limit" {
			if len(got) != 1 || !slices.ContainsFunc(soon.files, func(f store.File) bool { return f.ID == got[0].ID }) {
				t.Errorf("ExpiredFiles(%s) = %v, want one of the first message's files", tt.name, got)
			}
			continue
		}
		sameFileIDs(t, "ExpiredFiles("+tt.name+")", got, tt.want)
	}

	// Purge the first message file by file, as the expiry purge does.
	for i, f := range soon.files {
		if err := s.DeleteFile(ctx, f.ID); err != nil {
			t.Fatalf("DeleteFile(%d): %v", i, err)
		}
		if _, err := s.LinkByID(ctx, soon.links[i].ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("link of deleted file %d: %v, want ErrNotFound", i, err)
		}
		if err := s.DeleteFile(ctx, f.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second DeleteFile(%d): %v, want ErrNotFound", i, err)
		}
	}
	got, err := s.ExpiredFiles(ctx, base.Add(3*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	sameFileIDs(t, "ExpiredFiles after DeleteFile", got, later.files)
	// A message whose last file is gone is gone too (its addresses are
	// personal data).
	if _, err := s.DeleteMessage(ctx, soon.msg.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteMessage after its files were purged: %v, want ErrNotFound", err)
	}
	if _, err := s.LinkByID(ctx, later.links[0].ID); err != nil {
		t.Errorf("other message's link: %v", err)
	}
}

// testMessageView: a message's page and manage tokens find it with all its
// links; the tokens are separate (a page token is no manage token); a
// second message may not reuse a token hash; deleting the message (or its
// last file) makes the tokens unknown.
func testMessageView(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 3, time.Hour, 2)
	_, page, _ := store.NewToken()
	_, manage, _ := store.NewToken()
	f.msg.Subject, f.msg.Lang = "見積書 Q3", "ja"
	f.msg.Verify, f.msg.NotifySender = store.VerifyRecipientCode, store.NotifyDownloads
	f.msg.PageTokenHash, f.msg.ManageTokenHash = page, manage
	f.create(t, s)

	check := func(what string, mv store.MessageView, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !sameMessage(mv.Message, f.msg) {
			t.Errorf("%s: message = %+v, want %+v", what, mv.Message, f.msg)
		}
		if len(mv.Links) != len(f.links) {
			t.Fatalf("%s: %d links, want %d", what, len(mv.Links), len(f.links))
		}
		for _, v := range mv.Links {
			i := slices.IndexFunc(f.links, func(l store.Link) bool { return l.ID == v.Link.ID })
			if i < 0 {
				t.Fatalf("%s: unexpected link %s", what, v.Link.ID)
			}
			checkView(t, v, f.msg, f.files[i], f.links[i])
		}
		if !slices.IsSortedFunc(mv.Links, func(a, b store.LinkView) int { return strings.Compare(a.File.ID, b.File.ID) }) {
			t.Errorf("%s: links not ordered by file ID", what)
		}
	}
	mv, err := s.MessageByTokenHash(ctx, store.PageToken, page)
	check("by page token", mv, err)
	mv, err = s.MessageByTokenHash(ctx, store.ManageToken, manage)
	check("by manage token", mv, err)
	mv, err = s.MessageByID(ctx, f.msg.ID)
	check("by ID", mv, err)

	// A page token is not a manage token, nor the other way round.
	if _, err := s.MessageByTokenHash(ctx, store.ManageToken, page); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("page token as manage token: err = %v, want ErrNotFound", err)
	}
	if _, err := s.MessageByTokenHash(ctx, store.PageToken, manage); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("manage token as page token: err = %v, want ErrNotFound", err)
	}
	if _, err := s.MessageByTokenHash(ctx, store.PageToken, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("empty token: err = %v, want ErrNotFound", err)
	}
	// Revocation shows in the view.
	if err := s.RevokeLink(ctx, f.links[1].ID, base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	mv, err = s.MessageByTokenHash(ctx, store.PageToken, page)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range mv.Links {
		if v.Link.ID == f.links[1].ID && v.Link.RevokedAt.IsZero() {
			t.Errorf("revoked link shows as not revoked in the message view")
		}
	}

	// A second message reusing the page token hash is refused whole.
	g := newFixture(t, 1, time.Hour, 0)
	g.msg.PageTokenHash = page
	if err := s.CreateMessage(ctx, g.msg, g.files, g.links); err == nil {
		t.Errorf("second message with the same page token hash was stored")
	}
	if _, err := s.LinkByID(ctx, g.links[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused message left its link behind: %v", err)
	}
	// A message without tokens is found by ID only.
	h := newFixture(t, 1, time.Hour, 0)
	h.create(t, s)
	if mv, err := s.MessageByID(ctx, h.msg.ID); err != nil || mv.Message.PageTokenHash != nil || len(mv.Links) != 1 {
		t.Errorf("message without tokens: %+v, %v", mv, err)
	}

	// Deleting every file removes the message and its tokens.
	for _, file := range f.files {
		if err := s.DeleteFile(ctx, file.ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range []store.MessageToken{store.PageToken, store.ManageToken} {
		hash := page
		if kind == store.ManageToken {
			hash = manage
		}
		if _, err := s.MessageByTokenHash(ctx, kind, hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token kind %d after the last file went: err = %v, want ErrNotFound", kind, err)
		}
	}
	if _, err := s.MessageByID(ctx, f.msg.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MessageByID after the last file went: err = %v, want ErrNotFound", err)
	}
	// The freed page token hash may be used again.
	g = newFixture(t, 1, time.Hour, 0)
	g.msg.PageTokenHash = page
	if err := s.CreateMessage(ctx, g.msg, g.files, g.links); err != nil {
		t.Errorf("page token hash of a deleted message not reusable: %v", err)
	}
	if _, err := s.DeleteMessage(ctx, g.msg.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MessageByTokenHash(ctx, store.PageToken, page); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("page token after DeleteMessage: err = %v, want ErrNotFound", err)
	}
}
