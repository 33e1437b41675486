package notify

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
)

// TestIsGatewayMail: the gateway's own mail is recognised; forged or
// copied markers are not, so they cannot slip mail past the policies.
func TestIsGatewayMail(t *testing.T) {
	dir := t.TempDir()
	ring := newRing(t, dir)
	c := newComposer(t, "en", ring)
	m, err := c.Compose(Notice{Kind: "code", To: []string{"bob@example.net", "carol@example.org"}, Data: codeData})
	if err != nil {
		t.Fatal(err)
	}
	raw := render(t, m)
	own := parse(t, raw).header.Header
	marker := NewMarker(ring.MACKey())
	other := NewMarker(newRing(t, t.TempDir()).MACKey()) // another gateway's key

	edit := func(f func(h *textproto.Header)) *textproto.Header {
		h := own.Copy()
		f(&h)
		return &h
	}
	tests := []struct {
		name   string
		m      *Marker
		h      *textproto.Header
		rcpts  []string
		expect bool
	}{
		{"own mail to its recipients", marker, &own, []string{"bob@example.net", "carol@example.org"}, true},
		{"own mail, one recipient, other case", marker, &own, []string{"BOB@example.net"}, true},
		{"another gateway's key", other, &own, []string{"bob@example.net"}, false},
		{"envelope recipient not in To", marker, &own, []string{"mallory@attacker.example"}, false},
		{"no envelope recipients", marker, &own, nil, false},
		{"Auto-Submitted removed", marker, edit(func(h *textproto.Header) { h.Del("Auto-Submitted") }), []string{"bob@example.net"}, false},
		{"Auto-Submitted: no", marker, edit(func(h *textproto.Header) { h.Set("Auto-Submitted", "no") }), []string{"bob@example.net"}, false},
		{"marker removed", marker, edit(func(h *textproto.Header) { h.Del(HeaderNotice) }), []string{"bob@example.net"}, false},
		{"marker with another kind", marker, edit(func(h *textproto.Header) {
			h.Set(HeaderNotice, strings.Replace(h.Get(HeaderNotice), "code;", "dsn;", 1))
		}), []string{"bob@example.net"}, false},
		{"mac changed", marker, edit(func(h *textproto.Header) {
			v := h.Get(HeaderNotice)
			i := strings.Index(v, "mac=") + len("mac=")
			repl := byte('A')
			if v[i] == 'A' {
				repl = 'B'
			}
			h.Set(HeaderNotice, v[:i]+string(repl)+v[i+1:])
		}), []string{"bob@example.net"}, false},
		{"mac re-spelt in its last character's spare bits", marker, edit(func(h *textproto.Header) {
			v := h.Get(HeaderNotice)
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			last := strings.IndexByte(alphabet, v[len(v)-1])
			h.Set(HeaderNotice, v[:len(v)-1]+string(alphabet[last^1]))
		}), []string{"bob@example.net"}, false},
		{"copied onto mail to someone else", marker, edit(func(h *textproto.Header) {
			h.Set("To", "mallory@attacker.example")
		}), []string{"mallory@attacker.example"}, false},
		{"To extended with an outsider", marker, edit(func(h *textproto.Header) {
			h.Set("To", h.Get("To")+", mallory@attacker.example")
		}), []string{"mallory@attacker.example"}, false},
		{"another Message-ID", marker, edit(func(h *textproto.Header) {
			h.Set("Message-Id", "<new-1@corp.example>")
		}), []string{"bob@example.net"}, false},
		{"Date moved", marker, edit(func(h *textproto.Header) {
			h.Set("Date", time.Now().Add(time.Minute).Format(time.RFC1123Z))
		}), []string{"bob@example.net"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.IsGatewayMail(tt.h, tt.rcpts); got != tt.expect {
				t.Errorf("IsGatewayMail = %v, want %v", got, tt.expect)
			}
		})
	}

	t.Run("too old", func(t *testing.T) {
		old := NewMarker(ring.MACKey())
		old.Now = func() time.Time { return time.Now().Add(9 * 24 * time.Hour) }
		if old.IsGatewayMail(&own, []string{"bob@example.net"}) {
			t.Errorf("a nine-day-old notice still counts as the gateway's own")
		}
	})
	t.Run("after a restart with the same key ring", func(t *testing.T) {
		again := NewMarker(newRing(t, dir).MACKey())
		if !again.IsGatewayMail(&own, []string{"bob@example.net"}) {
			t.Errorf("own mail not recognised by a new process with the same keys")
		}
	})
	t.Run("ordinary mail", func(t *testing.T) {
		h, err := textproto.ReadHeader(bufioReader("From: alice@corp.example\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if marker.IsGatewayMail(&h, []string{"bob@example.net"}) {
			t.Errorf("ordinary mail taken for the gateway's")
		}
	})
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(bytes.NewBufferString(s)) }
