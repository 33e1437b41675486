package pipeline

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/policies"
)

// TestReloadAppliesToNewTransactions: a transaction keeps the policies it
// began with when the configuration is reloaded in the middle of it; the
// next one uses the new policies.
func TestReloadAppliesToNewTransactions(t *testing.T) {
	p := benchPipeline(t)
	env := Envelope{From: "a@example.com", To: []string{"b@example.net"}, ClientAddr: "127.0.0.1", Helo: "client"}
	refuseAll, err := policies.New([]policies.Rule{{Name: "refuse-all", Action: policies.Reject}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	inFlight := p.Begin(ctx, env, &benchHop{})
	p.Reload(Settings{Policies: refuseAll})
	if err := inFlight.Body(ctx, bytes.NewReader(benchMail(16<<10))); err != nil {
		t.Fatalf("a transaction begun before the reload must keep the old (empty) policies: %v", err)
	}
	inFlight.Commit(ctx)

	next := p.Begin(ctx, env, &benchHop{})
	err = next.Body(ctx, bytes.NewReader(benchMail(16<<10)))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("after the reload: %v, want 550 by refuse-all", err)
	}
	next.Abort(err)
}
