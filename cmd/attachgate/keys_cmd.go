package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/user"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/vault"
)

const keysUsage = `usage: attachgate keys list|rotate -config FILE

  list    the key ring's key IDs; the current one is marked with *
  rotate  make a new key current; old keys stay to decrypt existing files.
          Send SIGHUP to running gateways (each instance sharing the
          directory) so new files use the new key.
`

// runKeys manages the key ring under storage.dir/keys. Rotation is an
// admin action and is audited.
func runKeys(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "rotate") {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	op := args[0]
	fs := flag.NewFlagSet("keys "+op, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() != 0 {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	c, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate: %v\n", err)
		return 1
	}
	ring, err := vault.OpenKeyRing(c.Storage.Path("keys"))
	if err != nil {
		fmt.Fprintf(stderr, "attachgate keys: %v\n", err)
		return 1
	}
	if op == "list" {
		current := ring.CurrentID()
		for _, id := range ring.IDs() {
			mark := " "
			if id == current {
				mark = "*"
			}
			fmt.Fprintf(stdout, "%s %s\n", mark, id)
		}
		return 0
	}

	// Audit first: an admin action that cannot be recorded is not done.
	log, closeLog, err := openAuditLog(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate keys: open audit log: %v\n", err)
		return 1
	}
	defer closeLog()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := ring.CurrentID()
	actor := "cli"
	if u, err := user.Current(); err == nil {
		actor = "cli:" + u.Username
	}
	if err := log.Record(ctx, audit.Event{Type: audit.AdminTypePrefix + "keys.rotate", Actor: actor,
		Detail: "from " + old}); err != nil {
		fmt.Fprintf(stderr, "attachgate keys: not rotated, audit log refused the event: %v\n", err)
		return 1
	}
	id, err := ring.Rotate()
	if err != nil {
		fmt.Fprintf(stderr, "attachgate keys: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "current key is now %s (was %s); send SIGHUP to running gateways\n", id, old)
	return 0
}
