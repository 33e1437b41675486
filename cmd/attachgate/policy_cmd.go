package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/policies"
)

const policyUsage = `usage: attachgate policy test -config FILE -from ADDR -to ADDR[,ADDR] FILE.eml
  prints the decision of the configured policies for every part of the
  message (a dry run: nothing is stored, relayed or audited); FILE.eml "-"
  reads standard input
`

// runPolicy runs "attachgate policy test".
func runPolicy(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	path := fs.String("config", "", "configuration file (YAML)")
	from := fs.String("from", "", "envelope sender (MAIL FROM)")
	to := fs.String("to", "", "envelope recipients (RCPT TO), comma-separated")
	// Flags may follow the file name too.
	var files []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	var rcpts []string
	for _, r := range strings.Split(*to, ",") {
		if r = strings.TrimSpace(r); r != "" {
			rcpts = append(rcpts, r)
		}
	}
	switch {
	case *path == "":
		fmt.Fprintln(stderr, "attachgate policy test: -config FILE is required")
		return 2
	case strings.TrimSpace(*from) == "":
		fmt.Fprintln(stderr, "attachgate policy test: -from ADDR is required")
		return 2
	case len(rcpts) == 0:
		fmt.Fprintln(stderr, "attachgate policy test: -to ADDR[,ADDR] is required")
		return 2
	case len(files) != 1:
		fmt.Fprintln(stderr, "attachgate policy test: want exactly one message file (FILE.eml, or - for standard input)")
		return 2
	}
	c, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate: %v\n", err)
		return 1
	}
	in := stdin
	if files[0] != "-" {
		f, err := os.Open(files[0])
		if err != nil {
			fmt.Fprintf(stderr, "attachgate policy test: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	env := policies.Envelope{From: strings.TrimSpace(*from), To: rcpts}
	lim := mailpart.Limits{MaxDepth: c.SMTP.MaxMIMEDepth, MaxParts: c.SMTP.MaxMIMEParts, MaxHeaderBytes: c.SMTP.MaxHeaderBytes}
	run, err := c.PolicyEngine().Test(in, lim, env)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate policy test: %s: %v\n", files[0], err)
		return 1
	}
	fmt.Fprintf(stdout, "envelope: from <%s> to <%s>; %d rule(s)\n", env.From, strings.Join(rcpts, ">, <"), c.PolicyEngine().Rules())
	if err := run.Write(stdout, c.Quarantine.HoldFor.D().String()); err != nil {
		fmt.Fprintf(stderr, "attachgate policy test: %v\n", err)
		return 1
	}
	return 0
}
