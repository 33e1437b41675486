package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/store"
)

// TestListLinksAcrossChunks: with more files than one chunk of the expiry
// index (and expiries that do not follow creation), ListLinks still
// finds every match, in link ID order, and pages by After without gaps or
// repeats.
func TestListLinksAcrossChunks(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	const n = 2*500 + 37 // ListLinks reads 500 files per chunk
	var bobs []string
	for i := range n {
		m, files, links := oneFileMessage(t, now, 0)
		// Later messages expire sooner: index order is not ID order.
		files[0].ExpiresAt = now.Add(time.Duration(n-i) * time.Minute)
		links[0].ExpiresAt = files[0].ExpiresAt
		m.Recipients = []string{"carol@example.org"}
		if i%3 == 0 {
			m.Recipients = []string{fmt.Sprintf("bob%d@example.net", i), "bob@example.net"}
			bobs = append(bobs, links[0].ID)
		}
		if err := s.CreateMessage(ctx, m, files, links); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("paging does not end")
		}
		page, err := s.ListLinks(ctx, store.LinkFilter{Recipient: "BOB@example.net", Limit: 100, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page {
			got = append(got, v.Link.ID)
		}
		if len(page) < 100 {
			break
		}
		after = page[len(page)-1].Link.ID
	}
	if !slices.Equal(got, bobs) {
		t.Fatalf("listed %d links, want bob's %d in ID order (first difference matters)", len(got), len(bobs))
	}
	all, err := s.ListLinks(ctx, store.LinkFilter{Limit: store.MaxLinkListLimit})
	if err != nil || len(all) != store.MaxLinkListLimit || !slices.IsSortedFunc(all, byID) {
		t.Fatalf("a full page of %d: %d links, sorted %v, err %v", store.MaxLinkListLimit, len(all), slices.IsSortedFunc(all, byID), err)
	}
}

func byID(a, b store.LinkView) int { return strings.Compare(a.Link.ID, b.Link.ID) }
