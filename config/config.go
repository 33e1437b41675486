// Package config owns attachgate's configuration file: strict YAML parsing
// (an unknown key is an error naming the key), defaults, and validation with
// messages that name the key and the reason.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/attachgate/attachgate/dkim"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/scan"
)

// emptyStringSHA256 is SHA-256(""): a token hash made from an empty
// variable, which would let an empty bearer token through.
const emptyStringSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Config is the whole configuration file.
type Config struct {
	SMTP    SMTP    `yaml:"smtp"`
	NextHop NextHop `yaml:"next_hop"`
	Links   Links   `yaml:"links"`
	Storage Storage `yaml:"storage"`
	Store   Store   `yaml:"store"`
	Audit   Audit   `yaml:"audit"`
	Admin   Admin   `yaml:"admin"`
	Log     Log     `yaml:"log"`
	// Policies are the ordered attachment rules (first match wins); see
	// package policies.
	Policies   []policies.Rule `yaml:"policies"`
	Quarantine Quarantine      `yaml:"quarantine"`
	// DKIM lists the signing domains; see package dkim.
	DKIM   []DKIM `yaml:"dkim"`
	Notify Notify `yaml:"notify"`
	// Scan sends every attachment to ClamAV's clamd; see package scan.
	Scan Scan `yaml:"scan"`

	engine   *policies.Engine
	dkimKeys *dkim.Keys
}

// DKIM is one signing domain: mail whose From header is in Domain (or a
// subdomain) is signed with the key in KeyFile under Selector.
type DKIM struct {
	Domain   string `yaml:"domain"`
	Selector string `yaml:"selector"`
	KeyFile  string `yaml:"key_file"` // PEM, RSA-2048 or Ed25519
}

// Notify configures the mail the gateway sends itself (package notify).
type Notify struct {
	// From is the From header: "attachgate@corp.example" or
	// "Attachgate <attachgate@corp.example>". Default: attachgate@ plus
	// smtp.hostname.
	From string `yaml:"from"`
	// ReturnPath is the envelope sender (MAIL FROM) of notices; "" sends
	// them with the null reverse-path <>, so bounces of them go nowhere.
	// DSNs always go out with <>.
	ReturnPath string `yaml:"return_path"`
	// TemplatesDir holds template files that replace the embedded ones
	// (see notify/mailtmpl); "" uses the embedded templates only.
	TemplatesDir string `yaml:"templates_dir"`

	templates *mailtmpl.Set
}

// Templates returns the validated mail templates (embedded, with the
// overrides of notify.templates_dir), showing times in links.time_zone.
func (n *Notify) Templates() *mailtmpl.Set { return n.templates }

// Scan configures malware scanning (package scan): every attachment the
// gateway stores or keeps streams to clamd in the same pass.
type Scan struct {
	// Clamd is where clamd listens: "tcp:127.0.0.1:3310" or
	// "unix:/run/clamav/clamd.ctl"; "" scans nothing.
	Clamd string `yaml:"clamd"`
	// Timeout bounds each step of one scan: connecting, sending a chunk,
	// and clamd's verdict after the last one.
	Timeout Duration `yaml:"timeout"`
	// OnError is what a scan without a verdict (clamd down, too slow,
	// StreamMaxLength) does to the message: tempfail (451 4.7.1, the
	// client retries) or pass (relayed unscanned, audited scan.error).
	OnError string `yaml:"on_error"`
	// OnInfected is what malware does to the message when the rule
	// deciding the attachment sets no on_infected: quarantine or reject.
	OnInfected policies.Action `yaml:"on_infected"`
}

// Enabled reports whether attachments are scanned.
func (s *Scan) Enabled() bool { return s.Clamd != "" }

// Quarantine configures held mail (policy actions quarantine and hold).
type Quarantine struct {
	// HoldFor is how long action hold keeps a message before it goes out
	// on its own.
	HoldFor Duration `yaml:"hold_for"`
	// MaxRetryAge is how long a release the next hop defers (4xx, or the
	// next hop down) is retried before the sender gets a DSN.
	MaxRetryAge Duration `yaml:"max_retry_age"`
	// Retention is how long a quarantined message nobody released or
	// deleted is kept; then it is purged and the sender gets a DSN.
	Retention Duration `yaml:"retention"`
}

// Store chooses the metadata backend: the embedded SQLite database under
// storage.dir, or Redis shared by several gateway instances.
type Store struct {
	Backend string `yaml:"backend"` // sqlite or redis
	Redis   Redis  `yaml:"redis"`
}

// Redis configures the shared Redis backend (store.backend: redis).
type Redis struct {
	URL       string `yaml:"url"` // redis://host:port/db or rediss://
	KeyPrefix string `yaml:"key_prefix"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
	TLS       bool   `yaml:"tls"`
	// Timeout bounds every Redis call, so an outage becomes a clear 451
	// or 503 quickly instead of a hang.
	Timeout Duration `yaml:"timeout"`
}

// Audit configures the audit log.
type Audit struct {
	// RetentionDays counts local days kept, today included.
	RetentionDays int `yaml:"retention_days"`
	// TimeZone of exported times and of day boundaries; "" = links.time_zone.
	TimeZone string `yaml:"time_zone"`
	// LogSubjects adds the Subject header to mail events (off: subjects are
	// personal data).
	LogSubjects bool `yaml:"log_subjects"`

	location *time.Location
}

// Admin configures the admin API listener.
type Admin struct {
	Listen         string       `yaml:"listen"` // "" disables the admin API
	TrustedProxies []string     `yaml:"trusted_proxies"`
	Tokens         []AdminToken `yaml:"tokens"`
	// MetricsNetworks may scrape GET /metrics without a token (a
	// Prometheus server has none to send); from anywhere else /metrics
	// takes a token like every admin call.
	MetricsNetworks []string `yaml:"metrics_networks"`

	proxies         []netip.Prefix
	metricsNetworks []netip.Prefix
}

// AdminToken is one bearer token, configured by the SHA-256 of its value.
type AdminToken struct {
	Name     string   `yaml:"name"`
	SHA256   string   `yaml:"sha256"` // hex of SHA-256(token)
	Role     string   `yaml:"role"`   // admin or auditor
	Networks []string `yaml:"networks"`

	networks []netip.Prefix
}

// SMTP configures the listener that takes mail in.
type SMTP struct {
	Listen          string   `yaml:"listen"`
	Hostname        string   `yaml:"hostname"`
	MaxMessageBytes int64    `yaml:"max_message_bytes"`
	TrustedNetworks []string `yaml:"trusted_networks"`
	// MaxRecipients bounds RCPT commands per message (452 4.5.3 beyond).
	MaxRecipients int `yaml:"max_recipients"`
	// ReadTimeout is re-armed per command line by go-smtp, so it must cover
	// a whole DATA upload of the largest message on a slow link.
	ReadTimeout  Duration `yaml:"read_timeout"`
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxLineLength bounds every line, DATA included (RFC 5321 allows 1000).
	MaxLineLength int `yaml:"max_line_length"`
	// MaxHeaderBytes bounds each header block of the message and its parts.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxMIMEDepth and MaxMIMEParts bound the MIME tree (554 5.6.0 beyond).
	MaxMIMEDepth int `yaml:"max_mime_depth"`
	MaxMIMEParts int `yaml:"max_mime_parts"`
	// MaxConnections bounds sessions in total and per client address.
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// ReservedConnections of MaxConnections are kept for clients in
	// TrustedNetworks and clients that authenticated: other clients get
	// at most MaxConnections-ReservedConnections. Unset: a quarter of
	// MaxConnections (see Reserved).
	ReservedConnections *int `yaml:"reserved_connections"`
	// UntrustedIdleTimeout replaces ReadTimeout for a client that is
	// neither in TrustedNetworks nor authenticated.
	UntrustedIdleTimeout Duration `yaml:"untrusted_idle_timeout"`
	// TLSListen is an optional implicit-TLS listener (submissions, :465).
	TLSListen string   `yaml:"tls_listen"`
	TLS       TLS      `yaml:"tls"`
	Auth      SMTPAuth `yaml:"auth"`
	// Microsoft365 lets Microsoft 365 (an outbound connector, which
	// cannot authenticate) relay the mail of the tenants named.
	Microsoft365 Microsoft365 `yaml:"microsoft365"`

	trusted []netip.Prefix
}

// Microsoft365 configures relaying for Microsoft 365 tenants: clients in
// Networks (Microsoft's sending ranges, shared by every customer) may relay
// a message only when Microsoft stamped one of TenantIDs on it
// (X-MS-Exchange-CrossTenant-Id).
type Microsoft365 struct {
	Networks  []string `yaml:"networks"`
	TenantIDs []string `yaml:"tenant_ids"`

	networks []netip.Prefix
	tenants  []string
}

// ParsedNetworks returns the parsed smtp.microsoft365.networks.
func (m *Microsoft365) ParsedNetworks() []netip.Prefix { return m.networks }

// Tenants returns smtp.microsoft365.tenant_ids in lower case.
func (m *Microsoft365) Tenants() []string { return m.tenants }

var tenantGUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// validateMicrosoft365 checks smtp.microsoft365 against the trusted
// networks already parsed.
func (s *SMTP) validateMicrosoft365(bad func(key, format string, args ...any)) {
	m := &s.Microsoft365
	m.networks, m.tenants = nil, nil
	if len(m.Networks) == 0 && len(m.TenantIDs) == 0 {
		return
	}
	if len(m.Networks) == 0 {
		bad("smtp.microsoft365.networks", "required with smtp.microsoft365.tenant_ids: Microsoft 365's sending ranges")
	}
	if len(m.TenantIDs) == 0 {
		bad("smtp.microsoft365.tenant_ids", "required with smtp.microsoft365.networks: without your tenant IDs every Microsoft 365 customer could relay")
	}
	for _, n := range m.Networks {
		p, err := parsePrefix(n)
		if err != nil {
			bad("smtp.microsoft365.networks", "%q is not a network (want CIDR such as 40.92.0.0/15): %v", n, err)
			continue
		}
		for _, tp := range s.trusted {
			if tp.Overlaps(p) {
				bad("smtp.microsoft365.networks", "%q overlaps smtp.trusted_networks entry %s: clients there relay anything; keep Microsoft 365's ranges out of trusted_networks", n, tp)
			}
		}
		m.networks = append(m.networks, p)
	}
	for _, id := range m.TenantIDs {
		g := strings.ToLower(strings.TrimSpace(id))
		if !tenantGUID.MatchString(g) {
			bad("smtp.microsoft365.tenant_ids", "%q is not a tenant ID (want a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47)", id)
			continue
		}
		m.tenants = append(m.tenants, g)
	}
}

// Reserved is smtp.reserved_connections, by default a quarter of
// smtp.max_connections.
func (s *SMTP) Reserved() int {
	if s.ReservedConnections != nil {
		return *s.ReservedConnections
	}
	return s.MaxConnections / 4
}

// TLS names the certificate for STARTTLS and the implicit-TLS listener.
// The files are read again on SIGHUP.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled tells whether a certificate is configured.
func (t *TLS) Enabled() bool { return t.CertFile != "" }

// SMTPAuth configures SMTP AUTH, offered only over TLS.
type SMTPAuth struct {
	// UsersFile holds "name:hash" lines (argon2id or bcrypt), managed with
	// `attachgate user add|passwd|delete`. Empty: AUTH is not offered.
	UsersFile string `yaml:"users_file"`
	// AllowLogin offers the LOGIN mechanism (old Outlook) beside PLAIN.
	AllowLogin bool `yaml:"allow_login"`
	// MaxFailures failed attempts per client address within FailureWindow
	// lock that address out of AUTH until the window passes.
	MaxFailures   int      `yaml:"max_failures"`
	FailureWindow Duration `yaml:"failure_window"`
	// MaxConcurrent bounds password checks in progress (an argon2id hash
	// takes 64 MiB); beyond it AUTH is answered 454 4.7.0.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// NextHop configures where relayed mail goes.
type NextHop struct {
	// Address is "host:port" of the next MTA, or "outbox:DIR" to write each
	// relayed message as an .eml file into DIR (demo and tests).
	Address string   `yaml:"address"`
	Timeout Duration `yaml:"timeout"`
	// TLS is none, opportunistic (STARTTLS when offered) or required.
	TLS string `yaml:"tls"`
	// ServerName is the name the next hop's certificate must carry;
	// default: the host part of address.
	ServerName string `yaml:"server_name"`
	// CAFile adds trusted CA certificates (PEM) for the next hop.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify turns certificate checks off: for labs only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Links configures the link server and the links put into mail.
type Links struct {
	Listen        string   `yaml:"listen"`
	BaseURL       string   `yaml:"base_url"`
	DefaultExpiry Duration `yaml:"default_expiry"`
	// MaxExpiry bounds every link's expiry: default_expiry and each
	// rule's link.expiry must not exceed it.
	MaxExpiry Duration `yaml:"max_expiry"`
	// MaxDownloads is the download limit of each link whose rule sets
	// none; 0 = unlimited.
	MaxDownloads int `yaml:"max_downloads"`
	// MaxDownloadsCap, when not 0, bounds every link's download limit:
	// max_downloads and each rule's link.max_downloads must be between 1
	// and the cap (unlimited is refused). 0 = no cap.
	MaxDownloadsCap int `yaml:"max_downloads_cap"`
	// Language of the notice added to mail: en, ja or both.
	Language string `yaml:"language"`
	// TimeZone shows expiry times in notices and pages (IANA name or "Local").
	TimeZone string `yaml:"time_zone"`
	// TrustedProxies are the reverse proxies in front of the link server
	// whose X-Forwarded-For and X-Forwarded-Proto are believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TLS serves the link listener over HTTPS itself (no proxy).
	TLS LinksTLS `yaml:"tls"`

	location *time.Location
	proxies  []netip.Prefix
}

// LinksTLS names the link server's certificate; read again on SIGHUP.
type LinksTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled tells whether the link listener serves HTTPS.
func (t *LinksTLS) Enabled() bool { return t.CertFile != "" }

// Storage configures where keys, blobs and metadata live.
type Storage struct {
	Dir string `yaml:"dir"`
	// SpoolDir holds this instance's in-flight messages (encrypted). It
	// must not be shared: every start empties it. Default: storage.dir/spool.
	SpoolDir string `yaml:"spool_dir"`
	// NameSync is how a stored attachment's file name is made durable
	// before the next hop sees its link: "auto" (default) fsyncs the file
	// after renaming it into place where the file system promises that
	// this also makes the name durable (ext4, xfs, btrfs: one fsync per
	// attachment, as Postfix relies on for its queue files), and syncs
	// the directory elsewhere; "directory" always syncs the directory
	// (one more fsync per batch of messages).
	NameSync string `yaml:"name_sync"`
}

// Log configures the daemon's structured log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Duration is a positive Go duration written as a string ("3s", "168h").
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"168h\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use Go syntax such as \"90s\", \"168h\")", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults returns the configuration used for keys the file leaves out.
func Defaults() Config {
	return Config{
		SMTP: SMTP{
			Listen:                  "127.0.0.1:2525",
			Hostname:                hostname(),
			MaxMessageBytes:         150 << 20,
			TrustedNetworks:         []string{"127.0.0.0/8", "::1/128"},
			MaxRecipients:           1000,
			ReadTimeout:             Duration(10 * time.Minute),
			WriteTimeout:            Duration(5 * time.Minute),
			MaxLineLength:           4000,
			MaxHeaderBytes:          1 << 20,
			MaxMIMEDepth:            32,
			MaxMIMEParts:            2000,
			MaxConnections:          200,
			MaxConnectionsPerClient: 50,
			UntrustedIdleTimeout:    Duration(30 * time.Second),
			Auth:                    SMTPAuth{MaxFailures: 5, FailureWindow: Duration(15 * time.Minute), MaxConcurrent: 2},
		},
		NextHop: NextHop{
			Address: "127.0.0.1:10026",
			Timeout: Duration(5 * time.Minute),
			TLS:     "opportunistic",
		},
		Links: Links{
			Listen:        "127.0.0.1:8080",
			BaseURL:       "http://127.0.0.1:8080",
			DefaultExpiry: Duration(168 * time.Hour),
			MaxExpiry:     Duration(720 * time.Hour),
			Language:      "both",
			TimeZone:      "Local",
		},
		Storage: Storage{Dir: "./data"},
		Store:   Store{Backend: "sqlite", Redis: Redis{KeyPrefix: "attachgate:", Timeout: Duration(3 * time.Second)}},
		Audit:   Audit{RetentionDays: 90},
		Admin:   Admin{Listen: "127.0.0.1:8081"},
		Log:     Log{Level: "info", Format: "text"},

		Quarantine: Quarantine{HoldFor: Duration(time.Hour), MaxRetryAge: Duration(120 * time.Hour), Retention: Duration(720 * time.Hour)},
		Scan:       Scan{Timeout: Duration(scan.DefaultTimeout), OnError: "tempfail", OnInfected: policies.Quarantine},
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// Load reads, parses and validates the file at path. Relative storage paths
// are taken relative to the current directory, as a shell user expects.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse reads YAML from r strictly over the defaults and validates it.
func Parse(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, explainYAML(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, explainYAML(err)
	}
	verr := c.validate()
	if errs := c.checkDependentKeys(&root); len(errs) > 0 {
		verr = errors.Join(append([]error{verr}, errs...)...)
	}
	if verr != nil {
		return nil, verr
	}
	return &c, nil
}

// explainYAML rewrites yaml's "field x not found in type config.SMTP" into
// words an admin can act on.
func explainYAML(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("parse YAML: %w", err)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if i := strings.Index(e, ": field "); i >= 0 && strings.Contains(e, " not found in type ") {
			line := e[:i]
			rest := e[i+len(": field "):]
			key := rest[:strings.Index(rest, " not found in type ")]
			section := sectionOf(rest)
			if section != "" {
				key = section + "." + key
			}
			msgs = append(msgs, fmt.Sprintf("%s: unknown key %q", line, key))
			continue
		}
		msgs = append(msgs, e)
	}
	return errors.New(strings.Join(msgs, "; "))
}

var sectionByType = map[string]string{
	"config.SMTP": "smtp", "config.NextHop": "next_hop", "config.Links": "links",
	"config.Storage": "storage", "config.Log": "log", "config.Store": "store",
	"config.Redis": "store.redis", "config.Audit": "audit", "config.Admin": "admin",
	"config.AdminToken": "admin.tokens[]", "config.TLS": "smtp.tls", "config.LinksTLS": "links.tls", "config.SMTPAuth": "smtp.auth",
	"config.Microsoft365": "smtp.microsoft365",
	"policies.Rule":       "policies[]", "policies.Match": "policies[].match", "config.Quarantine": "quarantine",
	"policies.LinkOptions": "policies[].link",
	"config.DKIM":          "dkim[]",
	"config.Notify":        "notify",
	"config.Scan":          "scan",
}

func sectionOf(rest string) string {
	i := strings.Index(rest, " not found in type ")
	return sectionByType[strings.TrimSpace(rest[i+len(" not found in type "):])]
}

func (c *Config) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}

	if err := checkHostPort(c.SMTP.Listen); err != nil {
		bad("smtp.listen", "%v", err)
	}
	if strings.TrimSpace(c.SMTP.Hostname) == "" || strings.ContainsAny(c.SMTP.Hostname, " \t\r\n") {
		bad("smtp.hostname", "want a host name such as gw.example.com, got %q", c.SMTP.Hostname)
	}
	if c.SMTP.MaxMessageBytes <= 0 {
		bad("smtp.max_message_bytes", "must be positive, got %d", c.SMTP.MaxMessageBytes)
	}
	if c.SMTP.MaxRecipients <= 0 {
		bad("smtp.max_recipients", "must be positive, got %d", c.SMTP.MaxRecipients)
	}
	c.SMTP.trusted = c.SMTP.trusted[:0]
	for _, s := range c.SMTP.TrustedNetworks {
		p, err := parsePrefix(s)
		if err != nil {
			bad("smtp.trusted_networks", "%q is not a network (want CIDR such as 10.0.0.0/8): %v", s, err)
			continue
		}
		c.SMTP.trusted = append(c.SMTP.trusted, p)
	}
	c.SMTP.validateMicrosoft365(bad)
	for key, v := range map[string]int{"smtp.max_line_length": c.SMTP.MaxLineLength,
		"smtp.max_header_bytes": c.SMTP.MaxHeaderBytes, "smtp.max_mime_depth": c.SMTP.MaxMIMEDepth,
		"smtp.max_mime_parts": c.SMTP.MaxMIMEParts, "smtp.max_connections": c.SMTP.MaxConnections,
		"smtp.max_connections_per_client": c.SMTP.MaxConnectionsPerClient,
		"smtp.auth.max_failures":          c.SMTP.Auth.MaxFailures,
		"smtp.auth.max_concurrent":        c.SMTP.Auth.MaxConcurrent} {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	if c.SMTP.MaxLineLength > 0 && c.SMTP.MaxLineLength < 1000 {
		bad("smtp.max_line_length", "must be at least 1000 (RFC 5321), got %d", c.SMTP.MaxLineLength)
	}
	if r := c.SMTP.Reserved(); r < 0 || r >= c.SMTP.MaxConnections {
		bad("smtp.reserved_connections", "must be at least 0 and less than smtp.max_connections (%d), got %d", c.SMTP.MaxConnections, r)
	}
	if c.SMTP.UntrustedIdleTimeout <= 0 {
		bad("smtp.untrusted_idle_timeout", "must be a positive duration")
	}
	if c.SMTP.Auth.FailureWindow <= 0 {
		bad("smtp.auth.failure_window", "must be a positive duration")
	}
	if (c.SMTP.TLS.CertFile == "") != (c.SMTP.TLS.KeyFile == "") {
		bad("smtp.tls", "cert_file and key_file go together")
	}
	if c.SMTP.TLSListen != "" {
		if err := checkHostPort(c.SMTP.TLSListen); err != nil {
			bad("smtp.tls_listen", "%v", err)
		}
		if !c.SMTP.TLS.Enabled() {
			bad("smtp.tls_listen", "needs smtp.tls.cert_file and key_file")
		}
	}
	if c.SMTP.Auth.UsersFile != "" && !c.SMTP.TLS.Enabled() {
		bad("smtp.auth.users_file", "AUTH is offered only over TLS: set smtp.tls.cert_file and key_file")
	}
	if c.SMTP.ReadTimeout <= 0 {
		bad("smtp.read_timeout", "must be a positive duration")
	}
	if c.SMTP.WriteTimeout <= 0 {
		bad("smtp.write_timeout", "must be a positive duration")
	}

	if dir, ok := strings.CutPrefix(c.NextHop.Address, "outbox:"); ok {
		if strings.TrimSpace(dir) == "" {
			bad("next_hop.address", "outbox: needs a directory, as in outbox:./data/outbox")
		}
	} else if err := checkHostPort(c.NextHop.Address); err != nil {
		bad("next_hop.address", "%v (or outbox:DIR)", err)
	}
	switch c.NextHop.TLS {
	case "none", "opportunistic", "required":
	default:
		bad("next_hop.tls", "want none, opportunistic or required, got %q", c.NextHop.TLS)
	}
	if c.NextHop.Timeout <= 0 {
		bad("next_hop.timeout", "must be a positive duration")
	}

	if err := checkHostPort(c.Links.Listen); err != nil {
		bad("links.listen", "%v", err)
	}
	u, err := url.Parse(c.Links.BaseURL)
	switch {
	case err != nil:
		bad("links.base_url", "%v", err)
	case u.Scheme != "https" && u.Scheme != "http":
		bad("links.base_url", "want an http or https URL, got %q", c.Links.BaseURL)
	case u.Host == "":
		bad("links.base_url", "missing host in %q", c.Links.BaseURL)
	case u.RawQuery != "" || u.Fragment != "":
		bad("links.base_url", "must not have a query or fragment: %q", c.Links.BaseURL)
	default:
		c.Links.BaseURL = strings.TrimRight(c.Links.BaseURL, "/")
	}
	if c.Links.DefaultExpiry <= 0 {
		bad("links.default_expiry", "must be a positive duration")
	}
	c.validateLinkBounds(bad)
	switch c.Links.Language {
	case "en", "ja", "both":
	default:
		bad("links.language", "want en, ja or both, got %q", c.Links.Language)
	}
	loc, err := time.LoadLocation(c.Links.TimeZone)
	if err != nil {
		bad("links.time_zone", "unknown zone %q (want an IANA name such as Asia/Tokyo, or Local)", c.Links.TimeZone)
	}
	c.Links.location = loc
	c.Links.proxies = nil
	for _, p := range c.Links.TrustedProxies {
		pr, err := parsePrefix(p)
		if err != nil {
			bad("links.trusted_proxies", "%q is not a network (want CIDR such as 10.0.0.0/8 or an address): %v", p, err)
			continue
		}
		c.Links.proxies = append(c.Links.proxies, pr)
	}
	if (c.Links.TLS.CertFile == "") != (c.Links.TLS.KeyFile == "") {
		bad("links.tls", "cert_file and key_file go together")
	}
	if c.Links.TLS.Enabled() && u != nil && u.Scheme != "https" {
		bad("links.tls", "the link listener serves https, so links.base_url must be an https URL, got %q", c.Links.BaseURL)
	}

	if strings.TrimSpace(c.Storage.Dir) == "" {
		bad("storage.dir", "must name a directory")
	}
	if c.Storage.SpoolDir == "" {
		c.Storage.SpoolDir = filepath.Join(c.Storage.Dir, "spool")
	}
	switch c.Storage.NameSync {
	case "":
		c.Storage.NameSync = "auto"
	case "auto", "directory":
	default:
		bad("storage.name_sync", "want auto or directory, got %q", c.Storage.NameSync)
	}
	switch c.Store.Backend {
	case "sqlite":
	case "redis":
		ru, err := url.Parse(c.Store.Redis.URL)
		if err != nil || (ru.Scheme != "redis" && ru.Scheme != "rediss") || ru.Host == "" {
			bad("store.redis.url", "want redis://host:port/db or rediss://..., got %q", c.Store.Redis.URL)
		}
	default:
		bad("store.backend", "want sqlite or redis, got %q", c.Store.Backend)
	}
	if c.Store.Redis.Timeout <= 0 {
		bad("store.redis.timeout", "must be a positive duration")
	}

	if c.Audit.RetentionDays < 1 {
		bad("audit.retention_days", "must be at least 1 (today), got %d", c.Audit.RetentionDays)
	}
	c.Audit.location = c.Links.location
	if c.Audit.TimeZone != "" {
		aloc, err := time.LoadLocation(c.Audit.TimeZone)
		if err != nil {
			bad("audit.time_zone", "unknown zone %q (want an IANA name such as Asia/Tokyo, or Local)", c.Audit.TimeZone)
		}
		c.Audit.location = aloc
	}

	if c.Admin.Listen != "" {
		if err := checkHostPort(c.Admin.Listen); err != nil {
			bad("admin.listen", "%v", err)
		}
	}
	c.Admin.proxies = nil
	for _, s := range c.Admin.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			bad("admin.trusted_proxies", "%q is not a network: %v", s, err)
			continue
		}
		c.Admin.proxies = append(c.Admin.proxies, p)
	}
	c.Admin.metricsNetworks = nil
	for _, s := range c.Admin.MetricsNetworks {
		p, err := parsePrefix(s)
		if err != nil {
			bad("admin.metrics_networks", "%q is not a network: %v", s, err)
			continue
		}
		c.Admin.metricsNetworks = append(c.Admin.metricsNetworks, p)
	}
	names := map[string]bool{}
	for i := range c.Admin.Tokens {
		tok := &c.Admin.Tokens[i]
		key := fmt.Sprintf("admin.tokens[%d]", i)
		if tok.Name == "" {
			bad(key+".name", "must be set (it names the token in the audit log)")
		} else if names[tok.Name] {
			bad(key+".name", "duplicate token name %q", tok.Name)
		}
		names[tok.Name] = true
		tok.SHA256 = strings.ToLower(tok.SHA256)
		switch {
		case len(tok.SHA256) != 64 || strings.Trim(tok.SHA256, "0123456789abcdef") != "":
			bad(key+".sha256", "want the 64 hex digits of SHA-256(token), e.g. from: printf %%s TOKEN | sha256sum")
		case tok.SHA256 == emptyStringSHA256:
			// The admin API refuses it too; caught here, it stops neither
			// a start nor half of a reload.
			bad(key+".sha256", "is the SHA-256 of the empty string: hash the token itself (printf %%s TOKEN | sha256sum)")
		}
		if tok.Role != "admin" && tok.Role != "auditor" {
			bad(key+".role", "want admin or auditor, got %q", tok.Role)
		}
		if len(tok.Networks) == 0 {
			bad(key+".networks", "must list the networks the token may be used from")
		}
		tok.networks = nil
		for _, s := range tok.Networks {
			p, err := parsePrefix(s)
			if err != nil {
				bad(key+".networks", "%q is not a network: %v", s, err)
				continue
			}
			tok.networks = append(tok.networks, p)
		}
	}
	engine, err := policies.New(c.Policies)
	if err != nil {
		errs = append(errs, err) // names policies[i].key itself
	}
	c.engine = engine
	c.validateScan(bad)
	if c.Quarantine.HoldFor <= 0 {
		bad("quarantine.hold_for", "must be a positive duration")
	}
	if c.Quarantine.MaxRetryAge <= 0 {
		bad("quarantine.max_retry_age", "must be a positive duration")
	}
	if c.Quarantine.Retention <= 0 {
		bad("quarantine.retention", "must be a positive duration")
	}

	entries := make([]dkim.Entry, len(c.DKIM))
	for i, d := range c.DKIM {
		entries[i] = dkim.Entry{Domain: d.Domain, Selector: d.Selector, KeyFile: d.KeyFile}
	}
	keys, err := dkim.Load(entries) // errors name dkim[i].key
	if err != nil {
		errs = append(errs, err)
	}
	c.dkimKeys = keys
	if c.Notify.From == "" && c.SMTP.Hostname != "" {
		c.Notify.From = "attachgate@" + c.SMTP.Hostname
	}
	if _, err := notify.ParseFrom(c.Notify.From); err != nil {
		bad("notify.from", "%v (want an address such as attachgate@corp.example, optionally with a name: \"Attachgate <attachgate@corp.example>\")", err)
	}
	if c.Notify.ReturnPath != "" {
		if err := notify.CheckAddress(c.Notify.ReturnPath); err != nil {
			bad("notify.return_path", "%v (want a bare address such as bounces@corp.example, or leave it out for the null return path)", err)
		}
	}
	if loc != nil {
		set, err := mailtmpl.Load(c.Notify.TemplatesDir, loc)
		if err != nil {
			bad("notify.templates_dir", "%v", err)
		}
		c.Notify.templates = set
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "want text or json, got %q", c.Log.Format)
	}
	return errors.Join(errs...)
}

// validateScan checks the scan section and the rules' on_infected.
func (c *Config) validateScan(bad func(key, format string, args ...any)) {
	s := &c.Scan
	if s.Clamd != "" {
		if _, _, err := scan.ParseAddress(s.Clamd); err != nil {
			bad("scan.clamd", "%v", err)
		}
	}
	if s.Timeout <= 0 {
		bad("scan.timeout", "must be a positive duration")
	}
	switch s.OnError {
	case "tempfail", "pass":
	default:
		bad("scan.on_error", "want tempfail or pass, got %q", s.OnError)
	}
	switch s.OnInfected {
	case policies.Quarantine, policies.Reject:
	default:
		bad("scan.on_infected", "want quarantine or reject, got %q", s.OnInfected)
	}
	for i, r := range c.Policies {
		if r.OnInfected != "" && !s.Enabled() {
			bad(fmt.Sprintf("policies[%d].on_infected", i), "takes effect only with scan.clamd: without it nothing is scanned")
		}
	}
	if s.Enabled() && c.Store.Backend == "redis" {
		// Held mail lives in the SQLite database only (see the check of
		// held actions above).
		if s.OnInfected == policies.Quarantine {
			bad("scan.on_infected", "quarantine needs store.backend: sqlite: held mail is indexed in the SQLite database (not supported with Redis yet); set scan.on_infected: reject")
		}
		for i, r := range c.Policies {
			if r.OnInfected == policies.Quarantine {
				bad(fmt.Sprintf("policies[%d].on_infected", i), "quarantine needs store.backend: sqlite: held mail is indexed in the SQLite database (not supported with Redis yet)")
			}
		}
	}
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", s)
	}
	_ = host
	if port == "" {
		return fmt.Errorf("missing port in %q", s)
	}
	return nil
}

// parsePrefix accepts CIDR notation or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	// Listeners compare client addresses unmapped (::ffff:10.0.0.5 is
	// 10.0.0.5), so an IPv4-mapped entry, as dual-stack logs write peers,
	// means the IPv4 network: kept mapped it would never match.
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Trusted returns the parsed smtp.trusted_networks.
func (s *SMTP) Trusted() []netip.Prefix { return s.trusted }

// Location returns the parsed links.time_zone.
func (l *Links) Location() *time.Location { return l.location }

// Proxies returns the parsed links.trusted_proxies.
func (l *Links) Proxies() []netip.Prefix { return l.proxies }

// HTTPS tells whether links.base_url is an https URL: browsers reach the
// link server over TLS, directly or through a proxy.
func (l *Links) HTTPS() bool { return strings.HasPrefix(strings.ToLower(l.BaseURL), "https://") }

// Path resolves a path below storage.dir.
func (s *Storage) Path(elem ...string) string {
	return filepath.Join(append([]string{s.Dir}, elem...)...)
}

// OutboxDir returns the directory of an "outbox:DIR" next hop, or "".
func (n *NextHop) OutboxDir() string {
	dir, _ := strings.CutPrefix(n.Address, "outbox:")
	if dir == n.Address {
		return ""
	}
	return dir
}

// Location returns the zone of audit exports and retention days.
func (a *Audit) Location() *time.Location { return a.location }

// Proxies returns the parsed admin.trusted_proxies.
func (a *Admin) Proxies() []netip.Prefix { return a.proxies }

// MetricsNets returns the parsed admin.metrics_networks.
func (a *Admin) MetricsNets() []netip.Prefix { return a.metricsNetworks }

// PolicyEngine returns the validated policies; it links everything when
// none are configured.
func (c *Config) PolicyEngine() *policies.Engine { return c.engine }

// DKIMKeys returns the loaded signing keys of the dkim list (none when the
// list is empty).
func (c *Config) DKIMKeys() *dkim.Keys { return c.dkimKeys }

// Nets returns the parsed networks of a token.
func (t *AdminToken) Nets() []netip.Prefix { return t.networks }
