// Command attachgate is the mail gateway: one binary whose subcommands run
// the daemon (serve), check a configuration (check-config), read the audit
// log (audit export, audit verify) and print the version.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: attachgate <command> [flags]

commands:
  serve         -config FILE   run the SMTP listener and the link server
  check-config  -config FILE   parse and validate a configuration file
  audit export  -config FILE -from YYYY-MM-DD -to YYYY-MM-DD -format jsonl|csv
  audit verify  -config FILE   check the audit log's hash chain
  keys list|rotate -config FILE    list or rotate the encryption keys (audited)
  user add|passwd|delete -config FILE NAME
                               manage SMTP AUTH users (password from terminal or stdin)
  dkim keygen   -domain DOMAIN -selector SELECTOR [-type rsa|ed25519] [-out FILE]
                               new DKIM signing key (0600) and its DNS TXT record
  links list|show|revoke -config FILE [filters] [LINK_ID]
                               the admin's view of links (audited)
  policy test   -config FILE -from ADDR -to ADDR[,ADDR] FILE.eml
                               dry run: each part's policy decision
  quarantine list|show|release|delete|reject -config FILE [ID]
                               held mail: list it, look at one (-original:
                               the message itself), release, delete, or
                               reject with -reason (DSN to the sender)
  recover       -config FILE [-yes]
                               inspect a lost dataset (Redis came back empty,
                               database replaced); -yes re-initialises it
  version                      print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:], stderr)
	case "check-config":
		return runCheckConfig(args[1:], stdout, stderr)
	case "keys":
		return runKeys(args[1:], stdout, stderr)
	case "user":
		return runUser(args[1:], os.Stdin, stdout, stderr)
	case "audit":
		return runAudit(args[1:], stdout, stderr, openAuditLog)
	case "quarantine":
		return runQuarantine(args[1:], stdout, stderr)
	case "recover":
		return runRecover(args[1:], stdout, stderr)
	case "links":
		return runLinks(args[1:], stdout, stderr)
	case "dkim":
		return runDKIM(args[1:], stdout, stderr)
	case "policy":
		return runPolicy(args[1:], os.Stdin, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "attachgate", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "attachgate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
