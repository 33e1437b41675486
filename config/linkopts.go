package config

import (
	"fmt"

	"github.com/attachgate/attachgate/policies"
)

// validateLinkBounds checks the admin's bounds on links: links.max_expiry
// and links.max_downloads_cap hold for the defaults and for every rule's
// link block. Each error names the key and the bound it breaks.
func (c *Config) validateLinkBounds(bad func(key, format string, args ...any)) {
	l := &c.Links
	maxExp := l.MaxExpiry.D()
	if maxExp <= 0 {
		bad("links.max_expiry", "must be a positive duration")
	}
	if maxExp > 0 && l.DefaultExpiry.D() > maxExp {
		bad("links.default_expiry", "%s exceeds links.max_expiry %s", policies.FormatDuration(l.DefaultExpiry.D()), policies.FormatDuration(maxExp))
	}
	if l.MaxDownloadsCap < 0 {
		bad("links.max_downloads_cap", "must be 0 (no cap) or more, got %d", l.MaxDownloadsCap)
	}
	if l.MaxDownloads < 0 {
		bad("links.max_downloads", "must be 0 (unlimited) or more, got %d", l.MaxDownloads)
	} else if msg := l.capBreach(l.MaxDownloads); msg != "" {
		bad("links.max_downloads", "%s", msg)
	}
	for i, r := range c.Policies {
		if r.Link == nil {
			continue
		}
		key := fmt.Sprintf("policies[%d].link", i)
		if e := r.Link.Expiry.D(); maxExp > 0 && e > maxExp {
			bad(key+".expiry", "%s exceeds links.max_expiry %s", policies.FormatDuration(e), policies.FormatDuration(maxExp))
		}
		if n := r.Link.MaxDownloads; n != nil && *n >= 0 {
			if msg := l.capBreach(*n); msg != "" {
				bad(key+".max_downloads", "%s", msg)
			}
		}
	}
}

// capBreach says how n downloads break links.max_downloads_cap ("" when
// they do not).
func (l *Links) capBreach(n int) string {
	switch {
	case l.MaxDownloadsCap <= 0:
		return ""
	case n == 0:
		return fmt.Sprintf("0 (unlimited) exceeds links.max_downloads_cap %d", l.MaxDownloadsCap)
	case n > l.MaxDownloadsCap:
		return fmt.Sprintf("%d exceeds links.max_downloads_cap %d", n, l.MaxDownloadsCap)
	}
	return ""
}
