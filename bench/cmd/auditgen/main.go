// Command auditgen fills an attachgate data directory's audit log with N
// synthetic events spread over the last days, for measuring `audit export`
// on a large log (bench/audit-export.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

func main() {
	dir := flag.String("storage", "", "storage.dir of the config to fill")
	n := flag.Int("n", 1000000, "events to write")
	days := flag.Int("days", 30, "spread the events over this many past days")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "auditgen: -storage DIR is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		log.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(*dir, "attachgate.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	start := time.Now().Add(-time.Duration(*days) * 24 * time.Hour)
	step := time.Duration(*days) * 24 * time.Hour / time.Duration(*n)
	al, err := audit.NewSQLite(st.DB(), audit.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	const batch = 5000
	events := make([]audit.Event, 0, batch)
	types := []audit.EventType{audit.TypeMailReceived, audit.TypeFileStored, audit.TypeLinkCreated, audit.TypeMailRelayed, audit.TypeLinkViewed, audit.TypeDownloadOK}
	for i := 0; i < *n; i++ {
		events = append(events, audit.Event{
			Time: start.Add(time.Duration(i) * step), Type: types[i%len(types)], Actor: "smtp",
			ClientAddr: "192.0.2.10", Sender: fmt.Sprintf("user%d@example.com", i%500),
			Recipients: []string{fmt.Sprintf("rcpt%d@example.net", i%900)}, Size: int64(1000 + i%100000),
			FileName: fmt.Sprintf("report-%d.pdf", i), LinkID: fmt.Sprintf("link-%d", i),
			UserAgent: "Mozilla/5.0 (bench)",
		})
		if len(events) == batch || i == *n-1 {
			if err := al.RecordAll(ctx, events); err != nil {
				log.Fatal(err)
			}
			events = events[:0]
		}
	}
	fmt.Printf("auditgen: %d events from %s\n", *n, start.Format(time.RFC3339))
}
