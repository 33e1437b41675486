package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attachgate/attachgate/store"
)

// manageTests are the conformance tests of access records, RevokeMessage
// and SetMessageExpiry (the sender's manage page).
var manageTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"AccessFirstDownload", testAccessFirstDownload},
	{"AccessConcurrentFirst", testAccessConcurrentFirst},
	{"AccessBounded", testAccessBounded},
	{"AccessDeletedWithFiles", testAccessDeletedWithFiles},
	{"RevokeMessage", testRevokeMessage},
	{"SetMessageExpiry", testSetMessageExpiry},
}

func access(f fixture, i int, kind, rcpt string, at time.Time) store.Access {
	return store.Access{MessageID: f.msg.ID, LinkID: f.links[i].ID, FileID: f.files[i].ID,
		Kind: kind, At: at, Recipient: rcpt, ClientAddr: fmt.Sprintf("198.51.100.%d", i+1)}
}

// testAccessFirstDownload: RecordAccess says "first" exactly for the first
// download of a file by each verified recipient, and for an unverified
// visitor only when nobody downloaded the file before; views never are.
func testAccessFirstDownload(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 2, time.Hour, 0)
	f.create(t, s)
	other := newFixture(t, 1, time.Hour, 0)
	other.create(t, s)
	steps := []struct {
		file      int
		kind      string
		rcpt      string
		wantFirst bool
	}{
		{0, store.AccessView, "", false},
		{0, store.AccessView, "bob@example.net", false},
		{0, store.AccessDownload, "", true},
		{0, store.AccessDownload, "", false},
		{0, store.AccessDownload, "bob@example.net", true},
		{0, store.AccessDownload, "bob@example.net", false},
		{0, store.AccessDownload, "карл@пример.рф", true},
		{1, store.AccessDownload, "bob@example.net", true},
		{1, store.AccessDownload, "", false}, // bob already downloaded file 1
		{1, store.AccessView, "карл@пример.рф", false},
		{1, store.AccessDownload, "карл@пример.рф", true},
	}
	var want []store.Access
	for i, st := range steps {
		a := access(f, st.file, st.kind, st.rcpt, base.Add(time.Duration(i)*time.Second))
		first, err := s.RecordAccess(ctx, a)
		if err != nil {
			t.Fatalf("step %d: RecordAccess: %v", i, err)
		}
		if first != st.wantFirst {
			t.Errorf("step %d (%s file %d by %q): first = %v, want %v", i, st.kind, st.file, st.rcpt, first, st.wantFirst)
		}
		want = append(want, a)
	}
	// Another message's file is counted apart.
	if first, err := s.RecordAccess(ctx, access(other, 0, store.AccessDownload, "bob@example.net", base)); err != nil || !first {
		t.Errorf("other message's first download: first = %v, err = %v", first, err)
	}
	got, err := s.Accesses(ctx, f.msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameAccesses(t, got, want)
	if got, err := s.Accesses(ctx, other.msg.ID); err != nil || len(got) != 1 {
		t.Errorf("other message's accesses: %v, %v; want 1", got, err)
	}
	if got, err := s.Accesses(ctx, store.NewID()); err != nil || len(got) != 0 {
		t.Errorf("accesses of an unknown message: %v, %v; want none", got, err)
	}

	// Refusals.
	unknown := access(f, 0, store.AccessDownload, "", base)
	unknown.FileID = store.NewID()
	if _, err := s.RecordAccess(ctx, unknown); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("access to an unknown file: %v, want ErrNotFound", err)
	}
	wrong := access(f, 0, store.AccessDownload, "", base)
	wrong.MessageID = other.msg.ID
	if _, err := s.RecordAccess(ctx, wrong); err == nil {
		t.Errorf("access naming another message than the file's was recorded")
	}
	bad := access(f, 0, "delete", "", base)
	if _, err := s.RecordAccess(ctx, bad); err == nil {
		t.Errorf("access of an unknown kind was recorded")
	}
	if got, _ := s.Accesses(ctx, f.msg.ID); len(got) != len(want) {
		t.Errorf("refused accesses left records: %d, want %d", len(got), len(want))
	}
}

func sameAccesses(t *testing.T, got, want []store.Access) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d accesses, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.MessageID != w.MessageID || g.LinkID != w.LinkID || g.FileID != w.FileID || g.Kind != w.Kind ||
			!sameTime(g.At, w.At) || g.Recipient != w.Recipient || g.ClientAddr != w.ClientAddr {
			t.Errorf("access %d = %+v, want %+v", i, g, w)
		}
	}
}

// testAccessConcurrentFirst: 20 simultaneous first downloads of one file
// by one recipient give exactly one "first".
func testAccessConcurrentFirst(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 1, time.Hour, 0)
	f.create(t, s)
	for _, rcpt := range []string{"bob@example.net", ""} {
		var firsts atomic.Int32
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				first, err := s.RecordAccess(ctx, access(f, 0, store.AccessDownload, rcpt, base))
				if err != nil {
					t.Errorf("RecordAccess: %v", err)
				}
				if first {
					firsts.Add(1)
				}
			}()
		}
		wg.Wait()
		want := int32(1)
		if rcpt == "" {
			want = 0 // bob downloaded first
		}
		if got := firsts.Load(); got != want {
			t.Errorf("recipient %q: %d firsts among 20 concurrent downloads, want %d", rcpt, got, want)
		}
	}
}

// testAccessBounded: only the newest MaxAccessesPerMessage records are
// kept, and trimming does not make an old downloader "first" again.
func testAccessBounded(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 1, time.Hour, 0)
	f.create(t, s)
	if first, err := s.RecordAccess(ctx, access(f, 0, store.AccessDownload, "bob@example.net", base)); err != nil || !first {
		t.Fatalf("first download: %v, %v", first, err)
	}
	const extra = 5
	for i := range store.MaxAccessesPerMessage + extra - 1 {
		if _, err := s.RecordAccess(ctx, access(f, 0, store.AccessView, "", base.Add(time.Duration(i+1)*time.Millisecond))); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Accesses(ctx, f.msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != store.MaxAccessesPerMessage {
		t.Fatalf("%d accesses kept, want %d", len(got), store.MaxAccessesPerMessage)
	}
	if !sameTime(got[0].At, base.Add(extra*time.Millisecond)) || !sameTime(got[len(got)-1].At, base.Add(time.Duration(store.MaxAccessesPerMessage+extra-1)*time.Millisecond)) {
		t.Errorf("kept %v .. %v, want the newest, oldest first", got[0].At, got[len(got)-1].At)
	}
	if first, err := s.RecordAccess(ctx, access(f, 0, store.AccessDownload, "bob@example.net", base)); err != nil || first {
		t.Errorf("bob's download after his first one was trimmed away: first = %v, %v; want false", first, err)
	}
}

// testAccessDeletedWithFiles: a purged file takes its access records
// along; deleting the message takes the rest.
func testAccessDeletedWithFiles(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 2, time.Hour, 0)
	f.create(t, s)
	for i := range f.files {
		for _, kind := range []string{store.AccessView, store.AccessDownload} {
			if _, err := s.RecordAccess(ctx, access(f, i, kind, "bob@example.net", base)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.DeleteFile(ctx, f.files[0].ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.Accesses(ctx, f.msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].FileID != f.files[1].ID || got[1].FileID != f.files[1].ID {
		t.Errorf("after DeleteFile: %+v, want the two records of the other file", got)
	}
	if _, err := s.DeleteMessage(ctx, f.msg.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Accesses(ctx, f.msg.ID); err != nil || len(got) != 0 {
		t.Errorf("after DeleteMessage: %+v, %v; want none", got, err)
	}
	// The last file's purge removes the message's records too.
	g := newFixture(t, 1, time.Hour, 0)
	g.create(t, s)
	if _, err := s.RecordAccess(ctx, access(g, 0, store.AccessView, "", base)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFile(ctx, g.files[0].ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Accesses(ctx, g.msg.ID); err != nil || len(got) != 0 {
		t.Errorf("after the last file's DeleteFile: %+v, %v; want none", got, err)
	}
}

// testRevokeMessage: every link of the message is revoked, the first
// revocation time stays, other messages are untouched.
func testRevokeMessage(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 3, time.Hour, 0)
	f.create(t, s)
	other := newFixture(t, 1, time.Hour, 0)
	other.create(t, s)
	early, later := base.Add(time.Minute), base.Add(2*time.Minute)
	if err := s.RevokeLink(ctx, f.links[1].ID, early); err != nil {
		t.Fatal(err)
	}
	n, err := s.RevokeMessage(ctx, f.msg.ID, later)
	if err != nil || n != 2 {
		t.Fatalf("RevokeMessage = %d, %v; want 2 newly revoked", n, err)
	}
	for i, l := range f.links {
		v, err := s.LinkByID(ctx, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := later
		if i == 1 {
			want = early
		}
		if !sameTime(v.Link.RevokedAt, want) {
			t.Errorf("link %d revoked at %v, want %v", i, v.Link.RevokedAt, want)
		}
		if _, err := s.CountDownload(ctx, l.ID, later); !errors.Is(err, store.ErrRevoked) {
			t.Errorf("link %d: CountDownload after RevokeMessage: %v, want ErrRevoked", i, err)
		}
	}
	if n, err := s.RevokeMessage(ctx, f.msg.ID, later.Add(time.Minute)); err != nil || n != 0 {
		t.Errorf("second RevokeMessage = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.RevokeMessage(ctx, store.NewID(), later); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeMessage of an unknown message: %v, want ErrNotFound", err)
	}
	if v, err := s.LinkByID(ctx, other.links[0].ID); err != nil || !v.Link.RevokedAt.IsZero() {
		t.Errorf("other message's link: revoked at %v, %v; want untouched", v.Link.RevokedAt, err)
	}
}

// testSetMessageExpiry: files and links of the message take the new
// expiry, the expiry purge finds them at that time (shortened and
// extended), other messages are untouched, nonsense is refused.
func testSetMessageExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 2, 2*time.Hour, 0)
	f.create(t, s)
	other := newFixture(t, 1, 2*time.Hour, 0)
	other.create(t, s)

	check := func(what string, exp time.Time) {
		t.Helper()
		mv, err := s.MessageByID(ctx, f.msg.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range mv.Links {
			if !sameTime(v.Link.ExpiresAt, exp) || !sameTime(v.File.ExpiresAt, exp) {
				t.Errorf("%s: link %s expires %v, file %v; want %v", what, v.Link.ID, v.Link.ExpiresAt, v.File.ExpiresAt, exp)
			}
		}
		before, err := s.ExpiredFiles(ctx, exp.Add(-time.Second), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range before {
			if g.MessageID == f.msg.ID || g.ID == f.files[0].ID || g.ID == f.files[1].ID {
				t.Errorf("%s: file %s listed as expired a second before its new expiry", what, g.ID)
			}
		}
		after, err := s.ExpiredFiles(ctx, exp.Add(time.Second), 0)
		if err != nil {
			t.Fatal(err)
		}
		var mine []store.File
		for _, g := range after {
			if g.ID == f.files[0].ID || g.ID == f.files[1].ID {
				mine = append(mine, g)
			}
		}
		sameFileIDs(t, what+": ExpiredFiles after the new expiry", mine, f.files)
		if _, err := s.CountDownload(ctx, f.links[0].ID, exp); !errors.Is(err, store.ErrExpired) {
			t.Errorf("%s: CountDownload at the new expiry: %v, want ErrExpired", what, err)
		}
	}
	shorter := base.Add(30 * time.Minute)
	if err := s.SetMessageExpiry(ctx, f.msg.ID, shorter); err != nil {
		t.Fatal(err)
	}
	check("shortened", shorter)
	longer := base.Add(5 * time.Hour)
	if err := s.SetMessageExpiry(ctx, f.msg.ID, longer); err != nil {
		t.Fatal(err)
	}
	check("extended", longer)
	if _, err := s.CountDownload(ctx, f.links[0].ID, base.Add(3*time.Hour)); err != nil {
		t.Errorf("CountDownload within the extended expiry: %v", err)
	}

	if err := s.SetMessageExpiry(ctx, store.NewID(), longer); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetMessageExpiry of an unknown message: %v, want ErrNotFound", err)
	}
	for _, bad := range []time.Time{{}, time.Unix(-1, 0), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if err := s.SetMessageExpiry(ctx, f.msg.ID, bad); err == nil {
			t.Errorf("SetMessageExpiry(%v) accepted", bad)
		}
	}
	check("after refused changes", longer)
	if v, err := s.LinkByID(ctx, other.links[0].ID); err != nil || !sameTime(v.Link.ExpiresAt, base.Add(2*time.Hour)) || !sameTime(v.File.ExpiresAt, base.Add(2*time.Hour)) {
		t.Errorf("other message: %+v, %v; want untouched", v.Link, err)
	}
}
