package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/users"
)

const userUsage = `usage: attachgate user add|passwd|delete -config FILE NAME

The password is read from the terminal (asked twice, not echoed) or, when
standard input is not a terminal, from its first line. Never from argv.
`

// runUser manages smtp.auth.users_file. The running daemon picks changes up
// on SIGHUP.
func runUser(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	op := args[0]
	if op != "add" && op != "passwd" && op != "delete" {
		fmt.Fprintf(stderr, "attachgate user: unknown operation %q\n\n%s", op, userUsage)
		return 2
	}
	fs := flag.NewFlagSet("user "+op, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() != 1 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	name := fs.Arg(0)
	c, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate: %v\n", err)
		return 1
	}
	path := c.SMTP.Auth.UsersFile
	if path == "" {
		fmt.Fprintf(stderr, "attachgate user: smtp.auth.users_file is not set in %s\n", *cfgPath)
		return 1
	}
	if err := users.ValidateName(name); err != nil {
		fmt.Fprintf(stderr, "attachgate user: %v\n", err)
		return 2
	}
	exists, err := users.Exists(path, name)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate user: %v\n", err)
		return 1
	}
	switch {
	case op == "add" && exists:
		fmt.Fprintf(stderr, "attachgate user: %q exists already (use passwd)\n", name)
		return 1
	case op != "add" && !exists:
		fmt.Fprintf(stderr, "attachgate user: no user %q in %s\n", name, path)
		return 1
	}
	if op == "delete" {
		if err := users.Delete(path, name); err != nil {
			fmt.Fprintf(stderr, "attachgate user: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "deleted %s; send SIGHUP to a running attachgate to apply\n", name)
		return 0
	}
	password, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate user: %v\n", err)
		return 1
	}
	if err := users.Set(path, name, password); err != nil {
		fmt.Fprintf(stderr, "attachgate user: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s; send SIGHUP to a running attachgate to apply\n", map[string]string{"add": "added", "passwd": "changed password of"}[op], name)
	return 0
}

func readPassword(stdin io.Reader, prompt io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(prompt, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(p1) != string(p2) {
			return "", errors.New("passwords do not match")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input")
	}
	return line, nil
}
