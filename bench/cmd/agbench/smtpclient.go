package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// smtpClient is a minimal SMTP client for the benchmark: no pipelining
// (like smtp-source), the message sent from a file that is already CRLF
// and needs no dot-stuffing, so the kernel can copy it with sendfile and
// the client costs next to no CPU.
type smtpClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialSMTP(addr string) (*smtpClient, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &smtpClient{conn: conn, r: bufio.NewReader(conn)}
	if _, err := c.reply(220); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if _, err := c.cmd(250, "EHLO bench.example.com"); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// reply reads one (possibly multi-line) reply and checks its code.
func (c *smtpClient) reply(want int) (string, error) {
	var text []string
	for {
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Minute))
		line, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			return "", fmt.Errorf("short reply %q", line)
		}
		text = append(text, line)
		if line[3] == ' ' {
			break
		}
	}
	last := text[len(text)-1]
	var code int
	fmt.Sscanf(last[:3], "%d", &code)
	if code != want {
		return last, fmt.Errorf("want %d, got %q", want, strings.Join(text, " / "))
	}
	return last, nil
}

func (c *smtpClient) cmd(want int, line string) (string, error) {
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return "", err
	}
	r, err := c.reply(want)
	if err != nil {
		return r, fmt.Errorf("%s: %w", strings.Fields(line)[0], err)
	}
	return r, nil
}

// send runs one transaction with the message in file path and returns the
// time from MAIL to the final reply.
func (c *smtpClient) send(from, to, path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := time.Now()
	if _, err := c.cmd(250, "MAIL FROM:<"+from+">"); err != nil {
		return 0, err
	}
	if _, err := c.cmd(250, "RCPT TO:<"+to+">"); err != nil {
		return 0, err
	}
	if _, err := c.cmd(354, "DATA"); err != nil {
		return 0, err
	}
	c.conn.SetWriteDeadline(time.Now().Add(30 * time.Minute))
	if _, err := io.Copy(c.conn, f); err != nil { // sendfile(2) on Linux
		return 0, fmt.Errorf("send message: %w", err)
	}
	if _, err := io.WriteString(c.conn, ".\r\n"); err != nil {
		return 0, err
	}
	if _, err := c.reply(250); err != nil {
		return 0, fmt.Errorf("end of DATA: %w", err)
	}
	return time.Since(start), nil
}

func (c *smtpClient) close() {
	c.cmd(221, "QUIT")
	c.conn.Close()
}

// sendOne dials, sends one message and quits.
func sendOne(addr, path string) (time.Duration, error) {
	c, err := dialSMTP(addr)
	if err != nil {
		return 0, err
	}
	defer c.close()
	return c.send(benchFrom, benchTo, path)
}

const (
	benchFrom = "alice@example.com"
	benchTo   = "bob@example.net"
)
