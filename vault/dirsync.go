package vault

import "sync"

// dirSyncer makes renames durable with one sync per directory for all the
// Puts waiting at the same moment (group commit for directory entries):
// the first Put to arrive leads, syncs every directory asked for by then,
// and hands the leadership to a Put that arrived meanwhile.
type dirSyncer struct {
	mu      sync.Mutex
	queue   []*dirWait
	leading bool
	syncs   int // directory syncs so far
}

type dirWait struct {
	dir  string
	err  error
	done chan struct{}
	lead chan struct{}
}

// sync returns once dir was synced after this call began.
func (d *dirSyncer) sync(dir string) error {
	w := &dirWait{dir: dir, done: make(chan struct{}), lead: make(chan struct{})}
	d.mu.Lock()
	d.queue = append(d.queue, w)
	lead := !d.leading
	d.leading = true
	d.mu.Unlock()
	if !lead {
		select {
		case <-w.done:
			return w.err
		case <-w.lead:
		}
	}
	d.mu.Lock()
	batch := d.queue
	d.queue = nil
	d.mu.Unlock()

	synced := map[string]error{}
	for _, b := range batch {
		err, ok := synced[b.dir]
		if !ok {
			err = syncDir(b.dir)
			synced[b.dir] = err
		}
		b.err = err
	}
	d.mu.Lock()
	d.syncs += len(synced)
	if len(d.queue) > 0 {
		close(d.queue[0].lead)
	} else {
		d.leading = false
	}
	d.mu.Unlock()
	for _, b := range batch {
		close(b.done)
	}
	return w.err
}
