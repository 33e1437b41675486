package linkserver

import "sync"

// inFlight counts, per link, the downloads on this instance whose
// download.ok is recorded and whose answer is not finished yet.
type inFlight struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *inFlight) add(linkID string) {
	f.mu.Lock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[linkID]++
	f.mu.Unlock()
}

func (f *inFlight) done(linkID string) {
	f.mu.Lock()
	if f.n[linkID] <= 1 {
		delete(f.n, linkID)
	} else {
		f.n[linkID]--
	}
	f.mu.Unlock()
}

func (f *inFlight) count(linkID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[linkID]
}

// DownloadsInFlight returns how many downloads of the link this instance
// is serving now: their download.ok is recorded and their answer not
// finished (a download that then finds the link revoked counts until it
// has sent its refusal). A revoke reads it so its link.revoked event can
// say how many downloads it raced with here; other instances count their
// own.
func (s *Server) DownloadsInFlight(linkID string) int {
	return s.inFlight.count(linkID)
}
