package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/store"
)

var codeLimits = store.CodeLimits{MaxFailures: 5, LockFor: 15 * time.Minute}

func codeHash(code string) []byte {
	h := sha256.Sum256([]byte(code))
	return h[:]
}

// testCodes: a code matches once and only its own subject, expires to the
// millisecond, several live codes of a subject all work until one is used,
// and a code never matches another subject.
func testCodes(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := base
	bob := store.CodeSubject("msg-1", "bob@example.net")
	carol := store.CodeSubject("msg-1", "carol@example.net")
	other := store.CodeSubject("msg-2", "bob@example.net")

	if err := s.AddCode(ctx, bob, codeHash("11111111"), now.Add(10*time.Minute), now); err != nil {
		t.Fatalf("AddCode: %v", err)
	}
	if err := s.AddCode(ctx, bob, codeHash("22222222"), now.Add(12*time.Minute), now.Add(2*time.Minute)); err != nil {
		t.Fatalf("AddCode: %v", err)
	}
	// Another recipient, another message: not bob's code.
	for _, subj := range [][]byte{carol, other} {
		c, err := s.CheckCode(ctx, subj, codeHash("11111111"), codeLimits, now.Add(3*time.Minute))
		if err != nil || c.Outcome != store.CodeWrong || c.Failures != 1 {
			t.Fatalf("bob's code for another subject = %+v, %v; want CodeWrong, 1 failure", c, err)
		}
	}
	// The first code expires at exactly 10 minutes.
	c, err := s.CheckCode(ctx, bob, codeHash("11111111"), codeLimits, now.Add(10*time.Minute))
	if err != nil || c.Outcome != store.CodeWrong {
		t.Fatalf("expired code = %+v, %v; want CodeWrong", c, err)
	}
	c, err = s.CheckCode(ctx, bob, codeHash("22222222"), codeLimits, now.Add(10*time.Minute))
	if err != nil || c.Outcome != store.CodeOK {
		t.Fatalf("live code = %+v, %v; want CodeOK", c, err)
	}
	// Used: neither it nor any other code of bob works again.
	c, err = s.CheckCode(ctx, bob, codeHash("22222222"), codeLimits, now.Add(10*time.Minute))
	if err != nil || c.Outcome != store.CodeWrong || c.Failures != 1 {
		t.Fatalf("used code = %+v, %v; want CodeWrong with the failure count restarted at 1", c, err)
	}

	// Two live codes: either works, once.
	t2 := now.Add(time.Hour)
	for _, code := range []string{"33333333", "44444444"} {
		if err := s.AddCode(ctx, bob, codeHash(code), t2.Add(10*time.Minute), t2); err != nil {
			t.Fatalf("AddCode: %v", err)
		}
	}
	c, err = s.CheckCode(ctx, bob, codeHash("33333333"), codeLimits, t2.Add(time.Minute))
	if err != nil || c.Outcome != store.CodeOK {
		t.Fatalf("first of two codes = %+v, %v; want CodeOK", c, err)
	}
	c, err = s.CheckCode(ctx, bob, codeHash("44444444"), codeLimits, t2.Add(time.Minute))
	if err != nil || c.Outcome != store.CodeWrong {
		t.Fatalf("second code after the first was used = %+v, %v; want CodeWrong", c, err)
	}
}

// testCodeLockout: five wrong codes lock the subject for 15 minutes; while
// locked the right code is refused without being checked or counted and
// no new code is stored; after the lock a new code works. Wrong codes
// further apart than LockFor do not add up.
func testCodeLockout(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := base
	subj := store.CodeSubject("msg-1", "bob@example.net")
	if err := s.AddCode(ctx, subj, codeHash("12345678"), now.Add(10*time.Minute), now); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		c, err := s.CheckCode(ctx, subj, codeHash(fmt.Sprintf("0000000%d", i)), codeLimits, now)
		if err != nil || c.Outcome != store.CodeWrong || c.Failures != i {
			t.Fatalf("wrong code %d = %+v, %v; want CodeWrong with %d failures", i, c, err, i)
		}
	}
	c, err := s.CheckCode(ctx, subj, codeHash("00000005"), codeLimits, now)
	if err != nil || c.Outcome != store.CodeLockedNow || !sameTime(c.LockedUntil, now.Add(15*time.Minute)) {
		t.Fatalf("fifth wrong code = %+v, %v; want CodeLockedNow until %v", c, err, now.Add(15*time.Minute))
	}
	c, err = s.CheckCode(ctx, subj, codeHash("12345678"), codeLimits, now.Add(time.Minute))
	if err != nil || c.Outcome != store.CodeLocked {
		t.Fatalf("right code while locked = %+v, %v; want CodeLocked", c, err)
	}
	if err := s.AddCode(ctx, subj, codeHash("87654321"), now.Add(11*time.Minute), now.Add(time.Minute)); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("AddCode while locked: %v, want ErrLocked", err)
	}
	// The lock ends; the code issued before it was voided by it.
	after := now.Add(15 * time.Minute)
	c, err = s.CheckCode(ctx, subj, codeHash("12345678"), codeLimits, after.Add(-time.Minute))
	if err != nil || c.Outcome != store.CodeLocked {
		t.Fatalf("right code a minute before the lock ends = %+v, %v; want CodeLocked", c, err)
	}
	if err := s.AddCode(ctx, subj, codeHash("55555555"), after.Add(10*time.Minute), after); err != nil {
		t.Fatalf("AddCode after the lock: %v", err)
	}
	c, err = s.CheckCode(ctx, subj, codeHash("12345678"), codeLimits, after)
	if err != nil || c.Outcome != store.CodeWrong || c.Failures != 1 {
		t.Fatalf("pre-lock code after the lock = %+v, %v; want CodeWrong, 1 failure", c, err)
	}
	c, err = s.CheckCode(ctx, subj, codeHash("55555555"), codeLimits, after)
	if err != nil || c.Outcome != store.CodeOK {
		t.Fatalf("new code after the lock = %+v, %v; want CodeOK", c, err)
	}
	// Failures further apart than LockFor do not lock.
	other := store.CodeSubject("msg-1", "carol@example.net")
	at := now
	for i := range 8 {
		c, err := s.CheckCode(ctx, other, codeHash("99999999"), codeLimits, at)
		if err != nil || c.Outcome != store.CodeWrong || c.Failures != 1 {
			t.Fatalf("spaced wrong code %d = %+v, %v; want CodeWrong, 1 failure", i, c, err)
		}
		at = at.Add(codeLimits.LockFor)
	}
}

// testConcurrentCodes: 30 wrong guesses at once count exactly five before
// the lock; 30 submissions of the right code at once unlock exactly once.
func testConcurrentCodes(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := base
	run := func(subj []byte, code func(i int) string) map[store.CodeOutcome]int {
		var mu sync.Mutex
		got := map[store.CodeOutcome]int{}
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := s.CheckCode(ctx, subj, codeHash(code(i)), codeLimits, now)
				if err != nil {
					t.Errorf("CheckCode: %v", err)
					return
				}
				mu.Lock()
				got[c.Outcome]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return got
	}
	guessed := store.CodeSubject("msg-1", "bob@example.net")
	if err := s.AddCode(ctx, guessed, codeHash("12345678"), now.Add(10*time.Minute), now); err != nil {
		t.Fatal(err)
	}
	got := run(guessed, func(i int) string { return fmt.Sprintf("%08d", 90000000+i) })
	if got[store.CodeWrong] != 4 || got[store.CodeLockedNow] != 1 || got[store.CodeLocked] != 25 || got[store.CodeOK] != 0 {
		t.Errorf("30 concurrent wrong codes: %v; want 4 wrong, 1 locking, 25 refused as locked", got)
	}

	used := store.CodeSubject("msg-1", "carol@example.net")
	if err := s.AddCode(ctx, used, codeHash("24682468"), now.Add(10*time.Minute), now); err != nil {
		t.Fatal(err)
	}
	got = run(used, func(int) string { return "24682468" })
	if got[store.CodeOK] != 1 {
		t.Errorf("30 concurrent right codes: %v; want exactly one CodeOK", got)
	}
}

// testHitLimit: a fixed window counts to the limit, refuses beyond it,
// keeps keys apart, and opens anew when it ends; concurrent hits never
// let more than the limit through.
func testHitLimit(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := base
	hit := func(key string, at time.Time) bool {
		t.Helper()
		ok, err := s.HitLimit(ctx, key, 3, 10*time.Minute, at)
		if err != nil {
			t.Fatalf("HitLimit: %v", err)
		}
		return ok
	}
	for i := range 3 {
		if !hit("a", now.Add(time.Duration(i)*time.Minute)) {
			t.Fatalf("hit %d refused within the limit", i+1)
		}
	}
	if hit("a", now.Add(9*time.Minute)) {
		t.Fatal("fourth hit in the window allowed")
	}
	if !hit("b", now.Add(9*time.Minute)) {
		t.Fatal("another key refused")
	}
	if !hit("a", now.Add(10*time.Minute)) {
		t.Fatal("first hit of the next window refused")
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.HitLimit(ctx, "c", 3, 10*time.Minute, now)
			if err != nil {
				t.Errorf("HitLimit: %v", err)
				return
			}
			if ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if allowed != 3 {
		t.Errorf("30 concurrent hits: %d allowed, want 3", allowed)
	}
}
