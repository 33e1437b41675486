package pipeline

// DKIM signing of the final message, in the deliver stage: deliver calls
// signFinal before DATA and then signedMessage.writeTo instead of
// writeFinal.

import (
	"bufio"
	"fmt"
	"io"

	"github.com/attachgate/attachgate/dkim"
	"github.com/attachgate/attachgate/vault"
)

// signedMessage is the final message in its own encrypted spool, with the
// DKIM-Signature field computed over exactly those bytes.
type signedMessage struct {
	spool     *vault.Spool
	signature string
}

// signFinal writes the final message (writeFinal) to a new spool in
// Pipeline.SpoolDir and signs it with key, reading the spool once. A failure here
// happens before DATA, so the next hop has seen nothing of the message.
func (t *Transaction) signFinal(key *dkim.Key, rd io.Reader) (*signedMessage, error) {
	sp, err := vault.NewSpool(t.p.SpoolDir)
	if err != nil {
		return nil, fmt.Errorf("dkim: open spool: %w", err)
	}
	bw := bufio.NewWriterSize(sp, copyBufferSize)
	err = t.writeFinal(bw, rd)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := sp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		sp.Remove()
		return nil, fmt.Errorf("dkim: spool final message: %w", err)
	}
	m := &signedMessage{spool: sp}
	blob, err := sp.OpenReaderAt()
	if err != nil {
		sp.Remove()
		return nil, fmt.Errorf("dkim: read spool: %w", err)
	}
	defer blob.Close()
	if m.signature, err = key.Sign(blob); err != nil {
		sp.Remove()
		return nil, err
	}
	return m, nil
}

// writeTo writes the signature and then the spooled message.
func (m *signedMessage) writeTo(w io.Writer) error {
	blob, err := m.spool.OpenReaderAt()
	if err != nil {
		return fmt.Errorf("dkim: read spool: %w", err)
	}
	defer blob.Close()
	if _, err := io.WriteString(w, m.signature); err != nil {
		return err
	}
	_, err = io.Copy(w, blob)
	return err
}

func (m *signedMessage) remove() { m.spool.Remove() }
