package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/attachgate/attachgate/store"
)

// shifted is f with every time moved by d.
func shifted(f fixture, d time.Duration) fixture {
	f.msg.CreatedAt = f.msg.CreatedAt.Add(d)
	for i := range f.files {
		f.files[i].CreatedAt = f.files[i].CreatedAt.Add(d)
		f.files[i].ExpiresAt = f.files[i].ExpiresAt.Add(d)
		f.links[i].CreatedAt = f.links[i].CreatedAt.Add(d)
		f.links[i].ExpiresAt = f.links[i].ExpiresAt.Add(d)
	}
	return f
}

// testListLinks: the admin's view of links filters by sender, recipient,
// creation date and state, orders by link ID and pages with After/Limit,
// the same way on every backend.
func testListLinks(t *testing.T, s store.Store) {
	ctx := context.Background()
	// a: alice → bob, карл; two files, 1h, created at base.
	a := newFixture(t, 2, time.Hour, 0)
	a.create(t, s)
	// b: Carol → dave, created 2h later, 24h, one download allowed.
	b := shifted(newFixture(t, 2, 24*time.Hour, 1), 2*time.Hour)
	b.msg.Sender, b.msg.Recipients = "Carol@Corp.Example", []string{"dave@corp.example"}
	for i := range b.files {
		b.files[i].MessageID = b.msg.ID
	}
	b.create(t, s)
	// b's first link revoked, its second used up.
	if err := s.RevokeLink(ctx, b.links[0].ID, base.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CountDownload(ctx, b.links[1].ID, base.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ids := func(f fixture, idx ...int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, f.links[i].ID)
		}
		return out
	}
	all := append(ids(a, 0, 1), ids(b, 0, 1)...)
	now := base.Add(3 * time.Hour) // a expired, b live
	tests := []struct {
		name string
		f    store.LinkFilter
		want []string
	}{
		{"everything", store.LinkFilter{}, all},
		{"sender without ASCII case", store.LinkFilter{Sender: "carol@corp.EXAMPLE"}, ids(b, 0, 1)},
		{"unknown sender", store.LinkFilter{Sender: "mallory@example.com"}, nil},
		{"recipient without ASCII case", store.LinkFilter{Recipient: "BOB@example.net"}, ids(a, 0, 1)},
		{"non-ASCII recipient", store.LinkFilter{Recipient: "карл@пример.рф"}, ids(a, 0, 1)},
		{"recipient is not the sender", store.LinkFilter{Recipient: "alice@example.com"}, nil},
		{"from", store.LinkFilter{From: base.Add(time.Hour)}, ids(b, 0, 1)},
		{"to is exclusive", store.LinkFilter{To: base.Add(2 * time.Hour)}, ids(a, 0, 1)},
		{"from is inclusive", store.LinkFilter{From: base.Add(2 * time.Hour), To: base.Add(3 * time.Hour)}, ids(b, 0, 1)},
		{"revoked", store.LinkFilter{State: store.LinkRevoked, Now: now}, ids(b, 0)},
		{"expired", store.LinkFilter{State: store.LinkExpired, Now: now}, ids(a, 0, 1)},
		{"limit", store.LinkFilter{State: store.LinkLimit, Now: now}, ids(b, 1)},
		{"active", store.LinkFilter{State: store.LinkActive, Now: base.Add(30 * time.Minute)}, ids(a, 0, 1)},
		{"expiry is exclusive", store.LinkFilter{State: store.LinkExpired, Now: base.Add(time.Hour)}, ids(a, 0, 1)},
		{"combined", store.LinkFilter{Sender: "alice@example.com", Recipient: "bob@example.net", State: store.LinkActive, Now: base}, ids(a, 0, 1)},
		{"first page", store.LinkFilter{Limit: 3}, all[:3]},
		{"next page", store.LinkFilter{Limit: 3, After: all[2]}, all[3:]},
	}
	for _, tt := range tests {
		got, err := s.ListLinks(ctx, tt.f)
		if err != nil {
			t.Fatalf("%s: ListLinks: %v", tt.name, err)
		}
		var gotIDs []string
		for _, v := range got {
			gotIDs = append(gotIDs, v.Link.ID)
		}
		if len(gotIDs) != len(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, gotIDs, tt.want)
			continue
		}
		for i := range gotIDs {
			if gotIDs[i] != tt.want[i] {
				t.Errorf("%s: got %v, want %v (in link ID order)", tt.name, gotIDs, tt.want)
				break
			}
		}
	}
	// What is listed is the whole view, as LinkByID gives it.
	got, err := s.ListLinks(ctx, store.LinkFilter{Sender: "carol@corp.example", State: store.LinkRevoked, Now: now})
	if err != nil || len(got) != 1 {
		t.Fatalf("revoked link of carol: %v, %v", got, err)
	}
	one, err := s.LinkByID(ctx, b.links[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameMessage(got[0].Message, one.Message) || !sameFile(got[0].File, one.File) ||
		!got[0].Link.RevokedAt.Equal(one.Link.RevokedAt) || got[0].Link.MaxDownloads != 1 {
		t.Errorf("listed view %+v differs from LinkByID's %+v", got[0], one)
	}

	for _, bad := range []store.LinkFilter{{State: "gone", Now: now}, {State: store.LinkActive}, {Limit: store.MaxLinkListLimit + 1},
		{From: base.Add(time.Hour), To: base}} {
		if _, err := s.ListLinks(ctx, bad); err == nil {
			t.Errorf("ListLinks(%+v) accepted a bad filter", bad)
		}
	}
}
