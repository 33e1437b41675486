package policies

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LinkOptions are a rule's options for the links it makes. A zero field
// takes the configured default (links.default_expiry, links.max_downloads,
// links.language); the admin's bounds (links.max_expiry,
// links.max_downloads_cap) are checked by package config.
type LinkOptions struct {
	// Expiry is how long the links work; 0 = links.default_expiry.
	Expiry Duration `yaml:"expiry"`
	// MaxDownloads bounds the downloads of each link; nil =
	// links.max_downloads, 0 = unlimited.
	MaxDownloads *int `yaml:"max_downloads"`
	// Verify is how a visitor proves to be a recipient: VerifyNone ("" or
	// "none") or VerifyRecipientCode.
	Verify string `yaml:"verify"`
	// NotifySender is what the envelope sender is told: NotifyNone ("" or
	// "none"), NotifyReceipt or NotifyDownloads (receipt, and a notice at
	// each recipient's first download of each file).
	NotifySender string `yaml:"notify_sender"`
	// Language of the notice, pages and mails about the message: en, ja or
	// both; "" = links.language.
	Language string `yaml:"language"`
}

// Values of LinkOptions.Verify and LinkOptions.NotifySender.
const (
	VerifyNone          = "none"
	VerifyRecipientCode = "recipient-code"
	NotifyNone          = "none"
	NotifyReceipt       = "receipt"
	NotifyDownloads     = "downloads"
)

// NotifyRank orders NotifySender values by how much the sender is told:
// none (and "") 0 < receipt 1 < downloads 2.
func NotifyRank(v string) int {
	switch v {
	case NotifyReceipt:
		return 1
	case NotifyDownloads:
		return 2
	}
	return 0
}

type fieldError struct{ key, msg string }

func (o *LinkOptions) validate() []fieldError {
	var errs []fieldError
	if o.MaxDownloads != nil && *o.MaxDownloads < 0 {
		errs = append(errs, fieldError{"max_downloads", fmt.Sprintf("must be 0 (unlimited) or more, got %d", *o.MaxDownloads)})
	}
	switch o.Verify {
	case "", VerifyNone, VerifyRecipientCode:
	default:
		errs = append(errs, fieldError{"verify", fmt.Sprintf("want none or recipient-code, got %q", o.Verify)})
	}
	switch o.NotifySender {
	case "", NotifyNone, NotifyReceipt, NotifyDownloads:
	default:
		errs = append(errs, fieldError{"notify_sender", fmt.Sprintf("want none, receipt or downloads, got %q", o.NotifySender)})
	}
	switch o.Language {
	case "", "en", "ja", "both":
	default:
		errs = append(errs, fieldError{"language", fmt.Sprintf("want en, ja or both, got %q", o.Language)})
	}
	return errs
}

// Duration is a positive Go duration written as a string ("72h").
type Duration time.Duration

// UnmarshalYAML parses a positive Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"72h\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use Go syntax such as \"90m\", \"72h\")", n.Line, s)
	}
	if v <= 0 {
		return fmt.Errorf("line %d: %q: want a positive duration", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes the duration as configured, without zero units: "720h",
// "1h30m".
func (d Duration) String() string { return FormatDuration(time.Duration(d)) }

// FormatDuration writes d without trailing zero units ("720h" rather than
// "720h0m0s"), as an admin writes it in the configuration.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// describe lists the options set, for the dry run: "expiry 72h,
// max_downloads 3, verify recipient-code"; the others take links.*.
func (o LinkOptions) describe() string {
	var parts []string
	if o.Expiry > 0 {
		parts = append(parts, "expiry "+o.Expiry.String())
	}
	if o.MaxDownloads != nil {
		n := fmt.Sprint(*o.MaxDownloads)
		if *o.MaxDownloads == 0 {
			n = "unlimited"
		}
		parts = append(parts, "max_downloads "+n)
	}
	for _, kv := range [][2]string{{"verify", o.Verify}, {"notify_sender", o.NotifySender}, {"language", o.Language}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	return strings.Join(parts, ", ") + " (the rest: links.* defaults)"
}
