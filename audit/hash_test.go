package audit

import (
	"testing"
	"time"
)

func TestCanonicalEncoding(t *testing.T) {
	loc := tokyo(t)
	tests := []struct {
		name      string
		event     Event
		canonical string
		hash      string // pinned: sha256sum of canonical, computed outside Go
	}{
		{
			name: "download with non-ASCII name, HTML chars, Tokyo time",
			event: Event{
				Seq:        7,
				Time:       time.Date(2026, 11, 25, 19, 10, 0, 500_000_000, loc),
				Type:       TypeDownloadOK,
				Actor:      "web",
				ClientAddr: "203.0.113.9",
				UserAgent:  "Mozilla/5.0 <x>",
				Sender:     "a@example.com",
				Recipients: []string{"b@example.net", "c@example.org"},
				Size:       1024,
				FileID:     "f1",
				FileName:   "見積書.pdf",
				SHA256:     "ab",
				LinkID:     "l1",
				Expires:    time.Date(2026, 12, 2, 10, 10, 0, 0, time.UTC),
				PrevHash:   "00",
				Hash:       "ignored",
			},
			canonical: `{"v":1,"seq":7,"time":"2026-11-25T10:10:00.5Z","type":"download.ok","actor":"web","client_addr":"203.0.113.9","user_agent":"Mozilla/5.0 <x>","auth_user":"","helo":"","message_id":"","header_id":"","sender":"a@example.com","recipients":["b@example.net","c@example.org"],"size":1024,"file_id":"f1","file_name":"見積書.pdf","content_type":"","sha256":"ab","link_id":"l1","expires":"2026-12-02T10:10:00Z","reason":"","reply":"","detail":"","prev_hash":"00"}`,
			hash:      "f68a8057cbd6c2d8e3a87800eaae35a5f3ba44e33bd153976f9b06811cb36bc4",
		},
		{
			name:      "first event, every optional field empty",
			event:     Event{Seq: 1, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Type: TypeMailReceived},
			canonical: `{"v":1,"seq":1,"time":"2026-01-01T00:00:00Z","type":"mail.received","actor":"","client_addr":"","user_agent":"","auth_user":"","helo":"","message_id":"","header_id":"","sender":"","recipients":[],"size":0,"file_id":"","file_name":"","content_type":"","sha256":"","link_id":"","expires":"","reason":"","reply":"","detail":"","prev_hash":""}`,
			hash:      "73911ee7954d1a903b05250fa8e0897b21014c31f6e8f33f7742191d26923c25",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := canonicalOf(&tt.event)
			b, err := canonicalBytes(&c)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.canonical {
				t.Errorf("canonical encoding\n got %s\nwant %s", b, tt.canonical)
			}
			h, err := HashEvent(tt.event)
			if err != nil {
				t.Fatal(err)
			}
			if h != tt.hash {
				t.Errorf("hash = %s, want %s", h, tt.hash)
			}
		})
	}
}

func TestHashSensitivity(t *testing.T) {
	base := Event{
		Seq: 3, Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Type: TypeFileStored,
		Sender: "a@example.com", Recipients: []string{"b@example.net"}, Size: 10, PrevHash: "p",
	}
	baseHash, err := HashEvent(base)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		change   func(e *Event)
		sameHash bool
	}{
		{"same instant in another zone", func(e *Event) { e.Time = e.Time.In(time.FixedZone("X", 9*3600)) }, true},
		{"Hash field is not hashed", func(e *Event) { e.Hash = "x" }, true},
		{"seq", func(e *Event) { e.Seq++ }, false},
		{"prev hash", func(e *Event) { e.PrevHash = "q" }, false},
		{"one nanosecond", func(e *Event) { e.Time = e.Time.Add(time.Nanosecond) }, false},
		{"sender", func(e *Event) { e.Sender = "A@example.com" }, false},
		{"recipient order", func(e *Event) { e.Recipients = []string{"b@example.net", "c@example.net"} }, false},
		{"size", func(e *Event) { e.Size = 11 }, false},
		{"field boundary", func(e *Event) { e.Sender, e.Actor = "", "a@example.com" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			e.Recipients = append([]string(nil), base.Recipients...)
			tt.change(&e)
			h, err := HashEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			if (h == baseHash) != tt.sameHash {
				t.Errorf("hash equal to base = %v, want %v", h == baseHash, tt.sameHash)
			}
		})
	}

	nilHash, _ := HashEvent(Event{Seq: 1, Type: TypeMailReceived, Time: base.Time})
	emptyHash, _ := HashEvent(Event{Seq: 1, Type: TypeMailReceived, Time: base.Time, Recipients: []string{}})
	if nilHash != emptyHash {
		t.Errorf("nil and empty recipients hash differently: %s vs %s", nilHash, emptyHash)
	}
}
