package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"

	"github.com/google/uuid"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// reanchorer is what both audit backends offer to continue a lost log.
type reanchorer interface {
	Reanchor(ctx context.Context, reason string) (audit.Event, error)
}

// runRecover inspects a dataset the gateway refuses (generation marker
// missing or different, audit log behind its head) and, with -yes,
// re-initialises it deliberately: the audit chain continues from the head
// recorded outside the store with an audit.purged event naming the lost
// range, blobs no record owns are removed, and a new generation marker is
// written. Run it with every instance stopped.
func runRecover(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	yes := fs.Bool("yes", false, "re-initialise (without it: only report what was lost)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: attachgate recover -config FILE [-yes]")
		return 2
	}
	c, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate: %v\n", err)
		return 1
	}
	if err := recoverDataset(context.Background(), c, *yes, stdout); err != nil {
		fmt.Fprintf(stderr, "attachgate recover: %v\n", err)
		return 1
	}
	return 0
}

func recoverDataset(ctx context.Context, c *config.Config, yes bool, out io.Writer) error {
	if err := vault.SecureDataDir(c.Storage.Dir); err != nil {
		return err
	}
	ring, err := vault.OpenKeyRing(c.Storage.Path("keys"))
	if err != nil {
		return err
	}
	blobs, err := vault.NewBlobStore(c.Storage.Path("blobs"), ring)
	if err != nil {
		return err
	}
	st, al, err := openMetadata(c, ring, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	recorded, err := readGenerationFile(generationPath(c))
	if err != nil {
		return err
	}
	current, err := st.(store.Generation).Generation(ctx)
	if err != nil {
		return err
	}
	res, err := al.Verify(ctx, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "generation recorded in %s: %q; in the store: %q\n", generationPath(c), recorded, current)
	fmt.Fprintf(out, "audit log: %s\n", res)
	lostEvents := res.Break != nil && res.Break.Kind == audit.BreakTruncated
	if recorded != "" && recorded == current && !lostEvents {
		fmt.Fprintln(out, "the store is the dataset recorded: nothing to recover")
		return nil
	}
	idx := st.(store.FileIndex)
	var orphans []string
	_, err = blobs.Orphans(0, func(ids []string) ([]string, error) {
		known, err := idx.KnownFiles(ctx, ids)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if !known[id] {
				orphans = append(orphans, id)
			}
		}
		return nil, nil // listing only
	})
	if err != nil {
		return err
	}
	if lostEvents {
		fmt.Fprintf(out, "lost audit events: seq %d..%d\n", res.LostFrom, res.LostTo)
	}
	fmt.Fprintf(out, "blobs without a file record (their links are lost with the store): %d\n", len(orphans))
	for _, id := range orphans {
		fmt.Fprintf(out, "  %s\n", id)
	}
	if !yes {
		fmt.Fprintln(out, "nothing changed; stop every instance and run again with -yes to re-initialise")
		return nil
	}

	reason := fmt.Sprintf("dataset re-initialised by attachgate recover (generation %q, store had %q); %d orphaned blobs removed",
		recorded, current, len(orphans))
	if lostEvents {
		r, ok := al.(reanchorer)
		if !ok {
			return fmt.Errorf("audit log %T cannot be re-anchored", al)
		}
		if _, err := r.Reanchor(ctx, reason); err != nil {
			if errors.Is(err, audit.ErrNotEmpty) {
				return fmt.Errorf("%w: the store is an older copy, not an empty one; restore the newer copy instead", err)
			}
			return err
		}
	}
	for _, id := range orphans {
		if err := blobs.Delete(id); err != nil {
			return err
		}
	}
	gen := uuid.NewString()
	if current != "" {
		gen = current // a different dataset: adopt its marker
	} else if gen, err = st.(store.Generation).InitGeneration(ctx, gen); err != nil {
		return err
	}
	if err := writeGenerationFile(generationPath(c), gen); err != nil {
		return err
	}
	actor := "cli"
	if u, err := user.Current(); err == nil {
		actor = "cli:" + u.Username
	}
	if err := al.Record(ctx, audit.Event{Type: audit.AdminTypePrefix + "recover", Actor: actor, Detail: reason}); err != nil {
		return err
	}
	fmt.Fprintf(out, "re-initialised: generation %s; start the instances again\n", gen)
	return nil
}
