package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/scan"
)

// openScanner is the pipeline's malware scanning (config section scan);
// nil when scan.clamd is not set. A clamd that does not answer now is
// logged, not fatal: each message then gets scan.on_error until it does.
func openScanner(c *config.Config, log *slog.Logger) (*pipeline.Scan, error) {
	if !c.Scan.Enabled() {
		return nil, nil
	}
	client, err := scan.New(c.Scan.Clamd, c.Scan.Timeout.D())
	if err != nil {
		return nil, err // validated already
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(c.Scan.Timeout.D(), 5*time.Second))
	defer cancel()
	if err := client.Ping(ctx); err != nil {
		log.Warn("malware scanning: clamd does not answer yet", "clamd", c.Scan.Clamd, "on_error", c.Scan.OnError, "err", err)
	} else {
		log.Info("malware scanning on", "clamd", c.Scan.Clamd, "on_error", c.Scan.OnError, "on_infected", c.Scan.OnInfected)
	}
	return &pipeline.Scan{Client: client, Pass: c.Scan.OnError == "pass", OnInfected: c.Scan.OnInfected}, nil
}
